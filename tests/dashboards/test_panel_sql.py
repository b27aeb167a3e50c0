"""Every panel's SQL runs on a populated chDB store, as Grafana would send it: the plugin's macros
expanded by its own rules (dashboards.macros), the template variables set to values their own
variable queries return, over time ranges and intervals that select each rollup tier.

Each query must return the columns its panel type needs, and the rollup reads must count every
answer exactly once whichever tier they read. Every query also runs through ``/clickhouse`` (the
read-only endpoint ``faithwatch serve`` offers Grafana) with clickhouse-connect as the client.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import clickhouse_connect
import pytest
from dashboard_sample import END, OPEN_ID, T0
from fastapi import FastAPI

from dashboards.macros import expand
from services import clickhouse_proxy
from services.api import serve_in_thread

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = {path.stem: json.loads(path.read_text()) for path in sorted((ROOT / "dashboards/json").glob("*.json"))}
# (name, start, end, interval): minutes (6 h at 1 m), hours by range (all data at 5 m), hours by
# interval (7 d at 1 h), days (60 d at 1 d).
CASES = {
    "6h-1m": (END - timedelta(hours=6), END, timedelta(minutes=1)),
    "3d-5m": (T0 - timedelta(hours=1), END + timedelta(hours=1), timedelta(minutes=5)),
    "7d-1h": (END - timedelta(days=7), END + timedelta(hours=1), timedelta(hours=1)),
    "60d-1d": (END - timedelta(days=60), END + timedelta(days=1), timedelta(days=1)),
}
NUMERIC = re.compile(r"^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*|Bool)\)?$")
TIME = re.compile(r"^(Nullable\()?DateTime")


def panel_queries() -> list[tuple[str, str, str, dict]]:
    out = []
    for name, model in DASHBOARDS.items():
        for panel in model["panels"]:
            for target in panel.get("targets", []):
                out.append((name, panel["type"], panel["title"], target))
        for annotation in model.get("annotations", {}).get("list", []):
            if "target" in annotation:
                out.append((name, "annotation", annotation["name"], annotation["target"]))
    return out


QUERIES = panel_queries()


def run(store, sql: str) -> tuple[list[tuple[str, str]], list[list]]:
    """(column name and type) list and rows of ``sql`` (JSONCompact keeps the types even for
    an empty result)."""
    answer = json.loads(store._run(sql, None, "JSONCompact"))
    return [(col["name"], col["type"]) for col in answer["meta"]], answer["data"]


@pytest.fixture(scope="module")
def variables(populated) -> dict[str, str]:
    """Each variable set to a value its own query offers (the cluster of the open incident, the
    open incident), as a user picks it from the drop-down."""
    values = {"api_url": "http://localhost:8000"}
    start, end, interval = CASES["3d-5m"]
    for model in DASHBOARDS.values():
        for variable in model.get("templating", {}).get("list", []):
            if variable["type"] != "query":
                continue
            columns, rows = run(populated.store, expand(variable["query"], start, end, interval))
            assert len(columns) == 2 and rows, variable["name"]
            offered = [row[0] for row in rows]
            wanted = {"cluster": "c-fee", "incident": OPEN_ID}[variable["name"]]
            assert wanted in offered
            values[variable["name"]] = wanted
    return values


def expanded(target: dict, case: str, variables: dict[str, str]) -> str:
    start, end, interval = CASES[case]
    return expand(target["rawSql"], start, end, interval, variables)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(("dashboard", "kind", "title", "target"), QUERIES,
                         ids=[f"{d}:{t}:{q['refId']}" for d, _, t, q in QUERIES])
def test_panel_sql_returns_what_its_panel_needs(populated, variables, dashboard, kind, title, target, case):
    sql = expanded(target, case, variables)
    assert "$" not in sql.replace("$$", ""), "a macro or variable was left unexpanded"
    columns, rows = run(populated.store, sql)
    types = [t for _, t in columns]
    if kind in ("timeseries", "heatmap"):
        assert TIME.match(types[0]), (title, columns)
        assert any(NUMERIC.match(t) for t in types[1:]), (title, columns)
        assert rows, title
        assert [row[0] for row in rows] == sorted(row[0] for row in rows), "time series must be ordered by time"
    elif kind == "stat":
        assert len(rows) == 1 and all(NUMERIC.match(t) for t in types), (title, columns)
    elif kind == "annotation":
        assert [c for c, _ in columns][:3] == ["time", "timeEnd", "text"] and TIME.match(types[0])
        assert rows
    else:
        assert columns, title
    assert rows, f"{title} shows nothing on the populated store"


def test_every_data_link_field_is_a_column_of_its_panel(populated, variables):
    for name, model in DASHBOARDS.items():
        for panel in model["panels"]:
            fields = set()
            for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", []):
                fields |= set(re.findall(r"__data\.fields\.(\w+)", link["url"]))
            for target in panel.get("targets", []):
                columns, _ = run(populated.store, expanded(target, "3d-5m", variables))
                assert fields <= {c for c, _ in columns}, (name, panel["title"])


def target_of(dashboard: str, title: str, ref_id: str = "A") -> dict:
    for panel in DASHBOARDS[dashboard]["panels"]:
        if panel["title"] == title:
            return next(t for t in panel["targets"] if t["refId"] == ref_id)
    raise KeyError(title)


def rows_of(populated, variables, dashboard: str, title: str, case: str) -> list[dict]:
    columns, rows = run(populated.store, expanded(target_of(dashboard, title), case, variables))
    return [dict(zip([c for c, _ in columns], row, strict=True)) for row in rows]


@pytest.mark.parametrize("case", ["3d-5m", "7d-1h", "60d-1d"])
def test_every_tier_counts_every_answer_once(populated, variables, case):
    (total,) = rows_of(populated, variables, "overview", "Answers in range", case)
    assert int(total["answers"]) == populated.interactions
    series = rows_of(populated, variables, "overview", "Answers, below baseline, confident but wrong", case)
    assert sum(int(row["answers"]) for row in series) == populated.interactions
    expected_below = populated.store.query("SELECT countIf(below_baseline) AS n FROM interactions")[0]["n"]
    assert sum(int(row["below_baseline"]) for row in series) == expected_below
    volume = rows_of(populated, variables, "cluster", "Volume", case)
    assert sum(int(row["answers"]) for row in volume) == populated.interactions // 3


def test_the_time_series_interval_picks_the_tier(populated, variables):
    """Buckets follow $__interval: 1 d gives one row per day, 1 h one per hour with data."""
    days = rows_of(populated, variables, "overview", "Answers, below baseline, confident but wrong", "60d-1d")
    hours = rows_of(populated, variables, "overview", "Answers, below baseline, confident but wrong", "7d-1h")
    assert len(days) == 3 and len(hours) == 72


def test_the_clusters_table_matches_the_stored_answers(populated, variables):
    rows = {row["cluster_id"]: row for row in rows_of(populated, variables, "overview", "Clusters", "3d-5m")}
    assert set(rows) == {"c-fee", "c-fee-eur", "c-pin"}
    for cluster_id, row in rows.items():
        stored = populated.store.query(
            "SELECT count() AS n, countIf(below_baseline) AS below FROM interactions WHERE cluster_id = {c:String}",
            {"c": cluster_id})[0]
        assert int(row["volume"]) == stored["n"]
        assert row["below_baseline_rate"] == pytest.approx(stored["below"] / stored["n"], abs=1e-4)
        assert row["baseline_low"] == pytest.approx(0.7)
    assert rows["c-fee"]["family"] == "pricing questions" and rows["c-pin"]["family"] == ""
    assert [rows[c]["open_incidents"] for c in ("c-fee", "c-fee-eur", "c-pin")] == [1, 1, 0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_deferral_rate_is_per_intent_from_the_decision_log(populated, variables, case):
    rows = rows_of(populated, variables, "overview", "Human-deferral rate by intent (confidence gate)", case)
    rates: dict[str, set[float]] = {}
    for row in rows:
        rates.setdefault(row["intent"], set()).add(round(row["deferral_rate"], 6))
    assert rates == {"exchange fee": {0.75}, "card pin reset": {0.0}, "unassigned": {0.5}}


def test_the_incident_dashboard_reads_the_open_incident(populated, variables):
    members = rows_of(populated, variables, "incident", "Member clusters", "3d-5m")
    assert [m["cluster_id"] for m in members] == ["c-fee", "c-fee-eur"]
    (gate,) = rows_of(populated, variables, "incident", "Suggested confidence gate and its cost", "3d-5m")
    assert gate["gate"] == pytest.approx(0.93) and gate["cost_faithful_share"] == pytest.approx(0.04)
    timeline = rows_of(populated, variables, "incident", "Timeline", "3d-5m")
    assert [row["sequence"] for row in timeline] == [0, 1]
    outreach = rows_of(populated, variables, "incident", "Outreach and alert deliveries", "3d-5m")
    assert [(row["channel"], row["delivery"]) for row in outreach] == [("oncall-slack", "sent")] * 2


@pytest.fixture(scope="module")
def endpoint(populated):
    """A clickhouse-connect client of ``/clickhouse`` over the module's store."""
    app = FastAPI()
    clickhouse_proxy.mount(app, populated.store, [b"dashboard-token"])
    with serve_in_thread(app) as url:
        port = int(url.rsplit(":", 1)[1])
        with clickhouse_connect.get_client(host="127.0.0.1", port=port, username="grafana",
                                           password="dashboard-token", proxy_path="/clickhouse") as client:
            yield client


@pytest.mark.parametrize(("dashboard", "kind", "title", "target"), QUERIES,
                         ids=[f"{d}:{t}:{q['refId']}" for d, _, t, q in QUERIES])
def test_panel_sql_passes_the_read_only_endpoint(populated, variables, endpoint, dashboard, kind, title, target):
    sql = expanded(target, "3d-5m", variables)
    columns, rows = run(populated.store, sql)
    over_http = endpoint.query(sql)
    assert over_http.column_names == tuple(name for name, _ in columns)
    assert len(over_http.result_rows) == len(rows)
