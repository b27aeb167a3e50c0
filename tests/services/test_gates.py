"""Confidence gates as a live decision: POST /v1/gate over real HTTP against the live pipeline,
overrides in both store backends, the API and the CLI.

The pipeline uses the hashing embedder; the incident comes from a generated scenario run through
the ingest worker, so `on_incident` is checked while the detector holds the incident open and
after it resolves.
"""

from __future__ import annotations

import getpass
import json
import shlex
import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest
from click.testing import CliRunner

from alerts.categories import DEFAULT_CATEGORIES, load_policy
from pipelines.interaction import parse_record
from pipelines.records import ClusterInfo
from pipelines.scenario import ScenarioConfig, generate
from services.api import create_app, serve_in_thread
from services.cli import main
from services.datasets import load_banking77
from services.gates import GateError, gate_table, set_override, unset_override
from services.metrics import Metrics
from services.settings import load_settings
from services.testing.live_api import live_api

TOKEN = "gate-t0ken"
AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def cluster(cid: str, family: str | None = None, category: str = "pricing") -> ClusterInfo:
    return ClusterInfo(cluster_id=cid, label=f"{cid} label", category=category, terms=("fee",),
                       representative_query="what is the fee", size=10, centroid_version=1, first_seen=AT,
                       last_seen=AT, family_id=family, family_label=None, family_category=None)


# ---- overrides in the store (both backends) ---------------------------------------------------

def test_overrides_are_versioned_with_who_when_why(store):
    store.upsert_clusters([cluster("c001", "f001"), cluster("c002", "f001", "other")])
    policy = load_policy(DEFAULT_CATEGORIES)
    set_override(store, "c001", 0.92, "stale pricing table", "ana", AT)
    set_override(store, "c001", 0.95, "still stale", "bo", AT)
    set_override(store, "f001", 0.85, "family wide", "ana", AT)
    rows = {r["cluster_id"]: r for r in gate_table(store, policy)}
    assert (rows["c001"]["active_gate"], rows["c001"]["source"], rows["c001"]["override_version"],
            rows["c001"]["override_by"]) == (0.95, "cluster override", 2, "bo")
    assert (rows["c002"]["active_gate"], rows["c002"]["source"]) == (0.85, "family override")
    unset_override(store, "c001", "fixed", "ana", AT)
    rows = {r["cluster_id"]: r for r in gate_table(store, policy)}
    assert (rows["c001"]["active_gate"], rows["c001"]["source"]) == (0.85, "family override")
    history = store.gate_override_history("c001")
    assert [(h["version"], h["action"], h["threshold"], h["actor"], h["reason"]) for h in history] == [
        (1, "set", 0.92, "ana", "stale pricing table"), (2, "set", 0.95, "bo", "still stale"),
        (3, "unset", None, "ana", "fixed")]
    assert history[0]["at"] == AT
    with pytest.raises(GateError, match="no cluster or intent family"):
        set_override(store, "c999", 0.9, "x", "ana", AT)
    with pytest.raises(GateError, match="reason"):
        set_override(store, "c001", 0.9, " ", "ana", AT)
    with pytest.raises(GateError, match="between 0 and 1"):
        set_override(store, "c001", 1.2, "x", "ana", AT)
    with pytest.raises(GateError, match="no active"):
        unset_override(store, "c001", "again", "ana", AT)


def test_the_decision_log_adds_up_per_minute(store):
    m0, m1 = AT, AT.replace(minute=1)
    row = {"minute": m0, "cluster_id": "c001", "category": "pricing", "decision": "defer", "calls": 3}
    store.insert_gate_decisions([row, {**row, "decision": "answer", "calls": 1},
                                 {**row, "minute": m1, "calls": 4}])
    store.insert_gate_decisions([{**row, "cluster_id": "unassigned", "category": "other", "decision": "answer",
                                  "calls": 2}])
    assert store.gate_decision_rates(m0) == [
        {"cluster_id": "c001", "category": "pricing", "decisions": 8, "answered": 1, "deferred": 7,
         "deferral_rate": 7 / 8},
        {"cluster_id": "unassigned", "category": "other", "decisions": 2, "answered": 2, "deferred": 0,
         "deferral_rate": 0.0}]
    assert store.gate_decision_rates(m0, until=m1)[0]["decisions"] == 4


