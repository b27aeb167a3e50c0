"""Issue #12, item 1: a 202 is durable. A real ``faithwatch serve`` is SIGKILLed right after it
acknowledged records; restarted on the same data dir, it stores every acknowledged one exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from opentelemetry import trace

from services.store.chdb_store import ChdbStore
from services.testing import wait_until_serving
from tests.services.test_cli_serve import REPO, TOKEN, free_port, records, stop

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def start(data: Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from services.cli import main; main()", "serve", "--port",
                             str(port), "--data-dir", str(data)], cwd=REPO,
                            env={**os.environ, "FAITHWATCH_EMBEDDING__BACKEND": "hashing", "PYTHONUNBUFFERED": "1",
                                 "FAITHWATCH_API__TOKENS": json.dumps([TOKEN]), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_until_serving(proc, url)
    return proc, url


def crash_then_recover(data: Path, n: int, per_request: int, **env: str) -> tuple[int, str, dict]:
    """Post ``n`` records, SIGKILL the server after the last 202, restart it, flush, stop it;
    (records acknowledged, the second run's stderr, the store's counts by interaction_id)."""
    body = records(n)

    def post(url: str) -> int:
        acknowledged = 0
        for k in range(0, n, per_request):
            res = httpx.post(f"{url}/v1/interactions", json=body[k:k + per_request], headers=HEADERS, timeout=60)
            assert res.status_code == 202, res.text
            acknowledged += res.json()["accepted"]
        return acknowledged

    return crash_after(data, post, **env)


def crash_after(data: Path, post: Callable[[str], int], **env: str) -> tuple[int, str, dict]:
    """``post`` to a server, SIGKILL it after the last acknowledgement, restart it, flush, stop it;
    (what ``post`` returned, the second run's stderr, the store's counts by interaction_id)."""
    proc, url = start(data, **env)
    try:
        acknowledged = post(url)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    proc, url = start(data, **env)
    try:
        res = httpx.post(f"{url}/v1/flush", headers=HEADERS, timeout=120)
        assert res.status_code == 200 and res.json()["processed"] is True, res.text
    finally:
        code, err = stop(proc)
    assert code == 0, err[-2000:]
    with ChdbStore(data / "chdb") as store:
        # No FINAL: a row stored twice would count twice here.
        [counts] = store.query("SELECT count() AS rows, uniqExact(interaction_id) AS ids FROM interactions")
    return acknowledged, err, counts


def test_records_waiting_for_the_bootstrap_survive_a_sigkill(tmp_path):
    """500 records, fewer than the bootstrap size (1,000): before the spool they lived only in
    the worker's memory and all 500 were lost."""
    acknowledged, err, counts = crash_then_recover(tmp_path / "data", 500, 100,
                                                   FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE="1000")
    assert acknowledged == 500
    # (with api.spool=false this fails: nothing is replayed and the store holds no row)
    assert "replaying 500 interactions" in err
    assert counts == {"rows": 500, "ids": 500}
    assert not list((tmp_path / "data" / "spool").glob("*.jsonl"))  # a clean stop leaves nothing to replay


def test_records_being_processed_and_checkpointed_survive_a_sigkill_exactly_once(tmp_path):
    """1,200 records past a bootstrap of 200, checkpoints every 0.2 s, spool segments of about 60
    records: when the kill comes some are
    stored and checkpointed (their segments trimmed), some stored but not checkpointed, some
    queued. Replayed, the stored ones are dropped (the restored pipeline's seen ids, or the
    store), the rest go in: every acknowledged record once."""
    data = tmp_path / "data"
    acknowledged, err, counts = crash_then_recover(data, 1200, 100, FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE="200",
                                                   FAITHWATCH_API__CHECKPOINT_SECONDS="0.2",
                                                   FAITHWATCH_API__SPOOL_SEGMENT_BYTES="20000")
    assert acknowledged == 1200
    assert "replaying" in err
    assert counts == {"rows": 1200, "ids": 1200}


def test_otlp_spans_held_for_their_trace_survive_a_sigkill(tmp_path):
    """40 traces, each a retrieval span and a GenAI chat span exported in two requests (all
    retrievals, then all chats), answered 200 while ``api.otlp.hold_seconds`` (600 s) holds them
    in memory for the rest of their trace. Before the OTLP spool a SIGKILL then lost all 40; now
    the restart reads both requests back into the hold and the flush releases 40 interactions,
    each joined with its retrieval."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("faithwatch-tests")
    t0 = 1_793_613_600_000_000_000  # 2026-11-02T10:00:00Z in ns
    retrievals, chats, ids = [], [], {}
    for k in range(40):
        root = tracer.start_span("POST /ask", start_time=t0 + k * 10**9)
        ctx = trace.set_span_in_context(root)
        docs = json.dumps([{"id": f"doc-{k}", "score": 0.9, "content": f"Card {k} ships in {k % 5 + 2} days."}])
        r = tracer.start_span("retrieval kb", context=ctx, start_time=t0 + k * 10**9,
                              attributes={"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": docs})
        r.end(end_time=t0 + k * 10**9 + 1)
        messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": f"when does card {k} ship?"}]}])
        answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": f"In {k % 5 + 2} days."}]}])
        c = tracer.start_span("chat m", context=ctx, start_time=t0 + k * 10**9 + 2, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "m", "gen_ai.input.messages": messages,
            "gen_ai.output.messages": answer})
        c.end(end_time=t0 + k * 10**9 + 3)
        root.end(end_time=t0 + k * 10**9 + 4)
        retrievals.append(r)
        chats.append(c)
        ids[f"{c.get_span_context().trace_id:032x}-{c.get_span_context().span_id:016x}"] = f"doc-{k}"
    finished = {s.context.span_id: s for s in memory.get_finished_spans()}

    def post(url: str) -> int:
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers=HEADERS, timeout=30)
        for spans in (retrievals, chats):
            assert exporter.export([finished[s.get_span_context().span_id] for s in spans]) \
                == SpanExportResult.SUCCESS
        return len(chats)

    data = tmp_path / "data"
    acknowledged, err, counts = crash_after(data, post, FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE="20",
                                            FAITHWATCH_API__OTLP__HOLD_SECONDS="600")
    provider.shutdown()
    assert acknowledged == 40
    # (with api.spool=false this fails: the held spans were only in memory, the store holds no row)
    assert "2 requests accepted before the last stop read back" in err, err[-2000:]
    assert counts == {"rows": 40, "ids": 40}
    with ChdbStore(data / "chdb") as store:
        rows = store.query("SELECT interaction_id, context_doc_ids FROM interactions")
    assert {r["interaction_id"]: r["context_doc_ids"] for r in rows} == {i: [d] for i, d in ids.items()}
    assert not list((data / "otlp-spool").glob("*.jsonl"))  # released and queued at the clean stop: trimmed
