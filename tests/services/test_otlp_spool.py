"""The OTLP spool (services/otlp.py with services/spool.py): an accepted ``POST /v1/traces`` request
is on disk before its answer, stays there while any trace it fed is held or waits for the ingest
queue, and is read back into the hold at the next start. In process, with the real receiver,
ingestor and chDB store; the crash itself: tests/services/test_spool_crash.py."""

from __future__ import annotations

import json

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.ingest import EmbeddedIngestor
from services.metrics import Metrics
from services.otlp import PROTOBUF, OtlpError, OtlpReceiver
from services.settings import Settings
from services.spool import Spool
from services.wiring import build_pipeline
from tests.services.test_spool import Clock

T0 = 1_793_613_600_000_000_000  # 2026-11-02T10:00:00Z in ns


@pytest.fixture
def spans():
    """``make(k)``: trace k's retrieval and chat spans (finished, SDK objects)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("t")

    def make(k: int):
        t = T0 + k * 10**9
        r = tracer.start_span("retrieval", start_time=t, attributes={
            "gen_ai.operation.name": "retrieval",
            "gen_ai.retrieval.documents": json.dumps([{"id": f"doc-{k}", "content": "Cards ship in 3 days."}])})
        r.end(end_time=t + 1)
        c = tracer.start_span("chat", context=trace.set_span_in_context(r), start_time=t + 2, attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.input.messages": json.dumps([{"role": "user", "parts": [{"type": "text",
                                                                            "content": f"card {k} ships when?"}]}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "parts": [{"type": "text",
                                                                                  "content": "In 3 days."}]}])})
        c.end(end_time=t + 3)
        by_id = {s.context.span_id: s for s in memory.get_finished_spans()}
        return by_id[r.get_span_context().span_id], by_id[c.get_span_context().span_id]

    yield make
    provider.shutdown()


def body(*spans) -> bytes:
    return encode_spans(list(spans)).SerializeToString()


def receiver(tmp_path, store, ingestor, clock, **api) -> tuple[OtlpReceiver, Spool]:
    settings = Settings(data_dir=tmp_path, api={"otlp": {"hold_seconds": 10}, **api})
    spool = Spool(tmp_path / "otlp-spool", max_bytes=settings.api.spool_max_bytes, segment_bytes=1)
    return OtlpReceiver(settings.api, store, ingestor, Metrics(), monotonic=clock, spool=spool), spool


def ingestor(tmp_path, store, **kw) -> EmbeddedIngestor:
    settings = Settings(data_dir=tmp_path, embedding={"backend": "hashing"}, cluster={"bootstrap_size": 10})
    return EmbeddedIngestor(build_pipeline(settings), store, batch_size=8, cluster_refresh_seconds=0, **kw)


def test_a_request_stays_on_disk_until_its_traces_are_queued_and_a_restart_holds_them_again(tmp_path, chdb, spans):
    (r0, c0), (r1, c1) = spans(0), spans(1)
    clock = Clock()
    with ingestor(tmp_path, chdb) as ing:
        otlp, spool = receiver(tmp_path, chdb, ing, clock)
        otlp.receive(body(r0, r1), PROTOBUF, "", "req-a")  # retrievals: held for their chats
        otlp.receive(body(c0), PROTOBUF, "", "req-b")
        assert len(spool.segments) == 2 and len(otlp.hold) == 2
        clock.now = 11
        otlp.tick()  # both traces released: trace 0 is queued; trace 1 has no answer, nothing to queue
        assert spool.segments == []
        otlp.receive(body(c1), PROTOBUF, "", "req-c")  # trace 1 again, held
        assert len(spool.segments) == 1
        spool.close()  # the process "dies" here: the chat of trace 1 was answered, held in memory only
        with (spool.segments[0]).open("ab") as fh:
            fh.write(b'{"request": "req-d", "ty')  # and a request torn mid-write (never answered)

        # The next start reads the request back into the hold; the torn line is skipped.
        otlp2, spool2 = receiver(tmp_path, chdb, ing, Clock())
        assert otlp2.recover() == 1 and len(otlp2.hold) == 1 and spool2.segments
        otlp2.release_all()
        assert spool2.segments == []
        ing.wait(ing.request_flush(), 30)
    got = chdb.query("SELECT interaction_id, context_doc_ids FROM interactions ORDER BY timestamp")
    ids = [f"{c.context.trace_id:032x}-{c.context.span_id:016x}" for c in (c0, c1)]
    # trace 1's chat came alone after its retrieval was released: it has no context
    assert [(g["interaction_id"], g["context_doc_ids"]) for g in got] == [(ids[0], ["doc-0"]), (ids[1], [])]


def test_traces_waiting_for_a_full_ingest_queue_keep_their_requests_on_disk(tmp_path, chdb, spans):
    (r0, c0), (r1, c1) = spans(0), spans(1)
    clock = Clock()
    ing = ingestor(tmp_path, chdb, max_queue=1)  # not started: nothing drains the queue yet
    otlp, spool = receiver(tmp_path, chdb, ing, clock)
    otlp.receive(body(r0, c0), PROTOBUF, "", "req-a")
    otlp.receive(body(r1, c1), PROTOBUF, "", "req-b")
    clock.now = 11
    otlp.tick()  # two interactions, room for one: both wait in memory
    assert ing.depth == 0 and len(spool.segments) == 2
    with pytest.raises(OtlpError) as refused:  # and new requests are refused (503) meanwhile
        otlp.receive(body(r0), PROTOBUF, "", "req-c")
    assert refused.value.status_code == 503 and len(spool.segments) == 2
    ing.max_queue = 10
    otlp.tick()  # room now: queued, the requests are trimmed
    assert ing.depth == 2 and spool.segments == []
    ing.start()
    ing.close()
    assert chdb.counts()["interactions"] == 2


def test_a_full_spool_refuses_the_request_and_holds_nothing(tmp_path, chdb, spans):
    r0, c0 = spans(0)
    with ingestor(tmp_path, chdb) as ing:
        otlp, spool = receiver(tmp_path, chdb, ing, Clock())
        spool.max_bytes = 10  # smaller than any request
        with pytest.raises(OtlpError) as refused:
            otlp.receive(body(r0, c0), PROTOBUF, "", "req-a")
    assert refused.value.status_code == 503 and "spool_max_bytes" in refused.value.detail
    assert len(otlp.hold) == 0 and spool.segments == []