# ---- the live API ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def live(tmp_path_factory):
    data = tmp_path_factory.mktemp("gates")
    settings = load_settings(data_dir=data, embedding={"backend": "hashing"}, cluster={"bootstrap_size": 200},
                             api={"tokens": [TOKEN]})
    scenario = generate(load_banking77("train"), ScenarioConfig(days=3, per_day=600, intents=10))
    records = [parse_record(r) for r in scenario.records]
    with live_api(settings, batch_size=100, cluster_refresh_seconds=0) as api:
        yield SimpleNamespace(**vars(api), records=records, gates=api.app.state.gates)


def feed(live, records) -> None:
    ticket = live.ingestor.submit(records)
    assert live.ingestor.wait(ticket, 60).done


def test_gate_needs_a_token(live):
    res = httpx.post(f"{live.url}/v1/gate", json={"query": "fee?", "confidence": 0.9})
    assert res.status_code == 401
    res = httpx.post(f"{live.url}/v1/gate", json={"query": "fee?", "confidence": 0.9},
                     headers={"Authorization": "Bearer wrong"})
    assert res.status_code == 401


@pytest.mark.parametrize("body,field", [
    ({"confidence": 0.9}, "query"),
    ({"query": "", "confidence": 0.9}, "query"),
    ({"query": "fee?", "confidence": 1.5}, "confidence"),
    ({"query": "fee?", "confidence": "high"}, "confidence"),
    ({"query": "fee?", "confidence": 0.9, "action": {"reversible": "maybe"}}, "reversible"),
    ({"query": "fee?", "confidence": 0.9, "colour": "red"}, "colour"),
    ([{"query": "fee?", "confidence": 0.9}, {"query": "fee?"}], "confidence"),
    ("fee?", "body"),
])
def test_bad_bodies_get_422_naming_the_field(live, body, field):
    res = live.client.post("/v1/gate", json=body)
    assert res.status_code == 422, res.text
    assert field in res.text


def test_a_batch_too_large_is_refused(live):
    res = live.client.post("/v1/gate", json=[{"query": "fee?", "confidence": 0.9}] * 1001)
    assert res.status_code == 422 and "at most 1000" in res.text


def test_before_the_clusters_are_fitted_every_query_uses_the_default_category(live):
    res = live.client.post("/v1/gate", json={"query": "What exchange rate do you use?", "confidence": 0.84})
    assert res.status_code == 200
    got = res.json()
    assert (got["cluster_id"], got["category"], got["decision"], got["threshold"]) == (None, "other", "answer", 0.8)


