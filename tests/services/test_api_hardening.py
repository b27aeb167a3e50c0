"""Issue #12 against a real server (uvicorn on 127.0.0.1, httpx, the chDB store): one bad record
never fails its batch, a body of many tiny records is bounded, flushes do not starve the server,
exports are safe to open in a spreadsheet, errors say nothing of the store's internals."""

from __future__ import annotations

import csv
import io
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings
from hypothesis import strategies as st

from services.api import create_app, serve_in_thread
from services.settings import load_settings
from services.testing.live_api import live_api

TOKEN = "t0ken-for-hardening"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
BIG_INT = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000


def record(n: int, **overrides: Any) -> dict:
    values = {"interaction_id": f"h{n}", "session_id": f"hs{n % 7}", "customer_id": f"hc{n % 5}",
              "timestamp": (T0 + timedelta(minutes=n)).isoformat(), "query": f"what is the fee for euros {n % 4}",
              "response": "The fee is 2%.", "confidence": 0.9,
              "contexts": [{"doc_id": "pricing-table", "doc_version": "v3", "text": "The fee is 2%."}]}
    values.update(overrides)
    return values


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = tmp_path_factory.mktemp("hardening")
    settings = load_settings(data_dir=data, embedding={"backend": "hashing"}, cluster={"bootstrap_size": 10},
                             api={"tokens": [TOKEN], "max_body_bytes": 4 * 1024 * 1024,
                                  "max_records_per_request": 1000})
    with live_api(settings, batch_size=32, cluster_refresh_seconds=0) as api:
        yield api


def dead_letters(store, request_id: str) -> list[dict]:
    return store.query("SELECT position, interaction_id, field, reason FROM dead_letters FINAL "
                       "WHERE source = 'http' AND startsWith(position, {prefix:String}) ORDER BY position",
                       {"prefix": f"request {request_id} "})


def stored(store, prefix: str) -> list[str]:
    rows = store.query("SELECT interaction_id FROM interactions FINAL WHERE startsWith(interaction_id, {p:String}) "
                       "ORDER BY interaction_id", {"p": prefix})
    return [r["interaction_id"] for r in rows]


# ---- 2. one record never fails its batch -----------------------------------------------------

HOSTILE = [f'{{"interaction_id": "big", "timestamp": "2026-11-02T10:00:00Z", "query": "q", "n": {BIG_INT}}}',
           DEEP,
           f'{{"interaction_id": "deep", "timestamp": "2026-11-02T10:00:00Z", "query": "q", "m": {DEEP}}}']


def test_json_array_dead_letters_the_undecodable_records_and_takes_the_rest(api):
    good = [json.dumps(record(100 + k)) for k in range(12)]
    body = "[" + ",".join(good[:4] + HOSTILE[:1] + good[4:8] + HOSTILE[1:] + good[8:]) + "]"
    res = api.client.post("/v1/interactions?wait=true", content=body.encode(),
                          headers={"Content-Type": "application/json"})
    assert res.status_code == 202, res.text[:500]
    out = res.json()
    assert (out["received"], out["accepted"], out["invalid"]) == (15, 12, 3)
    assert [(e["index"], e["field"]) for e in out["errors"]] == [(4, "<record>"), (9, "<record>"), (10, "<record>")]
    assert "4300 digits" in out["errors"][0]["reason"] and "nested too deeply" in out["errors"][1]["reason"]
    letters = dead_letters(api.store, out["request_id"])
    assert sorted(d["position"].rsplit(" ", 1)[1] for d in letters) == ["10", "4", "9"]
    api.client.post("/v1/flush")
    assert stored(api.store, "h1") == sorted(f"h{100 + k}" for k in range(12))


