"""Ingest over HTTP, then ask the API: the stale-pricing incident and its sessions come back.

Real components end to end: BANKING77 queries with the injected stale-pricing incident, the
all-MiniLM-L6-v2 model, the built-in faithfulness scorer, the ingest worker, the chDB store,
uvicorn on a free 127.0.0.1 port and httpx.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import timedelta

import pytest

from pipelines.scenario import ScenarioConfig, generate, to_jsonl_lines
from services.datasets import load_banking77
from services.settings import load_settings
from services.testing.live_api import live_api

TOKEN = "incident-t0ken"
CHUNK = 500


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    scenario = generate(load_banking77("train"), ScenarioConfig(seed=7, days=3.0, per_day=1000))
    settings = load_settings(data_dir=tmp_path_factory.mktemp("api-incident"), api={"tokens": [TOKEN]})
    with live_api(settings, timeout=300, batch_size=settings.replay.batch_size) as api:
        answers = []
        for k, start in enumerate(range(0, len(scenario.records), CHUNK)):
            chunk = scenario.records[start:start + CHUNK]
            if k % 2:  # half the chunks as NDJSON, half as JSON arrays
                res = api.client.post("/v1/interactions", content="".join(to_jsonl_lines(chunk)).encode(),
                                      headers={"Content-Type": "application/x-ndjson"})
            else:
                res = api.client.post("/v1/interactions", json=chunk)
            answers.append(res)
        flushed = api.client.post("/v1/flush")
        yield scenario, api.client, api.store, answers, flushed


def test_every_record_is_accepted_and_scored(served):
    scenario, _, _, answers, flushed = served
    assert all(a.status_code == 202 and a.json()["invalid"] == 0 for a in answers)
    assert sum(a.json()["accepted"] for a in answers) == len(scenario.records)
    assert flushed.status_code == 200, flushed.text
    totals = flushed.json()["pipeline"]
    assert totals["scored"] == len(scenario.records) and totals["duplicates"] == 0


def test_the_right_incident_comes_back(served):
    scenario, client, store, _, _ = served
    incidents = client.get("/v1/incidents").json()["items"]
    assert len(incidents) == 1
    inc = incidents[0]
    # The cluster that holds most of the injected failing answers, read from the store.
    rows = store.query("SELECT interaction_id, cluster_id FROM interactions FINAL")
    cluster_of = {r["interaction_id"]: r["cluster_id"] for r in rows}
    main_cluster, _ = Counter(cluster_of[i] for i in scenario.truth.incident_interaction_ids).most_common(1)[0]
    assert inc["cluster_id"] == main_cluster and inc["category"] == "pricing"
    assert inc["outreach_required"] and inc["severity"] == "critical"
    onset = scenario.truth.onset_at
    for query in (f"?cluster={main_cluster}", "?category=pricing",
                  f"?since={(onset - timedelta(hours=1)).isoformat().replace('+00:00', 'Z')}"):
        assert [i["incident_id"] for i in client.get(f"/v1/incidents{query}").json()["items"]] == [inc["incident_id"]]
    assert client.get("/v1/incidents?category=policy").json()["items"] == []

    detail = client.get(f"/v1/incidents/{inc['incident_id']}").json()
    assert detail["events"][0]["event"] == "opened"
    top = detail["events"][0]["shared_documents"][0]
    assert (top["doc_id"], top["doc_version"], top["stale"]) == ("pricing-table", "v3", True)

    cluster = client.get(f"/v1/clusters/{main_cluster}").json()
    assert cluster["category"] == "pricing" and cluster["baseline"]["source"] == "cluster"
    assert cluster["baseline"]["low"] is not None and cluster["recent_rates"][-1]["below_baseline"] > 0


def test_its_sessions_come_back_for_outreach(served):
    scenario, client, _, _, _ = served
    inc = client.get("/v1/incidents").json()["items"][0]
    rows = client.get(f"/v1/incidents/{inc['incident_id']}/sessions").json()["items"]
    found, truth = {r["session_id"] for r in rows}, scenario.truth.incident_session_ids
    precision, recall = len(found & truth) / len(found), len(found & truth) / len(truth)
    assert precision >= 0.8 and recall >= 0.9, (precision, recall)
    customers = {r["customer_id"] for r in rows if r["session_id"] in truth}
    assert customers and customers <= scenario.truth.incident_customer_ids

    table = list(csv.DictReader(io.StringIO(
        client.get(f"/v1/incidents/{inc['incident_id']}/sessions", headers={"Accept": "text/csv"}).text)))
    assert {(r["session_id"], r["customer_id"]) for r in table} == {(r["session_id"], r["customer_id"]) for r in rows}

    # The blast radius spans every member cluster, each from its own since: the sessions of each
    # member since then hold it.
    members = inc["members"] or [{"cluster_id": inc["cluster_id"], "since": inc["onset_at"]}]
    assert members[0]["cluster_id"] == inc["cluster_id"] and [m["cluster_id"] for m in members] == (
        inc["clusters"] or [inc["cluster_id"]])
    hit = set()
    for m in members:
        page = client.get("/v1/sessions", params={"cluster": m["cluster_id"], "since": m["since"],
                                                  "limit": 1_000_000}).json()
        hit |= {r["session_id"] for r in page["items"]}
    assert found <= hit