def test_on_incident_while_open_and_after_resolve_and_read_only(live):
    """Feed the scenario batch by batch: while an incident is open on a pricing cluster, an answer
    at 0.84 in it is deferred with the incident's id; once resolved it is answered again. The
    single and batch forms agree; 1,000 gate calls change neither the pipeline nor the store."""
    opened_on = None
    resolved_seen = False
    records = live.records
    for k in range(0, len(records), 100):
        feed(live, records[k:k + 100])
        model = live.ingestor.cluster_model()
        if opened_on is None:
            for inc in model.incidents:
                cid = sorted(inc.clusters)[0]
                if model.categories[model.cluster_ids.index(cid)] == "pricing":
                    opened_on = (inc.incident_id, cid)
                    break
            if opened_on is None:
                continue
            iid, cid = opened_on
            query = live.store.query("SELECT query FROM interactions WHERE cluster_id = {c:String} "
                                     "ORDER BY timestamp LIMIT 1", {"c": cid})[0]["query"]
            got = live.client.post("/v1/gate", json={"query": query, "confidence": 0.84}).json()
            assert (got["cluster_id"], got["decision"], got["incident_id"]) == (cid, "defer", iid), got
            assert any("on_incident is defer" in r for r in got["reasons"])
            batch = live.client.post("/v1/gate", json=[{"query": query, "confidence": 0.84}] * 3).json()
            assert batch == [got] * 3
        elif iid not in {i.incident_id for i in model.incidents}:
            resolved_seen = True
            break
    assert opened_on is not None and resolved_seen
    got = live.client.post("/v1/gate", json={"query": query, "confidence": 0.84}).json()
    assert (got["cluster_id"], got["incident_id"]) == (cid, None)
    assert got["decision"] == ("answer" if 0.84 >= got["threshold"] else "defer")
    irreversible = live.client.post("/v1/gate", json={"query": query, "confidence": 0.84,
                                                      "action": {"name": "refund", "reversible": False}}).json()
    assert (irreversible["threshold"], irreversible["decision"]) == (0.9, "defer")

    # read-only: 1,000 calls change neither the pipeline's state nor the stored interactions,
    # clusters and incidents; the decision log counts every one of them
    pipeline = live.ingestor.pipeline
    live.gates.flush()
    since = {"since": "2000-01-01T00:00:00Z"}
    logged = sum(r["decisions"] for r in live.client.get("/v1/gate/decisions", params=since).json()["items"])
    state, counts = pipeline.to_state(), live.store.counts()
    for n in range(1000):
        assert live.client.post("/v1/gate", json={"query": f"{query} {n % 50}", "confidence": 0.5}).status_code == 200
    assert pipeline.to_state() == state and live.store.counts() == counts
    text = live.client.get("/metrics").text
    assert f'faithwatch_gate_decisions_total{{cluster="{cid}",decision="defer"}}' in text
    assert live.gates.flush() > 0 and live.gates.flush() == 0
    rows = live.client.get("/v1/gate/decisions", params=since).json()["items"]
    assert sum(r["decisions"] for r in rows) == logged + 1000
    assert all(r["decisions"] == r["answered"] + r["deferred"] for r in rows)
    assert live.client.get("/v1/gate/decisions", params={"since": "2026-11-02"}).status_code == 422

    # an override set over the API applies at once, and is listed beside the suggested gate
    res = live.client.put(f"/v1/gates/{cid}", json={"threshold": 0.8, "reason": "pricing table fixed", "by": "ana"})
    assert res.status_code == 200 and res.json()["version"] == 1
    got = live.client.post("/v1/gate", json={"query": query, "confidence": 0.84}).json()
    assert (got["threshold"], got["source"], got["decision"]) == (0.8, "cluster override", "answer")
    rows = {r["cluster_id"]: r for r in live.client.get("/v1/gates").json()["items"]}
    assert rows[cid]["source"] == "cluster override" and rows[cid]["suggested_by_incident"] == iid
    assert rows[cid]["suggested_gate"] is not None and rows[cid]["failing_total"] > 0
    # ... and in the incident, with the command that adopts the suggested gate
    incident = live.client.get(f"/v1/incidents/{iid}").json()
    gates = incident["gates"]
    assert [r["cluster_id"] for r in gates["active"]] == incident["clusters"]
    mine = next(r for r in gates["active"] if r["cluster_id"] == cid)
    assert (mine["active_gate"], mine["source"], mine["override_by"], mine["override_version"]) == (
        0.8, "cluster override", "ana", 1)
    assert gates["suggested"] == incident["suggested_gate"] and gates["suggested"]["threshold"] == rows[cid][
        "suggested_gate"]
    command = shlex.split(gates["adopt"])
    assert command[:3] == ["faithwatch", "gates", "set"] and command[3] in incident["clusters"] + incident["family_ids"]
    assert command[4:] == [f'{gates["suggested"]["threshold"]:.2f}', "--reason", f"adopt the gate suggested by {iid}"]
    assert live.client.delete(f"/v1/gates/{cid}", params={"reason": "back to the category"}).status_code == 200
    assert live.client.delete(f"/v1/gates/{cid}", params={"reason": "again"}).status_code == 404
    assert live.client.put("/v1/gates/c999", json={"threshold": 0.9, "reason": "x"}).status_code == 404
    history = live.client.get("/v1/gates", params={"history": "true"}).json()["items"]
    assert [(h["version"], h["action"], h["actor"]) for h in history] == [(1, "set", "ana"), (2, "unset", "api")]