def test_ndjson_dead_letters_the_undecodable_lines_and_takes_the_rest(api):
    lines = [json.dumps(record(200 + k)) for k in range(6)]
    body = "\n".join(lines[:2] + HOSTILE[:1] + lines[2:4] + HOSTILE[1:] + lines[4:])
    res = api.client.post("/v1/interactions?wait=true", content=body.encode(),
                          headers={"Content-Type": "application/x-ndjson"})
    assert res.status_code == 202, res.text[:500]
    out = res.json()
    assert (out["received"], out["accepted"], out["invalid"]) == (9, 6, 3)
    assert [e["line"] for e in out["errors"]] == [3, 6, 7]
    assert len(dead_letters(api.store, out["request_id"])) == 3
    api.client.post("/v1/flush")
    assert stored(api.store, "h2") == sorted(f"h{200 + k}" for k in range(6))


# ---- 3. the records of one request are bounded ------------------------------------------------

def test_a_million_tiny_lines_are_refused_with_the_limit_and_nothing_is_dead_lettered(api):
    before = api.store.counts()["dead_letters"]
    res = api.client.post("/v1/interactions", content=b"x\n" * 1_000_000,
                          headers={"Content-Type": "application/x-ndjson"})
    assert res.status_code == 413
    assert "more than 1000 records" in res.json()["detail"] and "max_records_per_request" in res.json()["detail"]
    array = api.client.post("/v1/interactions", content=b"[" + b"0," * 1000 + b"0]",
                            headers={"Content-Type": "application/json"})
    assert array.status_code == 413 and "more than 1000 records" in array.json()["detail"]
    assert api.store.counts()["dead_letters"] == before
    # Exactly at the bound is fine.
    ok = api.client.post("/v1/interactions", content=b"x\n" * 1000, headers={"Content-Type": "application/x-ndjson"})
    assert ok.status_code == 202 and ok.json()["invalid"] == 1000
    assert api.store.counts()["dead_letters"] == before + 1000


# ---- 6. exports --------------------------------------------------------------------------------

FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tTAB", "\rCR"]


@pytest.fixture(scope="module")
def hostile_sessions(api):
    from pipelines.records import ScoredInteraction

    rows = [ScoredInteraction(
        interaction_id=f"x{k}", session_id=text, customer_id=text, timestamp=T0 + timedelta(minutes=k),
        query=text, response=text, cluster_id="k-export", cluster_label="export", category="pricing",
        faithfulness=0.2, faithfulness_source="producer", confidence=0.9, below_baseline=True, baseline_low=0.7,
        confident_wrong=True, stale_context=False) for k, text in enumerate(FORMULAS)]
    api.store.insert_interactions(rows)
    return rows


def test_outreach_csv_cells_cannot_start_a_formula(api, hostile_sessions):
    res = api.client.get("/v1/sessions?cluster=k-export&since=2026-11-01T00:00:00Z&format=csv")
    assert res.status_code == 200
    table = list(csv.DictReader(io.StringIO(res.text, newline="")))
    assert [r["session_id"] for r in table] == ["'" + text for text in FORMULAS]
    for row in table:
        for column in ("session_id", "customer_id", "example_query", "example_response"):
            assert row[column][0] == "'" and row[column][1:] in FORMULAS
        assert float(row["worst_faithfulness"]) == 0.2  # numbers stay numbers
    # JSON is data, not a spreadsheet: unchanged.
    assert [r["session_id"] for r in api.client.get("/v1/sessions?cluster=k-export&since=2026-11-01T00:00:00Z")
            .json()["items"]] == FORMULAS


@pytest.mark.parametrize("cluster", ['x"; filename="evil.exe', "кластер-цен", "料金 🚀", "a\\b/c\r\nX-Evil: 1"])
def test_the_export_filename_is_sanitised_and_non_latin1_works(api, cluster):
    res = api.client.get(f"/v1/sessions?cluster={quote(cluster, safe='')}&since=2026-11-01T00:00:00Z&format=csv")
    assert res.status_code == 200
    header = res.headers["content-disposition"]
    assert "x-evil" not in res.headers
    params = [p.strip() for p in header.split(";")]
    assert params[0] == "attachment" and len(params) == 3
    assert params[1].startswith('filename="') and params[1].count('"') == 2
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in params[1][len('filename="'):-1])
    assert params[2].startswith("filename*=UTF-8''")
    name = unquote(params[2][len("filename*=UTF-8''"):])
    assert name == "sessions-" + "".join(c for c in cluster if c.isprintable()) + ".csv"


