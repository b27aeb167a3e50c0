"""The Kafka driver against a real broker (tansu, memory storage; S3 storage on moto's server for
the broker-restart test) and real worker processes.

The store is the ClickHouse HTTP test server (tests/services/conftest.py), which worker processes
and this test process reach at the same time; every test uses its own topics, consumer group and
database. The reference is ``faithwatch replay`` of the same file. Alert delivery (a notify file
naming a signed webhook and an Alertmanager, both local recording receivers) rides along in the
two-worker, SIGKILL and restart tests rather than in tests of its own: worker runs are the slow part.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pipelines.scenario import IncidentSpec, ScenarioConfig, generate, to_jsonl_lines
from services.datasets import load_banking77
from services.testing.receiver import Receiver
from services.testing.s3 import S3Server
from services.testing.tansu import Tansu, free_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def broker() -> Iterator[Tansu]:
    with Tansu.start() as b:
        yield b


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> dict:
    """A generated stream with an incident, and what `faithwatch replay` makes of it: one stale
    pricing table behind two intents, so the incident spans clusters (issue #10)."""
    d = tmp_path_factory.mktemp("stream")
    spec = IncidentSpec(onset_day=1.0, intents=("exchange_rate", "transfer_fee_charged"))
    sc = generate(load_banking77("train"), ScenarioConfig(seed=11, days=2.0, per_day=600, incident=spec))
    path = d / "stream.jsonl"
    path.write_text("".join(to_jsonl_lines(sc.records)), encoding="utf-8")
    alerts, scored = d / "replay-alerts.jsonl", d / "replay-scored.jsonl"
    run = subprocess.run([sys.executable, "-m", "services.cli", "replay", str(path), "--alerts-out", str(alerts),
                          "--scored-out", str(scored), "--no-progress"], cwd=REPO, capture_output=True, text=True,
                         env=_env(data_dir=d / "replay-data"), timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    events = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert any(e["event"] == "opened" for e in events)
    # The drivers must agree on an incident that spans clusters, joined while open.
    assert any(len(e["clusters"]) > 1 for e in events), [(e["incident_id"], e["clusters"]) for e in events]
    return {"path": path, "n": len(sc.records), "alerts": alerts,
            "scored": {r["interaction_id"]: r for r in map(json.loads, scored.read_text().splitlines())}}


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAITHWATCH_")}
    env.update({"FAITHWATCH_EMBEDDING__BACKEND": "hashing", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(_env_vars(extra))
    return env


def _env_vars(settings: dict) -> dict:
    return {f"FAITHWATCH_{k.upper()}": str(v) for k, v in settings.items()}


class Channels:
    """A notify file routing every incident to a signed webhook and an Alertmanager (re-sent every
    second while open), both local recording receivers."""

    def __init__(self, tmp: Path):
        self.hook, self.am = Receiver(), Receiver()
        self.file = tmp / "notify.yaml"
        self.file.write_text(
            "channels:\n"
            f"  hook: {{type: webhook, url: '{self.hook.url}', secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}}\n"
            f"  am: {{type: alertmanager, url: 'http://127.0.0.1:{self.am.port}'}}\n"
            "routes:\n  - channels: [hook, am]\n")

    def hook_ids(self) -> list[str]:
        """``webhook-id`` (incident_id:sequence) of every request the webhook received, in order."""
        return [r.headers["webhook-id"] for r in list(self.hook.requests)]

    def close(self) -> None:
        self.hook.close()
        self.am.close()


@pytest.fixture
def channels(tmp_path) -> Iterator[Channels]:
    c = Channels(tmp_path)
    try:
        yield c
    finally:
        c.close()


def event_ids(alerts: Path) -> list[str]:
    return [f"{e['incident_id']}:{e['sequence']}" for e in map(json.loads, alerts.read_text().splitlines())]


class Setup:
    """One test's topics, consumer group and store database on the shared broker and server."""

    def __init__(self, broker: Tansu, server, tmp: Path):
        tag = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.server = server
        self.database = f"k_{tag}"
        self.env = _env(
            kafka__brokers=broker.url, kafka__app_id=f"fw-{tag}", kafka__partitions=4,
            kafka__interactions_topic=f"{tag}.interactions", kafka__prepared_topic=f"{tag}.prepared",
            kafka__scored_topic=f"{tag}.scored", kafka__incidents_topic=f"{tag}.incidents",
            kafka__dead_letter_topic=f"{tag}.dead-letter", kafka__cluster_model_topic=f"{tag}.cluster-model",
            kafka__gate_model_topic=f"{tag}.gate-model",
            kafka__reorder_idle_seconds=2, kafka__checkpoint_seconds=1, kafka__batch_seconds=0.3,
            kafka__session_timeout_seconds=6, notify__alertmanager_refresh_seconds=1, notify__backoff_seconds=0.2,
            store__backend="clickhouse", store__url=server.url,
            store__password=server.password.get_secret_value(), store__database=self.database,
            data_dir=tmp / "data")
        self.workers: list[subprocess.Popen] = []
        self.stopped: list[subprocess.Popen] = []

    def produce(self, path: Path) -> dict:
        run = subprocess.run([sys.executable, "-m", "services.cli", "produce", str(path)], cwd=REPO,
                             capture_output=True, text=True, env=self.env, timeout=60)
        assert run.returncode == 0, run.stderr[-3000:]
        return json.loads(run.stdout.strip().splitlines()[-1])

    def worker(self, alerts: Path, name: str = "w", notify: Path | None = None, **env) -> subprocess.Popen:
        log = (self.tmp / f"{name}-{len(self.workers)}.log").open("w")
        extra = ["--notify-file", str(notify)] if notify else []
        p = subprocess.Popen([sys.executable, "-m", "services.cli", "-v", "worker", "--alerts-out", str(alerts),
                              *extra], cwd=REPO, env={**self.env, **_env_vars(env)}, stdout=log,
                             stderr=subprocess.STDOUT)
        self.workers.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
        self.stopped.append(p)
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def stop_cleanly(self, p: subprocess.Popen) -> None:
        """SIGTERM ``p`` and fail, with the processes' logs, unless it exits 0."""
        assert self.stop(p) == 0, self.logs()

    def store(self):
        return self.server.store(self.database)

    def logs(self, tail: int | None = 4000) -> str:
        """The processes' logs, the last ``tail`` characters of each (None: whole)."""
        return "\n".join(f.read_text()[-tail if tail else 0:] for f in sorted(self.tmp.glob("*.log")))


@contextmanager
def running(broker: Tansu, server, tmp: Path) -> Iterator[Setup]:
    """A Setup whose processes are SIGKILLed at the end (those a failed test left running)."""
    s = Setup(broker, server, tmp)
    try:
        yield s
    finally:
        for p in s.workers:
            s.stop(p, signal.SIGKILL)


@pytest.fixture
def setup(broker, clickhouse_server, tmp_path) -> Iterator[Setup]:
    with running(broker, clickhouse_server, tmp_path) as s:
        yield s


def wait_for(predicate: Callable[[], bool], setup: Setup, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        for p in setup.workers:
            if p.poll() is not None and p not in setup.stopped:
                pytest.fail(f"a worker exited with {p.returncode}:\n{setup.logs()}")
        time.sleep(0.5)
    state = {t: stored(setup, t) for t in ("interactions", "incident_events", "dead_letters")}
    alerts = {f.name: lines(f) for f in setup.tmp.glob("*alerts*.jsonl")}
    pytest.fail(f"timed out waiting for {what}: store {state}, alerts {alerts}\n{setup.logs()}")


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def stored(setup: Setup, table: str) -> int:
    try:
        with setup.store() as st:
            st.migrate()
            return st.counts()[table]
    except Exception:  # the worker may not have created the database yet
        return -1


def test_end_to_end_matches_the_embedded_driver(setup, stream):
    produced = setup.produce(stream["path"])
    assert produced["published"] == stream["n"] and produced["keyed"] == stream["n"]
    alerts = setup.tmp / "alerts.jsonl"
    port = free_port()
    w = setup.worker(alerts, kafka__metrics_port=port)
    expected = lines(stream["alerts"])
    wait_for(lambda: stored(setup, "interactions") == stream["n"] and lines(alerts) >= expected
             and stored(setup, "incident_events") == expected, setup, "every interaction and incident event")
    # The worker's Prometheus metrics: its stage counters and what its sequence stage emitted.
    wait_for(lambda: _scrape(port)["faithwatch_interactions_scored_total"] == stream["n"], setup, "the metrics")
    values = _scrape(port)
    assert values["faithwatch_worker_read_total"] == stream["n"]
    assert values["faithwatch_worker_store_retries_total"] == 0  # the store was up throughout
    assert values["faithwatch_interactions_scored_total"] == stream["n"]
    assert sum(v for k, v in values.items() if k.startswith("faithwatch_incident_events_total")) == expected
    setup.stop_cleanly(w)
    # Incident ids, clusters, onsets, sessions: every field of every event, byte for byte.
    assert alerts.read_text() == stream["alerts"].read_text()
    with setup.store() as st:
        rows = st.query("SELECT interaction_id, cluster_id, below_baseline, faithfulness FROM interactions")
        incidents = st.list_incidents()
    assert len(rows) == stream["n"]
    ref = stream["scored"]
    assert {r["interaction_id"]: (r["cluster_id"], r["below_baseline"]) for r in rows} == {
        k: (v["cluster_id"], v["below_baseline"]) for k, v in ref.items()}
    opened = {json.loads(e)["incident_id"] for e in stream["alerts"].read_text().splitlines()}
    assert {i["incident_id"] for i in incidents} == opened


def test_poison_messages_go_to_dead_letters_and_the_stream_goes_on(setup, stream):
    good = stream["path"].read_text().splitlines()[:40]
    poison = ["{not json", json.dumps({"interaction_id": "p-types", "timestamp": "2026-11-02T00:00:01Z",
                                       "query": 42}),
              json.dumps({"interaction_id": "p-missing", "query": "where is my card?"}),
              json.dumps(["a", "list"])]
    path = setup.tmp / "poison.jsonl"
    path.write_text("\n".join(good[:20] + poison + good[20:]) + "\n")
    produced = setup.produce(path)
    assert produced["published"] == 44 and produced["unkeyed"] >= 2
    setup.worker(setup.tmp / "alerts.jsonl")
    # 40 valid records: fewer than the bootstrap size, fitted once the stream is idle.
    wait_for(lambda: stored(setup, "interactions") == 40 and stored(setup, "dead_letters") == 4, setup,
             "40 interactions and 4 dead letters")
    with setup.store() as st:
        dead = st.query("SELECT * FROM dead_letters FINAL")
    assert sorted((d["interaction_id"] or "", d["field"]) for d in dead) == [
        ("", "<record>"), ("", "<record>"), ("p-missing", "timestamp"), ("p-types", "query")]
    reasons = {d["reason"].split(":")[0].split(",")[0] for d in dead}
    assert reasons == {"malformed JSON", "expected a JSON object", "field required", "Input should be a valid string"}
    assert "{not json" in {d["raw"] for d in dead}
    assert all(d["source"].startswith("kafka:") and "offset" in d["position"] for d in dead)


def test_workers_sigkilled_in_a_loop_then_restarted_lose_and_duplicate_nothing(setup, stream, channels):
    """Three workers SIGKILLed one after the other (after a quarter, a half and three quarters of
    the stream are stored), then a fourth runs to the end: as an uninterrupted run."""
    setup.produce(stream["path"])
    alerts = setup.tmp / "alerts.jsonl"
    for k, part in enumerate((4, 2, 4 / 3)):
        w = setup.worker(alerts, f"killed{k}", channels.file)
        wait_for(lambda part=part: stored(setup, "interactions") >= stream["n"] // part, setup, f"1/{part} stored")
        setup.stop(w, signal.SIGKILL)
        if k == 0:
            assert stored(setup, "interactions") < stream["n"], "the worker finished before it was killed"
    second = setup.worker(alerts, "second", channels.file)
    expected = lines(stream["alerts"])
    ids = event_ids(stream["alerts"])
    wait_for(lambda: stored(setup, "interactions") == stream["n"] and lines(alerts) >= expected
             and stored(setup, "incident_events") == expected and set(channels.hook_ids()) >= set(ids), setup,
             "the rest of the stream, delivered")
    setup.stop_cleanly(second)
    assert alerts.read_text() == stream["alerts"].read_text()
    # Every event reached the webhook after the kills; a request in flight at a kill may be sent
    # again (at-least-once over HTTP, docs/alerts.md), nothing else is: the webhook channel sends one
    # request at a time, so at most one repeat per kill.
    got = channels.hook_ids()
    assert set(got) == set(ids) and len(got) - len(set(got)) <= 3, got
    assert "restored checkpoint" in setup.logs(tail=None)
    with setup.store() as st:
        assert st.query("SELECT count() AS n, uniqExact(interaction_id) AS ids FROM interactions")[0] == {
            "n": stream["n"], "ids": stream["n"]}
        counts = st.counts()
        rows = st.query("SELECT interaction_id, cluster_id, below_baseline FROM interactions")
    assert counts["interactions"] == stream["n"] and counts["incident_events"] == expected
    assert {r["interaction_id"]: (r["cluster_id"], r["below_baseline"]) for r in rows} == {
        k: (v["cluster_id"], v["below_baseline"]) for k, v in stream["scored"].items()}


def test_clickhouse_down_while_the_worker_runs_loses_and_duplicates_nothing(setup, stream, channels):
    """The ClickHouse server answers 503 to everything for 10 s while the worker runs the stream:
    its sinks retry (counted in its metrics), nothing is acknowledged before it is written, and
    the store ends with every interaction and incident event once. With a notify file the
    sequence stage queues deliveries in the store's outbox: it retries those too (it stays down
    until it has), and every event is delivered once."""
    all_lines = stream["path"].read_text().splitlines(keepends=True)
    first, second = setup.tmp / "first.jsonl", setup.tmp / "second.jsonl"
    first.write_text("".join(all_lines[:len(all_lines) // 2]))
    second.write_text("".join(all_lines[len(all_lines) // 2:]))
    setup.produce(first)
    alerts, port = setup.tmp / "alerts.jsonl", free_port()
    w = setup.worker(alerts, notify=channels.file, kafka__metrics_port=port)
    wait_for(lambda: stored(setup, "interactions") > 0, setup, "the first interactions stored")
    setup.server.unavailable(True)
    try:
        wait_for(lambda: stored(setup, "interactions") == -1, setup, "the server down")
        setup.produce(second)  # its incident events come while the store is down
        time.sleep(10)  # the worker goes on reading and sequencing; its sinks cannot write
        wait_for(lambda: "sequence: queueing the deliveries" in setup.logs(tail=None), setup,
                 "the sequence stage retrying to queue deliveries")
        retries = _scrape(port)["faithwatch_worker_store_retries_total"]
    finally:
        setup.server.unavailable(False)
    assert retries > 0, setup.logs()
    expected = lines(stream["alerts"])
    wait_for(lambda: stored(setup, "interactions") == stream["n"] and lines(alerts) >= expected
             and stored(setup, "incident_events") == expected
             and set(channels.hook_ids()) >= set(event_ids(stream["alerts"])), setup,
             "every interaction and incident event, each delivered")
    setup.stop_cleanly(w)
    assert alerts.read_text() == stream["alerts"].read_text()
    assert "writing" in setup.logs(tail=None) and "retrying in" in setup.logs(tail=None)
    assert sorted(channels.hook_ids()) == sorted(event_ids(stream["alerts"]))  # each once
    with setup.store() as st:
        assert st.query("SELECT count() AS n, uniqExact(interaction_id) AS ids FROM interactions")[0] == {
            "n": stream["n"], "ids": stream["n"]}
        events = st.query("SELECT incident_id, sequence FROM incident_events FINAL")
    assert sorted(f"{e['incident_id']}:{e['sequence']}" for e in events) == sorted(event_ids(stream["alerts"]))


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln and not ln.startswith("#")}


def test_a_second_worker_joining_changes_nothing_and_each_event_is_delivered_once(setup, stream, channels):
    all_lines = stream["path"].read_text().splitlines(keepends=True)
    first, second = setup.tmp / "first.jsonl", setup.tmp / "second.jsonl"
    first.write_text("".join(all_lines[:len(all_lines) // 2]))
    second.write_text("".join(all_lines[len(all_lines) // 2:]))
    setup.produce(first)
    a_alerts, b_alerts = setup.tmp / "alerts-a.jsonl", setup.tmp / "alerts-b.jsonl"
    setup.worker(a_alerts, "a", channels.file)
    wait_for(lambda: stored(setup, "interactions") >= len(all_lines) // 4, setup, "a quarter of the stream")
    setup.worker(b_alerts, "b", channels.file)
    log_b = setup.tmp / "b-1.log"
    wait_for(lambda: log_b.read_text().count("Worker]: Ready") >= 1, setup, "the second worker in the group")
    setup.produce(second)
    expected = stream["alerts"].read_text().splitlines()

    def done() -> bool:
        emitted = set(a_alerts.read_text().splitlines() if a_alerts.exists() else [])
        emitted |= set(b_alerts.read_text().splitlines() if b_alerts.exists() else [])
        return (stored(setup, "interactions") == stream["n"] and emitted >= set(expected)
                and stored(setup, "incident_events") == len(expected)
                and set(channels.hook_ids()) >= set(event_ids(stream["alerts"])))

    wait_for(done, setup, "the whole stream with two workers", timeout=180)
    for p in list(setup.workers):
        setup.stop_cleanly(p)
    # The partitions were shared: the second worker scored part of the second half.
    assert json.loads(log_b.read_text().strip().splitlines()[-1])["read"] > 0, setup.logs()
    # Whichever worker held the sequence stage emitted each event; together exactly the replay's.
    emitted = a_alerts.read_text().splitlines() + (b_alerts.read_text().splitlines() if b_alerts.exists() else [])
    assert set(emitted) == set(expected)
    # Both workers had the notify file; the one holding the sequence stage delivered: once each.
    assert sorted(channels.hook_ids()) == sorted(event_ids(stream["alerts"]))
    # Alertmanager got the incident while open, and its end.
    am = [r.json()[0] for r in channels.am.requests]
    assert am and am[-1]["labels"]["incident_id"] == json.loads(expected[-1])["incident_id"] and "endsAt" in am[-1]
    assert all(r.path == "/api/v2/alerts" for r in channels.am.requests)
    with setup.store() as st:
        rows = st.query("SELECT interaction_id, cluster_id, below_baseline FROM interactions")
    assert {r["interaction_id"]: (r["cluster_id"], r["below_baseline"]) for r in rows} == {
        k: (v["cluster_id"], v["below_baseline"]) for k, v in stream["scored"].items()}


def test_a_worker_replaying_the_stream_pages_nobody_again_and_alertmanager_stays_firing(setup, stream, channels):
    """A stream that ends with its incident open: the worker delivers each event and keeps re-sending
    the open incident to Alertmanager. A second worker in a new consumer group, without the first
    one's checkpoint, replays the whole stream and emits every event again: the outbox sends none
    of them again, and that worker takes over the Alertmanager re-sends."""
    all_lines = stream["path"].read_text().splitlines(keepends=True)
    prefix = setup.tmp / "prefix.jsonl"
    prefix.write_text("".join(all_lines[:len(all_lines) * 3 // 5]))  # stops before the incident resolves
    n = len(all_lines) * 3 // 5
    setup.produce(prefix)
    first_alerts, second_alerts = setup.tmp / "alerts-first.jsonl", setup.tmp / "alerts-second.jsonl"
    first = setup.worker(first_alerts, "first", channels.file)
    wait_for(lambda: stored(setup, "interactions") == n and lines(first_alerts) >= 2
             and set(channels.hook_ids()) >= set(event_ids(first_alerts)), setup, "the prefix, delivered")
    events = [json.loads(e) for e in first_alerts.read_text().splitlines()]
    assert events[-1]["status"] == "open"
    # Every event went to Alertmanager once, then the open incident is re-sent every second.
    channels.am.wait_for(len(events) + 2, timeout=30)
    setup.stop_cleanly(first)
    delivered = channels.hook_ids()
    assert sorted(delivered) == sorted(event_ids(first_alerts))
    resent = len(channels.am.requests)
    env = setup.env
    again = setup.worker(second_alerts, "again", channels.file, kafka__app_id=env["FAITHWATCH_KAFKA__APP_ID"] + "-2",
                         kafka__prepared_topic=env["FAITHWATCH_KAFKA__PREPARED_TOPIC"] + "-2")
    wait_for(lambda: lines(second_alerts) >= len(events), setup, "the replaying worker's events")
    channels.am.wait_for(resent + 2, timeout=30)  # the new owner keeps the alert firing
    setup.stop_cleanly(again)
    assert second_alerts.read_text() == first_alerts.read_text()
    assert channels.hook_ids() == delivered  # nobody paged again
    counts = json.loads((setup.tmp / "again-1.log").read_text().strip().splitlines()[-1])
    assert counts["deliveries_queued"] == 0 and counts["incident_events"] == len(events)
    last = channels.am.requests[-1].json()[0]
    assert last["labels"]["incident_id"] == events[-1]["incident_id"] and "endsAt" not in last


def test_api_in_kafka_mode_publishes_reads_what_the_workers_stored_and_gates_as_embedded(setup, stream):
    """POST /v1/interactions on `faithwatch serve` with api.ingest=kafka -> the interactions topic ->
    a worker -> the shared store -> GET /v1/incidents on the same server: replay's incidents.

    POST /v1/gate on the same server: 503 until the sequence stage has published its cluster model,
    then the embedded gate's decisions for the same records (cluster, family, category, threshold,
    decision, reasons), with on_incident while the incident is open (the stream's head; incidents
    from the store) and without once the rest of the stream has resolved it."""
    import httpx

    from services.embedded import replay
    from services.flow import DeadLetterFile
    from services.settings import load_settings
    from services.wiring import build_pipeline

    events = [json.loads(e) for e in stream["alerts"].read_text().splitlines()]
    assert events[-1]["event"] == "resolved"
    cut = events[-2]["event_at"]  # the stream up to here ends with the incident open
    records = stream["path"].read_text().splitlines()
    head = [line for line in records if json.loads(line)["timestamp"] <= cut]
    tail = [line for line in records if json.loads(line)["timestamp"] > cut]
    requests = _gate_requests(stream, records, set(events[-2]["clusters"]))

    notify = setup.tmp / "notify.yaml"  # checked, not used: the workers deliver
    notify.write_text("channels:\n  am: {type: alertmanager, url: 'http://127.0.0.1:9'}\nroutes:\n  - channels: [am]\n")
    api, url, headers = _serve_kafka_api(setup, notify_file=notify)
    # The embedded reference (the gate of `faithwatch serve`), on the same two parts of the stream.
    pipeline = build_pipeline(load_settings(embedding={"backend": "hashing"}, data_dir=setup.tmp / "embedded"))
    for part, name in ((head, "head"), (tail, "tail")):
        (setup.tmp / f"{name}.jsonl").write_text("\n".join(part) + "\n")
    replay(pipeline, setup.tmp / "head.jsonl", store=None, dead_letters=DeadLetterFile(setup.tmp / "dl.jsonl"))
    early = httpx.post(f"{url}/v1/gate", json=requests[0], headers=headers, timeout=30)
    assert early.status_code == 503, early.text
    assert "no cluster model has arrived yet" in early.json()["detail"], early.text

    def post(part: list[str]) -> int:
        accepted = 0
        for k in range(0, len(part), 300):
            res = httpx.post(f"{url}/v1/interactions?wait=true", timeout=60, content="\n".join(part[k:k + 300]),
                             headers={**headers, "Content-Type": "application/x-ndjson"})
            assert res.status_code == 202, res.text
            body = res.json()
            assert body["processed"] is True and body["pipeline"] is None and body["invalid"] == 0
            accepted += body["accepted"]
        return accepted

    assert post(head) == len(head)
    alerts = setup.tmp / "alerts.jsonl"
    setup.worker(alerts)
    wait_for(lambda: stored(setup, "interactions") == len(head), setup, "the worker to store the head")
    with setup.store() as st:
        expected = _embedded_gate(pipeline, st, requests)
    opened = [d for d in expected if d["incident_id"] is not None]
    assert opened and all(d["decision"] == "defer" for d in opened if d["category"] == "pricing"), expected
    assert {d["decision"] for d in expected} == {"answer", "defer"}
    _wait_for_gate(setup, url, headers, requests, expected)

    assert post(tail) == len(tail)
    replay(pipeline, setup.tmp / "tail.jsonl", store=None, dead_letters=DeadLetterFile(setup.tmp / "dl.jsonl"))
    expected = lines(stream["alerts"])
    wait_for(lambda: stored(setup, "interactions") == stream["n"] and stored(setup, "incident_events") == expected,
             setup, "the worker to store what the API published")
    assert alerts.read_text() == stream["alerts"].read_text()
    with setup.store() as st:
        resolved = _embedded_gate(pipeline, st, requests)
    assert all(d["incident_id"] is None for d in resolved)  # the rollback trigger ended with the incident
    _wait_for_gate(setup, url, headers, requests, resolved)
    got = httpx.get(f"{url}/v1/incidents", headers=headers, timeout=30)
    assert got.status_code == 200, got.text
    opened_ids = {json.loads(e)["incident_id"] for e in stream["alerts"].read_text().splitlines()}
    assert {i["incident_id"] for i in got.json()["items"]} == opened_ids
    flush = httpx.post(f"{url}/v1/flush", headers=headers, timeout=30)
    assert flush.status_code == 200 and flush.json() == {"processed": True, "pipeline": None}
    assert setup.stop(api) == 0, (setup.tmp / "api.log").read_text()[-3000:]
    assert "Kafka mode" in (setup.tmp / "api.log").read_text()
    assert "alerts are delivered by the stream workers" in (setup.tmp / "api.log").read_text()


def _serve_kafka_api(setup: Setup, **settings) -> tuple[subprocess.Popen, str, dict]:
    """``faithwatch serve`` with api.ingest=kafka (its 202 means the broker acknowledged the
    records): the process, its URL and the headers with its token."""
    port, token = free_port(), "k-t0ken"
    env = {**setup.env, "FAITHWATCH_API__INGEST": "kafka", "FAITHWATCH_API__TOKENS": json.dumps([token]),
           **_env_vars(settings)}
    log = (setup.tmp / "api.log").open("w")
    api = subprocess.Popen([sys.executable, "-m", "services.cli", "serve", "--port", str(port)], cwd=REPO, env=env,
                           stdout=log, stderr=subprocess.STDOUT)
    setup.workers.append(api)  # stopped (SIGKILL) by the fixture if the test fails
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _healthy(url), setup, "the API")
    return api, url, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def durable() -> Iterator[Tansu]:
    """tansu keeping its topics in S3 (moto's server), so that a restarted broker still has them."""
    with S3Server.start() as s3, Tansu.start(storage=s3.storage_url, env=s3.env) as b:
        yield b


def test_a_broker_restarted_mid_stream_loses_and_duplicates_nothing(durable, clickhouse_server, stream, tmp_path):
    """Records posted in batches of 50 to the API in Kafka mode while a worker runs; once half the
    stream is acknowledged and a quarter stored, the broker is SIGKILLed, kept down for 5 s and
    started again on the same port and storage (S3), while the posting goes on. The API answers 503
    for what the broker did not acknowledge within 2 s (counted in faithwatch_ingest_errors_total),
    and the client sends that batch again until it gets a 202: at the end the store holds every
    acknowledged record once, and every incident event the worker emitted once."""
    with running(durable, clickhouse_server, tmp_path) as setup:
        _broker_restart(setup, durable, stream)


def _broker_restart(setup: Setup, broker: Tansu, stream: dict) -> None:
    import httpx

    _, url, headers = _serve_kafka_api(setup, kafka__publish_timeout_seconds=2)
    alerts = setup.tmp / "alerts.jsonl"
    setup.worker(alerts)
    records = stream["path"].read_text().splitlines()
    acknowledged, refused, restarted = 0, 0, None
    for k in range(0, len(records), 50):
        batch = "\n".join(records[k:k + 50])
        while True:
            try:
                res = httpx.post(f"{url}/v1/interactions", content=batch, timeout=60,
                                 headers={**headers, "Content-Type": "application/x-ndjson"})
            except httpx.TransportError:
                res = None
            if res is not None and res.status_code == 202:
                acknowledged += res.json()["accepted"]
                break
            assert res is None or res.status_code == 503, res.text
            refused += 1
            time.sleep(0.2)
        if not restarted and k + 50 >= len(records) // 2:  # half acknowledged: wait for the worker, then kill
            wait_for(lambda: stored(setup, "interactions") >= stream["n"] // 4, setup, "a quarter stored")
            restarted = threading.Thread(target=broker.restart, args=(signal.SIGKILL, 5))
            restarted.start()  # the posting goes on while the broker is down
    assert restarted and acknowledged == stream["n"]
    restarted.join()
    # The pauses (the wait above, the broker down) let the worker release its reorder buffer
    # early, so some records arrive late and its incident events need not be replay's: the check
    # is that each event it emitted is stored once, and each acknowledged record.
    wait_for(lambda: stored(setup, "interactions") == stream["n"] and lines(alerts) > 0
             and stored(setup, "incident_events") == lines(alerts), setup, "every interaction and incident event",
             timeout=180)
    api_metrics = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    [errors] = [float(ln.split()[1]) for ln in api_metrics.splitlines()
                if ln.startswith("faithwatch_ingest_errors_total")]
    for p in list(setup.workers):
        setup.stop_cleanly(p)
    assert refused > 0 and errors == refused, (refused, errors)
    with setup.store() as st:
        assert st.query("SELECT count() AS n, uniqExact(interaction_id) AS ids FROM interactions")[0] == {
            "n": stream["n"], "ids": stream["n"]}
        stored_ids = {r["interaction_id"] for r in st.query("SELECT interaction_id FROM interactions")}
        events = st.query("SELECT incident_id, sequence FROM incident_events FINAL")
    assert stored_ids == set(stream["scored"])
    assert sorted(f"{e['incident_id']}:{e['sequence']}" for e in events) == sorted(event_ids(alerts))
    assert "publishing 50 records" in (setup.tmp / "api.log").read_text()  # the 503s, logged


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _gate_requests(stream: dict, lines_: list[str], incident_clusters: set[str]) -> list[dict]:
    """Gate calls on queries of the stream: some in the incident's clusters, the rest spread out;
    confidences around the gates, some irreversible."""
    records = [json.loads(line) for line in lines_]
    hit = [r for r in records if stream["scored"][r["interaction_id"]]["cluster_id"] in incident_clusters][:8]
    chosen = hit + records[::60]
    return [{"query": r["query"], "confidence": (0.5, 0.84, 0.97)[k % 3],
             **({"action": {"reversible": False}} if k % 4 == 3 else {})} for k, r in enumerate(chosen)]


def _embedded_gate(pipeline, store, requests: list[dict]) -> list[dict]:
    """What the embedded gate (`faithwatch serve`'s GateService on the pipeline's model) answers."""
    from services.gates import GateRequest, GateService
    from services.metrics import Metrics

    model = pipeline.cluster_model(1)
    service = GateService(pipeline.embedder, pipeline.policy, lambda: model, store, Metrics(), cache_size=0)
    return service.decide([GateRequest(r["query"], r["confidence"], r.get("action", {}).get("reversible", True))
                           for r in requests])


def _wait_for_gate(setup: Setup, url: str, headers: dict, requests: list[dict], expected: list[dict]) -> None:
    """Until the Kafka-mode API's batch answer equals ``expected`` (the worker publishes its model at
    its next checkpoint, the API re-reads the open incidents every 2 s); then the single form too."""
    import httpx

    last: list = []

    def same() -> bool:
        res = httpx.post(f"{url}/v1/gate", json=requests, headers=headers, timeout=30)
        last[:] = [res.status_code, res.json()]
        return res.status_code == 200 and res.json() == expected

    try:
        wait_for(same, setup, "the Kafka-mode gate to answer as the embedded gate", timeout=60)
    except BaseException:
        diff = [(e, g) for e, g in zip(expected, last[1], strict=False) if e != g] if last[0] == 200 else last
        print("gate differences (expected, got):", json.dumps(diff[:5], indent=1))
        raise
    single = httpx.post(f"{url}/v1/gate", json=requests[0], headers=headers, timeout=30)
    assert single.status_code == 200 and single.json() == expected[0]


def test_a_worker_rebuilds_the_rollups_a_crash_left_short_before_it_writes(setup):
    """On a ClickHouse server no open marker tells that a writer died mid-insert (the interactions
    stored, their rollup rows not): every worker start checks and rebuilds the drifting days."""
    from services.store.consistency import rollup_drift
    from tests.services.test_store_check import scored, tiers

    with setup.store() as st:
        st.migrate()
        st.insert_interactions([scored(k, "pricing" if k % 2 else "policy") for k in range(600)])
        st.command("ALTER TABLE rollup_hours DELETE WHERE cluster_id = 'pricing' AND toDayOfMonth(bucket) = 3 "
                   "SETTINGS mutations_sync = 2")
        st.command("ALTER TABLE rollup_days DELETE WHERE cluster_id = 'pricing' AND toDayOfMonth(bucket) = 3 "
                   "SETTINGS mutations_sync = 2")
        assert [(r["cluster_id"], r["day"].day) for r in rollup_drift(st)] == [("pricing", 3)]
    w = setup.worker(setup.tmp / "alerts.jsonl")
    log = setup.tmp / "w-0.log"
    wait_for(lambda: "Worker]: Ready" in log.read_text(), setup, "the worker")
    assert "rollups of 1 cluster-days did not match" in log.read_text()
    setup.stop_cleanly(w)
    with setup.store() as st:
        assert rollup_drift(st) == []
        assert tiers(st) == dict.fromkeys(("rollup_minutes", "rollup_hours", "rollup_days"), 600)