def eventually(check, rounds: int = 400) -> bool:
    """Whether ``check()`` holds within ``rounds`` polls 0.05 s apart (a background thread's work)."""
    for _ in range(rounds):
        if check():
            return True
        threading.Event().wait(0.05)
    return check()


def test_the_service_thread_writes_the_log_and_rereads_overrides(live):
    from services.gates import GateRequest, GateService

    later = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)  # a minute no other test writes
    pipeline = live.ingestor.pipeline
    service = GateService(pipeline.embedder, pipeline.policy, live.ingestor.cluster_model, live.store, Metrics(),
                          flush_seconds=0.05, refresh_seconds=0.05, clock=lambda: later).start()

    def logged() -> int:
        return sum(r["decisions"] for r in live.store.gate_decision_rates(later))

    service.decide([GateRequest("What exchange rate do you use?", 0.84)] * 3)
    assert eventually(lambda: logged() == 3)
    # a change written to the store by another process (the CLI) reaches the running service
    scope = live.store.list_clusters()[-1]["cluster_id"]
    set_override(live.store, scope, 0.97, "set elsewhere", "cli", AT)
    assert eventually(lambda: scope in service.overrides())
    unset_override(live.store, scope, "done", "cli", AT)
    assert eventually(lambda: scope not in service.overrides())
    service.decide([GateRequest("How do I reset my PIN?", 0.5)] * 2)
    service.close()
    assert logged() == 5


# ---- the CLI (against the ClickHouse test server: the way a CLI reaches a running deployment) --