# ---- 5. flushes do not starve the server; 8. store errors stay in the log ----------------------

class Faulty:
    """The real store, with two switches: ``gate`` (cleared: writes of clusters wait for it, so the
    ingest worker stops mid-flush) and ``broken`` (set: every query fails like a broken server)."""

    SECRET = "Code: 60. DB::Exception: Table fw_secret.interactions does not exist (/var/lib/chdb/secret)"

    def __init__(self, store):
        self.store = store
        self.gate = threading.Event()
        self.gate.set()
        self.in_flush = threading.Event()
        self.cluster_writes = 0
        self.broken = False

    def __getattr__(self, name):
        method = getattr(self.store, name)
        if not callable(method):  # plain attributes (the database name) as they are
            return method

        def call(*args, **kwargs):
            if self.broken:
                from pipelines.errors import StoreError

                raise StoreError(self.SECRET)
            return method(*args, **kwargs)

        return call

    def upsert_clusters(self, rows):
        self.cluster_writes += 1
        self.in_flush.set()
        self.gate.wait()
        return self.store.upsert_clusters(rows)



def gauge(client: httpx.Client, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


def test_concurrent_flushes_wait_for_one_and_health_and_reads_still_answer(api):
    faulty = Faulty(api.store)
    n, waits = 60, 45  # each more than the server's 40 worker threads
    unbounded = httpx.Limits(max_connections=None)  # the probes below use a client of their own
    with live_api(api.settings, faulty, timeout=30, cluster_refresh_seconds=0) as served:
        client = served.client
        with httpx.Client(base_url=served.url, headers=AUTH, timeout=60, limits=unbounded) as load, \
                ThreadPoolExecutor(n + waits) as pool:
            assert client.post("/v1/interactions?wait=true",
                               json=[record(300 + k) for k in range(5)]).status_code == 202
            faulty.gate.clear()
            faulty.cluster_writes = 0
            flushes = [pool.submit(load.post, "/v1/flush") for _ in range(n)]
            posts = [pool.submit(load.post, "/v1/interactions?wait=true", json=[record(500 + k)])
                     for k in range(waits)]
            try:
                assert faulty.in_flush.wait(30)
                # Every other flush queues behind the running one, and every ?wait=true request
                # waits, without a thread: /metrics answers.
                polls = 0
                while (gauge(client, "faithwatch_flush_waiting") < n - 1
                       or gauge(client, "faithwatch_ingest_queue_depth") < waits):
                    polls += 1
                    assert polls < 3000, "the requests never all arrived"
                    threading.Event().wait(0.01)
                for _ in range(5):
                    assert client.get("/healthz").json() == {"status": "ok"}
                    assert client.get("/v1/incidents").status_code == 200
                    assert client.get("/v1/clusters").status_code == 200
                done = [(k, f.exception() or f.result().text[:200]) for k, f in enumerate(flushes + posts) if f.done()]
                assert not done, done  # all still pending while reads answered
            finally:
                faulty.gate.set()
            answers = [f.result() for f in flushes]
            posted = [f.result() for f in posts]
            flush_passes = faulty.cluster_writes
    assert [a.status_code for a in answers] == [200] * n
    assert all(a.json()["processed"] and a.json()["pipeline"]["waiting_for_bootstrap"] == 0 for a in answers)
    assert flush_passes <= 3  # the running flush, one shared by the 59 that waited, the queued records
    assert [(p.status_code, p.json()["processed"]) for p in posted] == [(202, True)] * waits
    assert stored(api.store, "h30") == sorted(f"h{300 + k}" for k in range(5))
    assert len(stored(api.store, "h5")) == waits


def test_store_errors_reach_the_log_not_the_client(api, caplog):
    faulty = Faulty(api.store)
    app = create_app(api.settings.api, faulty, api.ingestor)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as client:
        faulty.broken = True
        health = httpx.get(f"{url}/healthz")
        read = client.get("/v1/incidents")
    assert health.status_code == 503 and health.json() == {"status": "store unavailable"}
    assert read.status_code == 503 and "store unavailable" in read.json()["detail"]
    for answer in (health.text, read.text):
        assert "DB::Exception" not in answer and "fw_secret" not in answer and "/var/lib" not in answer
    error_id = read.json()["detail"].split("error ")[1].split(";")[0]
    assert any(error_id in r.getMessage() and "fw_secret" in r.getMessage() for r in caplog.records)


# ---- 7. input sanity ----------------------------------------------------------------------------

def test_a_far_future_timestamp_nan_metadata_and_a_blank_query_are_dead_lettered(api):
    body = [record(400 + k) for k in range(12)]
    body += [record(450, interaction_id="h-9999", timestamp="9999-12-31T00:00:00Z"),
             record(451, interaction_id="h-blank", query="  \t "),
             record(452, interaction_id="h-nan", metadata={"score": 1.0}, extra=[1.0])]
    text = json.dumps(body).replace('"extra": [1.0]', '"extra": [NaN]')
    res = api.client.post("/v1/interactions?wait=true", content=text.encode(),
                          headers={"Content-Type": "application/json"})
    assert res.status_code == 202, res.text
    out = res.json()
    assert {(e["interaction_id"], e["field"]) for e in out["errors"]} == {("h-blank", "query"),
                                                                         ("h-nan", "metadata.extra.0")}
    api.client.post("/v1/flush")
    rows = api.store.query("SELECT interaction_id, field, reason FROM dead_letters FINAL "
                           "WHERE position = 'interaction h-9999' AND source = 'http'")
    assert [(r["interaction_id"], r["field"]) for r in rows] == [("h-9999", "timestamp")]
    assert "input.max_ahead_hours" in rows[0]["reason"]
    assert api.ingestor.totals()["rejected"] >= 1
    assert stored(api.store, "h4") == sorted(f"h{400 + k}" for k in range(12))
    assert stored(api.store, "h-") == []


# ---- 8. /docs loads nothing from outside ------------------------------------------------------

def test_docs_are_served_without_a_cdn(api):
    page = api.client.get("/docs")
    assert page.status_code == 200 and "SwaggerUIBundle" in page.text
    assert "cdn" not in page.text and "https://" not in page.text and "http://" not in page.text
    for name, kind in (("swagger-ui-bundle.js", "javascript"), ("swagger-ui.css", "text/css"),
                       ("favicon-32x32.png", "image/png")):
        asset = api.client.get(f"/docs/assets/{name}")
        assert asset.status_code == 200 and kind in asset.headers["content-type"], name
        assert f"/docs/assets/{name}" in page.text
    assert "SwaggerUIBundle" in api.client.get("/docs/assets/swagger-ui-bundle.js").text
    for name in ("index.css", "..%2F..%2Fapi.py", "swagger-ui.js.map"):
        assert api.client.get(f"/docs/assets/{name}").status_code == 404, name
    assert httpx.get(f"{api.url}/docs/assets/swagger-ui.css").status_code == 401  # like /docs itself


# ---- fuzz: no body makes the server answer 500 ---------------------------------------------------

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=10)
_fields = st.fixed_dictionaries({}, optional={
    "interaction_id": st.text(max_size=10) | _json, "timestamp": st.sampled_from(
        ["2026-11-02T10:00:00Z", "9999-12-31T00:00:00Z", "2026-11-02T10:00:00", "0001-01-01T00:00:00Z"]) | _json,
    "query": st.text(max_size=20) | _json, "confidence": _json, "contexts": _json, "metadata": _json, "x": _json})


@fuzz_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300),
                 st.lists(_fields, max_size=5).map(lambda rows: json.dumps(rows).encode()),
                 st.lists(_fields, max_size=5).map(lambda rows: "\n".join(map(json.dumps, rows)).encode())),
       st.sampled_from(["application/json", "application/x-ndjson", "", "text/plain"]))
def test_fuzz_no_body_gets_a_500(api, body, content_type):
    res = api.client.post("/v1/interactions", content=body, headers={"Content-Type": content_type})
    assert res.status_code in (202, 400, 413, 415), (res.status_code, res.text[:300])
    if res.status_code == 202:
        out = res.json()
        assert out["received"] == out["accepted"] + out["invalid"]
