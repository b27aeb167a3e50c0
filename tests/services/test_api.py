"""The HTTP API through real HTTP: uvicorn on a free 127.0.0.1 port, httpx, the chDB store.

The pipeline uses the hashing embedder (the real model runs in test_api_incident.py). Read
routes are checked against rows written to the store here, so every expected answer is exact;
ingest is checked through the worker, the store and the metrics.

chDB opens one data path per process: the module's store is opened once and closed at the end.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pipelines.errors import ConfigError
from pipelines.records import Example, IncidentEvent, ScoredInteraction, SharedDocument, SuggestedGate
from services.api import create_app, serve_in_thread
from services.settings import load_settings
from services.testing.live_api import live_api

TOKEN, OTHER_TOKEN = "t0ken-for-tests", "another-t0ken"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
INJECTIONS = ["' OR 1=1 --", "x'); DROP TABLE interactions; --", "\\'; DROP TABLE clusters; --",
              "{cluster_id:String}", "pricing\tpolicy\n", "1 UNION SELECT * FROM system.tables", "%' --"]
QUERIES = ["what is the exchange rate fee for euros", "how do I reset the pin of my card",
           "where is the refund for my cancelled order"]
READ_ROUTES = ["/v1/clusters", "/v1/clusters/k-pricing", "/v1/incidents", "/v1/incidents/inc-open",
               "/v1/incidents/inc-open/sessions", "/v1/sessions?cluster=k-pricing&since=2026-11-01T00:00:00Z",
               "/metrics", "/openapi.json", "/docs"]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def record(n: int, **overrides: Any) -> dict:
    values = {"interaction_id": f"r{n}", "session_id": f"rs{n % 7}", "customer_id": f"rc{n % 5}",
              "timestamp": at(n).isoformat(), "query": f"{QUERIES[n % 3]} {n % 4}",
              "response": "The fee is 2%.", "confidence": 0.9,
              "contexts": [{"doc_id": "pricing-table", "doc_version": "v3", "text": "The fee is 2%."}]}
    values.update(overrides)
    return values


def scored(iid: str, cluster: str, minutes: float, session: str, customer: str, below: bool) -> ScoredInteraction:
    return ScoredInteraction(
        interaction_id=iid, session_id=session, customer_id=customer, timestamp=at(minutes),
        query=f"question {iid}", response=f"answer {iid}", cluster_id=cluster, cluster_label=f"{cluster} label",
        category="pricing" if cluster == "k-pricing" else "policy", faithfulness=0.2 if below else 0.95,
        faithfulness_source="producer", confidence=0.85, below_baseline=below, baseline_low=0.7,
        confident_wrong=below, stale_context=below)


def incident(incident_id: str, cluster: str, category: str, onset: float, sequence: int = 0,
             resolved: float | None = None) -> IncidentEvent:
    return IncidentEvent(
        event="resolved" if resolved is not None else ("opened" if sequence == 0 else "updated"),
        incident_id=incident_id, sequence=sequence, cluster_id=cluster, cluster_label=f"{cluster} label",
        category=category, severity="critical", status="resolved" if resolved is not None else "open",
        onset_at=at(onset), detected_at=at(onset + 30), event_at=at(onset + 30 + sequence),
        resolved_at=None if resolved is None else at(resolved), below_baseline_count=3, affected_sessions=2,
        affected_customers=2, session_ids=("ks1", "ks2"), customer_ids=("kc1", "kc2"), confident_wrong_count=3,
        outreach_required=True, irreversible_actions=0,
        suggested_gate=SuggestedGate(threshold=0.9, current_gate=0.8, failing_held_back=3, failing_total=3,
                                     faithful_held_back_share=0.1),
        shared_documents=(SharedDocument(doc_id="pricing-table", doc_version="v3", count=3, share=1.0,
                                         stale=True),),
        stale_contexts=3, baseline_faithfulness=0.9, baseline_low=0.7, baseline_below_rate=0.02,
        observed_below_rate=0.6, statistic=9.0, threshold=5.0, summary=f"{incident_id} summary",
        examples=(Example(interaction_id="k1", session_id="ks1", customer_id="kc1", timestamp=at(onset + 1),
                          query="q", response="a", faithfulness=0.2, confidence=0.85),))


def seed_store(store) -> None:
    """Known rows for the read routes: two clusters, an open and a resolved incident."""
    from pipelines.records import ClusterInfo

    store.upsert_clusters([
        ClusterInfo(cluster_id=cid, label=f"{cid} label", category=cat, terms=("a", "b"),
                    representative_query=f"{cid} query", size=4, centroid_version=1, first_seen=at(0),
                    last_seen=at(300))
        for cid, cat in (("k-pricing", "pricing"), ("k-policy", "policy"))])
    store.insert_interactions([
        scored("k0", "k-pricing", 0, "ks0", "kc0", below=False),
        scored("k1", "k-pricing", 101, "ks1", "kc1", below=True),
        scored("k2", "k-pricing", 102, "ks1", "kc1", below=True),
        scored("k3", "k-pricing", 200, "ks2", "kc2", below=True),
        scored("k4", "k-policy", 50, "ks3", "kc3", below=True),
    ])
    store.insert_incident_events([
        incident("inc-open", "k-pricing", "pricing", onset=100),
        incident("inc-open", "k-pricing", "pricing", onset=100, sequence=1),
        incident("inc-old", "k-policy", "policy", onset=40, sequence=0),
        incident("inc-old", "k-policy", "policy", onset=40, sequence=1, resolved=90),
    ])


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("api")
    settings = load_settings(data_dir=data, embedding={"backend": "hashing"}, cluster={"bootstrap_size": 20},
                             api={"tokens": [TOKEN, OTHER_TOKEN], "max_body_bytes": 64 * 1024})
    with live_api(settings, seed=seed_store, batch_size=32, cluster_refresh_seconds=0) as api:
        yield api


# ---- authentication --------------------------------------------------------------------------

def test_health_is_open(api):
    res = httpx.get(f"{api.url}/healthz")
    assert res.status_code == 200 and res.json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer"}, {"Authorization": f"Bearer {TOKEN}x"}],
                         ids=["missing", "wrong", "not-bearer", "empty", "prefix"])
def test_every_other_route_needs_a_valid_token(api, headers):
    for path in READ_ROUTES:
        res = httpx.get(f"{api.url}{path}", headers=headers)
        assert res.status_code == 401, path
        assert res.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in res.json()["detail"]
    for path in ("/v1/interactions", "/v1/flush"):
        res = httpx.post(f"{api.url}{path}", headers={**headers, "Content-Type": "application/json"}, content=b"[]")
        assert res.status_code == 401, path


@pytest.mark.parametrize("token", [TOKEN, OTHER_TOKEN])
def test_every_configured_token_is_accepted(api, token):
    for path in READ_ROUTES:
        assert httpx.get(f"{api.url}{path}", headers={"Authorization": f"Bearer {token}"}).status_code == 200, path


def test_refuses_to_start_without_a_token_unless_insecure(api):
    settings = api.settings.api.model_copy(update={"tokens": []})
    with pytest.raises(ConfigError, match="--insecure"):
        create_app(settings, api.store, api.ingestor)
    from pydantic import SecretStr

    with pytest.raises(ConfigError, match="empty token"):
        create_app(settings.model_copy(update={"tokens": [SecretStr(" ")]}), api.store, api.ingestor)
    open_app = create_app(settings.model_copy(update={"insecure": True}), api.store, api.ingestor)
    with serve_in_thread(open_app) as url:
        assert httpx.get(f"{url}/v1/incidents/inc-open").json()["incident_id"] == "inc-open"


def test_public_docs_setting_opens_only_the_docs(api):
    app = create_app(api.settings.api.model_copy(update={"public_docs": True}), api.store, api.ingestor)
    with serve_in_thread(app) as url:
        assert httpx.get(f"{url}/openapi.json").status_code == 200
        assert httpx.get(f"{url}/docs").status_code == 200
        assert httpx.get(f"{url}/v1/incidents").status_code == 401


# ---- ingest ----------------------------------------------------------------------------------

def dead_letters(store, request_id: str) -> list[dict]:
    return store.query("SELECT position, interaction_id, field, reason FROM dead_letters FINAL "
                       "WHERE source = 'http' AND startsWith(position, {prefix:String}) ORDER BY position",
                       {"prefix": f"request {request_id} "})


def stored_ids(store, ids: list[str]) -> list[str]:
    rows = store.query("SELECT interaction_id FROM interactions FINAL WHERE has(splitByChar(',', {ids:String}), "
                       "interaction_id) ORDER BY interaction_id", {"ids": ",".join(ids)})
    return [r["interaction_id"] for r in rows]


def test_json_array_accepts_valid_records_and_reports_each_invalid_one(api):
    body = [record(1000 + k) for k in range(30)]
    body.insert(3, {"interaction_id": "no-time", "query": "fee?"})
    body.insert(7, record(1100, timestamp="2026-11-02T10:00:00"))
    body.insert(9, 42)
    body.append(record(1101, confidence="high"))
    res = api.client.post("/v1/interactions?wait=true", json=body)
    assert res.status_code == 202, res.text
    out = res.json()
    assert (out["received"], out["accepted"], out["invalid"]) == (34, 30, 4)
    assert out["processed"] is True and out["errors_truncated"] is False
    errors = {e["index"]: e for e in out["errors"]}
    assert errors[3] == {"index": 3, "line": None, "interaction_id": "no-time", "field": "timestamp",
                         "reason": "field required"}
    assert errors[7]["interaction_id"] == "r1100" and "UTC offset" in errors[7]["reason"]
    assert errors[9]["field"] == "<record>" and "JSON object" in errors[9]["reason"]
    assert errors[33]["field"] == "confidence" and "number" in errors[33]["reason"]
    letters = dead_letters(api.store, out["request_id"])
    assert {(d["interaction_id"], d["field"]) for d in letters} == {
        ("no-time", "timestamp"), ("r1100", "timestamp"), (None, "<record>"), ("r1101", "confidence")}
    assert all(d["reason"] for d in letters)
    # The pipeline holds records back until its first fit (bootstrap_size 20 here): 30 passed it.
    assert out["pipeline"]["waiting_for_bootstrap"] == 0
    assert stored_ids(api.store, [f"r{1000 + k}" for k in range(30)]) == sorted(f"r{1000 + k}" for k in range(30))


def test_ndjson_reports_lines_and_skips_blank_ones(api):
    lines = [json.dumps(record(2000)), "", "{not json", json.dumps(record(2001)), "  ",
             json.dumps(record(2002, query="")), json.dumps(record(2003)) + "\r"]
    res = api.client.post("/v1/interactions?wait=true", content="\n".join(lines).encode(),
                          headers={"Content-Type": "application/x-ndjson"})
    assert res.status_code == 202, res.text
    out = res.json()
    assert (out["received"], out["accepted"], out["invalid"]) == (5, 3, 2)
    assert [(e["index"], e["line"], e["field"]) for e in out["errors"]] == [(1, 3, "<record>"), (3, 6, "query")]
    assert "malformed JSON" in out["errors"][0]["reason"]
    assert {d["position"].rsplit(" ", 2)[-2:][1] for d in dead_letters(api.store, out["request_id"])} == {"3", "6"}
    assert stored_ids(api.store, ["r2000", "r2001", "r2003"]) == ["r2000", "r2001", "r2003"]


@pytest.mark.parametrize("content,ctype,status,words", [
    (b"[1, 2", "application/json", 400, "not valid JSON"),
    (b'{"interaction_id": "x"}', "application/json", 400, "JSON array"),
    (b"a,b\n1,2", "text/csv", 415, "application/x-ndjson"),
])
def test_a_body_that_is_not_a_batch_is_refused_whole(api, content, ctype, status, words):
    res = api.client.post("/v1/interactions", content=content, headers={"Content-Type": ctype})
    assert res.status_code == status and words in res.json()["detail"]


def test_body_size_limit(api):
    big = [record(3000 + k, response="x" * 1000) for k in range(80)]  # about 100 KB, limit 64 KiB
    res = api.client.post("/v1/interactions", json=big)
    assert res.status_code == 413
    assert "65536" in res.json()["detail"] and "split the batch" in res.json()["detail"]
    # Without a Content-Length (chunked upload) the limit holds while reading.
    payload = json.dumps(big).encode()
    res = api.client.post("/v1/interactions", content=iter([payload[k:k + 8192] for k in range(0, len(payload), 8192)]),
                          headers={"Content-Type": "application/json"})
    assert res.status_code == 413
    assert stored_ids(api.store, [r["interaction_id"] for r in big]) == []


def test_a_repeated_interaction_id_is_counted_once(api):
    batch = [record(4000 + k) for k in range(10)]
    before = api.ingestor.totals()
    first = api.client.post("/v1/interactions?wait=true", json=batch + batch[:3]).json()
    again = api.client.post("/v1/interactions?wait=true", json=batch).json()
    assert first["accepted"] == 13 and again["accepted"] == 10
    after = again["pipeline"]
    assert after["duplicates"] - before["duplicates"] == 13
    assert after["scored"] - before["scored"] == 10
    assert stored_ids(api.store, [r["interaction_id"] for r in batch]) == sorted(r["interaction_id"] for r in batch)
    count = api.store.query("SELECT count() AS n FROM interactions FINAL WHERE startsWith(interaction_id, 'r40')")
    assert count[0]["n"] == 10


def test_records_wait_for_the_first_fit_until_flush(api):
    """A fresh pipeline (same store) holds records until bootstrap_size; POST /v1/flush fits on them."""
    with live_api(api.settings, api.store) as fresh:
        client = fresh.client
        batch = [record(5000 + k) for k in range(12)]
        out = client.post("/v1/interactions?wait=true", json=batch).json()
        assert out["processed"] and out["pipeline"]["waiting_for_bootstrap"] == 12
        assert stored_ids(api.store, [r["interaction_id"] for r in batch]) == []
        flushed = client.post("/v1/flush")
        assert flushed.status_code == 200
        assert flushed.json()["processed"] and flushed.json()["pipeline"]["waiting_for_bootstrap"] == 0
        assert flushed.json()["pipeline"]["scored"] == 12
        assert len(stored_ids(api.store, [r["interaction_id"] for r in batch])) == 12
        # Without wait the answer comes at once; flush then waits for the queue.
        late = client.post("/v1/interactions", json=[record(5100 + k) for k in range(5)])
        assert late.status_code == 202 and late.json()["processed"] is None
        assert client.post("/v1/flush").json()["pipeline"]["scored"] == 17


def test_shutdown_drains_what_was_accepted(api):
    with live_api(api.settings, api.store) as fresh:
        res = httpx.post(f"{fresh.url}/v1/interactions", json=[record(6000 + k) for k in range(8)],
                         headers={"Authorization": f"Bearer {TOKEN}"})
        assert res.status_code == 202
    # Leaving the ingestor drained the queue and fitted the 8 waiting records (fewer than bootstrap_size).
    assert len(stored_ids(api.store, [f"r{6000 + k}" for k in range(8)])) == 8
    assert fresh.ingestor.totals()["scored"] == 8
    with pytest.raises(Exception, match="shutting down"):
        fresh.ingestor.submit([])


# ---- reads -----------------------------------------------------------------------------------

def items(res: httpx.Response) -> list[dict]:
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["count"] == len(body["items"])
    return body["items"]


def test_clusters_list_and_detail(api):
    listed = {c["cluster_id"]: c for c in items(api.client.get("/v1/clusters"))}
    assert {"k-pricing", "k-policy"} <= set(listed)
    assert listed["k-pricing"]["label"] == "k-pricing label" and listed["k-pricing"]["category"] == "pricing"
    detail = api.client.get("/v1/clusters/k-pricing").json()
    assert detail["open_incidents"] == ["inc-open"]
    rates = {r["window"]: r for r in detail["recent_rates"]}
    assert rates["all"]["interactions"] == 4 and rates["all"]["below_baseline"] == 3
    assert rates["all"]["below_baseline_rate"] == pytest.approx(0.75)
    assert rates["1h"]["interactions"] == 1  # the window ends at the cluster's latest answer (minute 200)
    assert rates["24h"]["first_at"] == "2026-11-02T10:00:00Z" and rates["24h"]["last_at"] == "2026-11-02T13:20:00Z"
    assert [e["interaction_id"] for e in detail["examples"]] == ["k3", "k2", "k1", "k0"]
    assert detail["baseline"]["source"] == "global prior"  # the live detector never saw this cluster
    assert detail["last_baseline_low"] == 0.7
    missing = api.client.get("/v1/clusters/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_cluster_detail_shows_the_live_baseline_of_a_pipeline_cluster(api):
    api.client.post("/v1/interactions?wait=true", json=[record(7000 + k) for k in range(60)])
    pipeline_clusters = [c["cluster_id"] for c in items(api.client.get("/v1/clusters"))
                         if not c["cluster_id"].startswith("k-")]
    assert pipeline_clusters
    details = [api.client.get(f"/v1/clusters/{cid}").json() for cid in pipeline_clusters]
    own = [d for d in details if d["baseline"]["source"] == "cluster"]
    assert own and all(d["recent_rates"][-1]["interactions"] > 0 for d in own)
    assert any(d["baseline"]["count"] > 0 and d["baseline"]["median"] is not None for d in own)


@pytest.mark.parametrize("query,expected", [
    ("", ["inc-open", "inc-old"]),
    ("?status=open", ["inc-open"]),
    ("?status=resolved", ["inc-old"]),
    ("?cluster=k-policy", ["inc-old"]),
    ("?category=pricing", ["inc-open"]),
    ("?since=2026-11-02T11:35:00Z", ["inc-open"]),  # inc-old resolved at 11:30
    ("?until=2026-11-02T11:00:00Z", ["inc-old"]),  # inc-open began at 11:40
    ("?since=2026-11-02T11:00:00%2B01:00&until=2026-11-02T12:00:00Z", ["inc-open", "inc-old"]),
    ("?since=2026-11-02T11:35:00+00:00", ["inc-open"]),  # unencoded '+' arrives as a space
    ("?status=open&category=policy", []),
    ("?limit=1", ["inc-open"]),
])
def test_incident_filters(api, query, expected):
    assert [i["incident_id"] for i in items(api.client.get(f"/v1/incidents{query}"))] == expected


@pytest.mark.parametrize("query,words", [
    ("?since=yesterday", "not a date-time"),
    ("?since=2026-11-02T10:00:00", "no UTC offset"),
    ("?until=2026-11-02", "no UTC offset"),
    ("?since=2026-11-03T00:00:00Z&until=2026-11-02T00:00:00Z", "is after until"),
    ("?status=closed", "open"),
    ("?limit=0", "greater than or equal to 1"),
    ("?format=xml", "csv"),
])
def test_bad_incident_filters_say_what_is_wrong(api, query, words):
    res = api.client.get(f"/v1/incidents{query}")
    assert res.status_code == 422 and words in json.dumps(res.json()["detail"])


def test_incident_detail_and_404(api):
    found = api.client.get("/v1/incidents/inc-old").json()
    assert found["status"] == "resolved" and [e["event"] for e in found["events"]] == ["opened", "resolved"]
    assert found["suggested_gate"]["threshold"] == 0.9 and found["shared_documents"][0]["doc_id"] == "pricing-table"
    for path in ("/v1/incidents/nope", "/v1/incidents/nope/sessions"):
        res = api.client.get(path)
        assert res.status_code == 404 and "nope" in res.json()["detail"]


def test_incident_sessions_json_and_csv(api):
    rows = items(api.client.get("/v1/incidents/inc-open/sessions"))
    assert [(r["session_id"], r["customer_id"], r["below_baseline_count"]) for r in rows] == [
        ("ks1", "kc1", 2), ("ks2", "kc2", 1)]
    for res in (api.client.get("/v1/incidents/inc-open/sessions?format=csv"),
                api.client.get("/v1/incidents/inc-open/sessions", headers={"Accept": "text/csv"})):
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
        assert "attachment" in res.headers["content-disposition"]
        table = list(csv.DictReader(io.StringIO(res.text)))
        assert [(r["session_id"], r["customer_id"]) for r in table] == [("ks1", "kc1"), ("ks2", "kc2")]
    assert api.client.get("/v1/incidents/inc-open/sessions?format=json",
                          headers={"Accept": "text/csv"}).json()["count"] == 2
    incidents_csv = api.client.get("/v1/incidents?format=csv").text
    assert incidents_csv.splitlines()[0].startswith("incident_id,status")
    clusters_csv = list(csv.DictReader(io.StringIO(api.client.get("/v1/clusters?format=csv").text)))
    assert {"k-pricing", "k-policy"} <= {r["cluster_id"] for r in clusters_csv}


@pytest.mark.parametrize("query,expected", [
    ("cluster=k-pricing&since=2026-11-02T00:00:00Z", ["ks1", "ks2"]),
    ("cluster=k-pricing&since=2026-11-02T00:00:00Z&below_baseline=false", ["ks0", "ks1", "ks2"]),
    ("cluster=k-pricing&since=2026-11-02T11:45:00Z", ["ks2"]),
    ("cluster=k-pricing&since=2026-11-02T00:00:00Z&until=2026-11-02T13:20:00Z", ["ks1"]),  # until is exclusive
    ("cluster=k-policy&since=2026-11-02T00:00:00Z", ["ks3"]),
    ("cluster=nope&since=2026-11-02T00:00:00Z", []),
])
def test_sessions_filters(api, query, expected):
    assert [r["session_id"] for r in items(api.client.get(f"/v1/sessions?{query}"))] == expected


@pytest.mark.parametrize("path", ["/v1/sessions?cluster=k-pricing&since=2026-11-02T00:00:00Z&below_baseline=false",
                                  "/v1/incidents/inc-open/sessions"])
def test_session_lists_page_by_cursor(api, path):
    whole = api.client.get(path).json()
    assert whole["next"] is None and whole["next_cursor"] is None and "link" not in api.client.get(path).headers
    expected = [r["session_id"] for r in whole["items"]]
    assert len(expected) >= 2
    # Follow `next` one row at a time: the same rows, in the same order, each once.
    seen, url, pages = [], f"{path}&limit=1" if "?" in path else f"{path}?limit=1", 0
    while url is not None:
        res = api.client.get(url)
        body = res.json()
        assert body["count"] == len(body["items"]) == 1
        seen += [r["session_id"] for r in body["items"]]
        url, pages = body["next"], pages + 1
        if url is not None:
            assert res.headers["link"] == f'<{url}>; rel="next"' and res.headers["x-next-cursor"] == body["next_cursor"]
            assert f"cursor={body['next_cursor']}" in url and "limit=1" in url
    assert seen == expected and pages == len(expected)
    # CSV: every row by default (the outreach export); with a limit, a page and a Link to the next.
    sep = "&" if "?" in path else "?"
    full = api.client.get(f"{path}{sep}format=csv")
    assert [r["session_id"] for r in csv.DictReader(io.StringIO(full.text))] == expected and "link" not in full.headers
    first = api.client.get(f"{path}{sep}format=csv&limit=1")
    assert [r["session_id"] for r in csv.DictReader(io.StringIO(first.text))] == expected[:1]
    rest = api.client.get(first.headers["link"][1:].split(">")[0])
    assert rest.headers["content-type"].startswith("text/csv")
    assert [r["session_id"] for r in csv.DictReader(io.StringIO(rest.text))] == expected[1:2]


@pytest.mark.parametrize("query,status,words", [("limit=0", 422, "greater than or equal to 1"),
                                                ("limit=1000001", 422, "less than or equal to 1000000"),
                                                ("cursor=not-a-cursor", 400, "not a cursor this API issued"),
                                                ("cursor=W10", 400, "not a cursor"),  # base64 of []
                                                ("cursor=WyIyMDI2LTExLTAyVDEwOjAwOjAwIiwiazEiXQ", 400, "not a cursor")])
def test_bad_session_pages(api, query, status, words):
    # (the last cursor holds a time without an offset)
    for path in ("/v1/sessions?cluster=k-pricing&since=2026-11-02T00:00:00Z", "/v1/incidents/inc-open/sessions?x=1"):
        res = api.client.get(f"{path}&{query}")
        assert res.status_code == status and words in json.dumps(res.json()["detail"]), res.text


@pytest.mark.parametrize("query,words", [("since=2026-11-02T00:00:00Z", "cluster"),
                                         ("cluster=k-pricing", "since"),
                                         ("cluster=k-pricing&since=2026-11-02T00:00:00", "no UTC offset"),
                                         ("cluster=k-pricing&since=2026-11-02T00:00:00Z&below_baseline=maybe",
                                          "bool")])
def test_bad_session_filters(api, query, words):
    res = api.client.get(f"/v1/sessions?{query}")
    assert res.status_code == 422 and words in json.dumps(res.json()["detail"])


def test_injection_strings_return_nothing_and_break_nothing(api):
    before = api.store.counts()
    for text in INJECTIONS:
        q = quote(text, safe="")
        for name in ("cluster", "category"):
            assert items(api.client.get(f"/v1/incidents?{name}={q}")) == []
        assert items(api.client.get(f"/v1/sessions?cluster={q}&since=2026-11-01T00:00:00Z")) == []
        for path in (f"/v1/clusters/{q}", f"/v1/incidents/{q}", f"/v1/incidents/{q}/sessions"):
            assert api.client.get(path).status_code == 404, path
        for query in (f"status={q}", f"since={q}", f"until={q}", f"limit={q}", f"format={q}"):
            assert api.client.get(f"/v1/incidents?{query}").status_code == 422, query
        assert api.client.get(f"/v1/sessions?cluster=k-pricing&since={q}").status_code == 422
    assert api.store.counts() == before
    assert [i["incident_id"] for i in items(api.client.get("/v1/incidents"))] == ["inc-open", "inc-old"]


# ---- operations ------------------------------------------------------------------------------

def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics(api):
    api.client.post("/v1/interactions?wait=true", json=[record(8000), record(8000), {"query": "no id"}])
    api.client.get("/v1/incidents/inc-open")
    res = api.client.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    text = res.text
    totals = api.ingestor.totals()
    assert metric(text, "faithwatch_interactions_ingested_total") >= 2
    assert metric(text, "faithwatch_interactions_invalid_total") >= 1
    assert metric(text, "faithwatch_interactions_duplicate_total") == totals["duplicates"] > 0
    assert metric(text, "faithwatch_interactions_scored_total") == totals["scored"] > 0
    assert metric(text, "faithwatch_interactions_below_baseline_total") == totals["below_baseline"]
    assert 'faithwatch_incident_events_total{kind="opened"}' in text
    assert metric(text, "faithwatch_ingest_queue_depth") == 0
    # Latency by route template: ids never become label values.
    assert ('faithwatch_http_request_duration_seconds_count{method="GET",route="/v1/incidents/{incident_id}",'
            'status="200"}') in text
    assert "inc-open" not in text


def test_openapi(api):
    spec = api.client.get("/openapi.json").json()
    assert {"/v1/interactions", "/v1/flush", "/v1/clusters", "/v1/clusters/{cluster_id}", "/v1/incidents",
            "/v1/incidents/{incident_id}", "/v1/incidents/{incident_id}/sessions", "/v1/sessions", "/healthz",
            "/metrics"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    body = spec["paths"]["/v1/interactions"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-ndjson"} <= set(body)
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