def test_cli_set_list_unset(clickhouse_server, tmp_path, monkeypatch):
    database = "t_gates_cli"
    with clickhouse_server.store(database) as store:
        store.command(f"DROP DATABASE IF EXISTS {database}")
    with clickhouse_server.store(database) as store:
        store.migrate()
        store.upsert_clusters([cluster("c001", "f001")])
    env = {"FAITHWATCH_STORE__BACKEND": "clickhouse", "FAITHWATCH_STORE__URL": clickhouse_server.url,
           "FAITHWATCH_STORE__PASSWORD": clickhouse_server.password.get_secret_value(),
           "FAITHWATCH_STORE__DATABASE": database}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    res = runner.invoke(main, ["gates", "set", "c001", "0.92", "--reason", "stale pricing table", "--by", "ana"])
    assert res.exit_code == 0, res.output
    assert "c001: gate 0.92 (v1 by ana)" in res.output
    res = runner.invoke(main, ["gates", "list", "--format", "json"])
    assert res.exit_code == 0, res.output
    assert '"active_gate": 0.92' in res.output and '"source": "cluster override"' in res.output
    res = runner.invoke(main, ["gates", "set", "c404", "0.9", "--reason", "x"])
    assert res.exit_code == 2 and "no cluster or intent family" in res.output
    res = runner.invoke(main, ["gates", "unset", "c001", "--reason", "fixed"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["gates", "list", "--history", "--format", "csv"])
    assert res.exit_code == 0 and "unset" in res.output and "stale pricing table" in res.output


def test_incidents_show_lists_the_active_gates_beside_the_suggested_one_and_adopting_it_is_one_command(
        clickhouse_server, monkeypatch):
    """inc-1 (sample: c001, suggested 0.89) is adopted on its cluster; inc-2 spans c001 and c013 of
    family f001, so its command sets the family's gate. The printed command is run as printed."""
    from services.notify.sample import sample_event

    database = "t_gates_incident"
    with clickhouse_server.store(database) as store:
        store.command(f"DROP DATABASE IF EXISTS {database}")
    with clickhouse_server.store(database) as store:
        store.migrate()
        store.upsert_clusters([cluster("c001", "f001"), cluster("c013", "f001")])
        store.insert_incident_events([sample_event("inc-1"), sample_event("inc-2", clusters=("c001", "c013")),
                                      sample_event("inc-3", suggested_gate=None)])
        set_override(store, "c013", 0.93, "tightened", "ana", AT)
    for name, value in {"FAITHWATCH_STORE__BACKEND": "clickhouse", "FAITHWATCH_STORE__URL": clickhouse_server.url,
                        "FAITHWATCH_STORE__PASSWORD": clickhouse_server.password.get_secret_value(),
                        "FAITHWATCH_STORE__DATABASE": database}.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    text = runner.invoke(main, ["incidents", "show", "inc-1"]).output
    assert "  gate         raise 0.80 -> 0.89" in text
    assert "  active gate  c001 0.80 (category gate)\n" in text
    adopt = 'faithwatch gates set c001 0.89 --reason "adopt the gate suggested by inc-1"'
    assert f"  adopt        {adopt}\n" in text
    res = runner.invoke(main, shlex.split(adopt)[1:])
    assert res.exit_code == 0, res.output
    shown = json.loads(runner.invoke(main, ["incidents", "show", "inc-2", "--format", "json"]).output)["gates"]
    assert [(r["cluster_id"], r["active_gate"], r["source"], r["override_by"]) for r in shown["active"]] == [
        ("c001", 0.89, "cluster override", getpass.getuser()), ("c013", 0.93, "cluster override", "ana")]
    assert shown["suggested"]["threshold"] == 0.89
    assert shown["adopt"] == 'faithwatch gates set f001 0.89 --reason "adopt the gate suggested by inc-2"'
    text = runner.invoke(main, ["incidents", "show", "inc-3"]).output  # no suggested gate: nothing to adopt
    assert "  active gate  c001 0.89 (cluster override v1 by" in text and "adopt" not in text
    assert "no incident" in runner.invoke(main, ["incidents", "show", "inc-404"]).output


@pytest.mark.parametrize("category,verdict,threshold", [("pricing", "deferred", "0.80"), ("policy", "deferred", "0.95"),
                                                        ("other", "answered", "0.80")])
def test_the_demo_line_says_what_the_gate_answers_while_an_incident_is_open(category, verdict, threshold):
    from services.gates import gate_while_open

    line = gate_while_open({"cluster_id": "c001", "category": category, "incident_id": "inc-c001-x",
                            "clusters": ["c001", "c013"], "family_ids": ["f001"]}, load_policy(DEFAULT_CATEGORIES))
    assert f"{category} answers in c001 at confidence 0.84 are {verdict} (threshold {threshold}" in line


def test_kafka_mode_answers_503_until_a_model_arrived_and_keeps_the_overrides(clickhouse_server):
    """Kafka mode before the sequence stage published a model (the follower never started: no
    broker here; tests/services/kafka/test_kafka_worker.py has the gate with a real one)."""
    from services.kafka.gate_model import GateModelFollower
    from services.kafka.ingest import KafkaIngestor
    from services.wiring import build_embedder

    database = "t_gates_kafka"
    settings = load_settings(api={"tokens": [TOKEN], "ingest": "kafka"})
    with clickhouse_server.store(database) as store:
        store.command(f"DROP DATABASE IF EXISTS {database}")
    with clickhouse_server.store(database) as store:
        store.migrate()
        store.upsert_clusters([cluster("c001", "f001")])
        embedder = build_embedder(load_settings(embedding={"backend": "hashing"}))
        gate = GateModelFollower(settings, store, embedder, load_policy(DEFAULT_CATEGORIES))
        app = create_app(settings.api, store, KafkaIngestor(settings, gate=gate), Metrics())  # never started
        with serve_in_thread(app) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}
                                                       ) as client:
            res = client.post("/v1/gate", json={"query": "fee?", "confidence": 0.9})
            assert res.status_code == 503 and res.headers["retry-after"] == "5"
            assert res.json()["detail"].startswith("gate decisions in Kafka mode: no cluster model has arrived yet "
                                                   f"on {settings.kafka.gate_model_topic}")
            bare = create_app(settings.api, store, KafkaIngestor(settings), Metrics())  # no follower: no gate
            with serve_in_thread(bare) as bare_url:
                res = httpx.post(f"{bare_url}/v1/gate", json={"query": "fee?", "confidence": 0.9},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
                assert res.status_code == 503 and "follows no published model" in res.text
            assert client.put("/v1/gates/c001", json={"threshold": 0.9, "reason": "r"}).status_code == 200
            (row,) = client.get("/v1/gates").json()["items"]
            assert (row["active_gate"], row["source"]) == (0.9, "cluster override")
