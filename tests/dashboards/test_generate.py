"""The dashboards' JSON: committed files match the code, every query is the ClickHouse plugin's
model on the provisioned data source, and every link lands on a dashboard and variable that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from click.testing import CliRunner

from dashboards import generate
from dashboards.query import PLUGIN_ID, PLUGIN_VERSION

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = {path.name: json.loads(path.read_text()) for path in sorted((ROOT / "dashboards" / "json").glob("*.json"))}
BY_UID = {model["uid"]: model for model in COMMITTED.values()}


def variables(model: dict) -> list[dict]:
    return model.get("templating", {}).get("list", [])


def panels(model: dict) -> list[dict]:
    return [p for p in model["panels"] if p.get("type") != "row"]


def targets(model: dict) -> list[dict]:
    found = [t for p in panels(model) for t in p.get("targets", [])]
    found += [a["target"] for a in model.get("annotations", {}).get("list", []) if "target" in a]
    return found


def test_committed_files_are_what_the_code_generates():
    assert sorted(COMMITTED) == ["cluster.json", "incident.json", "overview.json"]
    assert generate.stale() == [], "run: python -m dashboards"


def test_the_command_writes_the_same_bytes_and_check_finds_a_changed_file(tmp_path):
    from services.cli import main

    result = CliRunner().invoke(main, ["dashboards", "generate", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in COMMITTED:
        assert (tmp_path / name).read_bytes() == (ROOT / "dashboards" / "json" / name).read_bytes()
    assert CliRunner().invoke(main, ["dashboards", "generate", "--check", "--out", str(tmp_path)]).exit_code == 0
    (tmp_path / "cluster.json").write_text("{}")
    result = CliRunner().invoke(main, ["dashboards", "generate", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "cluster.json is out of date" in result.output


def test_three_dashboards_with_their_uids_and_variables():
    assert set(BY_UID) == {"faithwatch-overview", "faithwatch-cluster", "faithwatch-incident"}
    names = {uid: [v["name"] for v in variables(model)] for uid, model in BY_UID.items()}
    assert names["faithwatch-cluster"] == ["cluster"]
    assert names["faithwatch-incident"][0] == "incident"
    for model in BY_UID.values():
        assert "faithwatch" in model["tags"]
        assert any(link["type"] == "dashboards" and link["tags"] == ["faithwatch"] for link in model["links"])


def test_every_query_is_the_plugins_sql_model_on_the_provisioned_data_source():
    provisioned = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text())
    (source,) = provisioned["datasources"]
    assert source["type"] == PLUGIN_ID
    seen = 0
    for model in COMMITTED.values():
        for panel in panels(model):
            if panel["type"] != "text":
                assert panel["datasource"] == {"type": PLUGIN_ID, "uid": source["uid"]}, panel["title"]
                assert panel["targets"], panel["title"]
        for target in targets(model):
            seen += 1
            assert target["editorType"] == "sql"
            assert target["rawSql"].lstrip().upper().startswith("SELECT")
            assert target["format"] in (0, 1) and target["pluginVersion"] == PLUGIN_VERSION
            assert target["datasource"] == {"type": PLUGIN_ID, "uid": source["uid"]}
            assert target["refId"]
        for variable in variables(model):
            if variable["type"] == "query":
                assert variable["datasource"]["uid"] == source["uid"]
    assert seen >= 20


def test_time_series_panels_ask_for_time_series_and_tables_for_tables():
    for model in COMMITTED.values():
        for panel in panels(model):
            for target in panel.get("targets", []):
                expected = 0 if panel["type"] in ("timeseries", "heatmap") else 1
                assert target["format"] == expected, panel["title"]


def links(model: dict) -> list[str]:
    urls = []
    for panel in panels(model):
        urls += [link["url"] for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])]
    return urls


def test_every_link_to_a_dashboard_names_a_variable_it_has():
    checked = 0
    for model in COMMITTED.values():
        for url in links(model):
            match = re.match(r"^/d/([\w-]+)/", url)
            if not match:
                continue
            target = BY_UID[match.group(1)]
            query = parse_qs(urlsplit(url).query)
            names = {v["name"] for v in variables(target)}
            for key in query:
                if key.startswith("var-"):
                    assert key[4:] in names, url
                    checked += 1
    assert checked >= 4


@pytest.mark.parametrize("grafana", ["https://grafana.example", "https://grafana.example/"])
def test_the_alerts_link_opens_the_incident_dashboard_on_its_variable(grafana):
    from services.notify.message import Links

    class Event:
        incident_id = "inc-1/x"

    ((_, href),) = Links(grafana_url=grafana).of(Event())
    url = urlsplit(href)
    uid = url.path.split("/")[2]
    names = {v["name"] for v in variables(BY_UID[uid])}
    assert [key[4:] for key in parse_qs(url.query)] == ["incident"]
    assert "incident" in names and parse_qs(url.query)["var-incident"] == ["inc-1/x"]


def test_the_provisioned_folder_is_the_one_sync_creates():
    from dashboards.common import FOLDER_TITLE, FOLDER_UID

    provider = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/faithwatch.yaml").read_text())
    (only,) = provider["providers"]
    assert (only["folderUid"], only["folder"]) == (FOLDER_UID, FOLDER_TITLE)
