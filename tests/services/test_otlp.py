"""``POST /v1/traces`` with the real OpenTelemetry SDK and its OTLP/HTTP exporters (protobuf and JSON).

Spans are recorded with the SDK (explicit start and end times, so every expected value is exact),
then exported by the real exporters, in the groups a test chooses, to the API served by uvicorn on
127.0.0.1 (one server for the module; the hashing embedder). ``POST /v1/flush`` releases held
traces and scores what waits, so no test depends on the hold timer; rows are read from the store.
"""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as JsonExporter
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as ProtobufExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.ingest import EmbeddedIngestor
from services.metrics import Metrics
from services.settings import load_settings
from services.testing.live_api import live_api
from services.wiring import build_pipeline

TOKEN = "otlp-t0ken"
T0 = 1_793_613_600_000_000_000  # 2026-11-02T10:00:00Z in ns


def ns(seconds: float) -> int:
    return T0 + int(seconds * 1e9)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("otlp")
    settings = load_settings(data_dir=data, embedding={"backend": "hashing"}, cluster={"bootstrap_size": 20},
                             api={"tokens": [TOKEN], "otlp": {"hold_seconds": 600}})
    with live_api(settings, batch_size=32, cluster_refresh_seconds=0) as api:
        yield api.url, api.store


@pytest.fixture(scope="module")
def sdk():
    """A tracer whose finished spans are kept in memory, to be exported as each test chooses."""
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider.get_tracer("faithwatch-tests"), memory
    provider.shutdown()


def record(tracer, name: str, attributes: dict, start: float, end: float, parent=None, events=()):
    context = trace.set_span_in_context(parent) if parent is not None else None
    span = tracer.start_span(name, context=context, attributes=attributes, start_time=ns(start))
    for event_name, event_attributes in events:
        span.add_event(event_name, event_attributes, timestamp=ns(end))
    span.end(end_time=ns(end))
    return span


def interaction_id(span) -> str:
    c = span.get_span_context()
    return f"{c.trace_id:032x}-{c.span_id:016x}"


def flush(url: str) -> None:
    r = httpx.post(f"{url}/v1/flush", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert r.status_code == 200 and r.json()["processed"], r.text


def row(store, iid: str) -> dict:
    rows = store.query("SELECT interaction_id, session_id, customer_id, timestamp, query, response, model, "
                       "confidence, faithfulness, faithfulness_source, context_doc_ids, context_doc_versions, "
                       "context_stale, metadata FROM interactions FINAL WHERE interaction_id = {iid:String}",
                       {"iid": iid})
    assert len(rows) == 1, f"{iid}: {rows}"
    return rows[0]


def protobuf_exporter(url: str, token: str = TOKEN, gzip_body: bool = False) -> ProtobufExporter:
    return ProtobufExporter(endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {token}"},
                            compression=Compression.Gzip if gzip_body else Compression.NoCompression, timeout=30)


def test_genai_chat_with_its_retrieval_exported_in_another_gzip_request(server, sdk):
    url, store = server
    tracer, memory = sdk
    memory.clear()
    root = tracer.start_span("POST /ask", start_time=ns(0))
    docs = [{"id": "pricing-table", "score": 0.93, "content": "The transfer fee is 2% of the amount.",
             "metadata": {"version": "v3", "indexed_at": "2026-10-01T00:00:00Z", "updated_at": "2026-10-15T00:00:00Z"}},
            {"id": "faq", "score": 0.41}]  # no content: a context (text "") as the answer carries faithfulness
    retrieval = record(tracer, "retrieval pricing-kb", {"gen_ai.operation.name": "retrieval",
                                                        "gen_ai.data_source.id": "pricing-kb",
                                                        "gen_ai.retrieval.documents": json.dumps(docs)},
                       1, 2, parent=root)
    messages = [{"role": "system", "parts": [{"type": "text", "content": "Answer from the documents."}]},
                {"role": "user", "parts": [{"type": "text", "content": "what is the fee for a transfer?"}]},
                {"role": "assistant", "parts": [{"type": "text", "content": "Which currency?"}]},
                {"role": "user", "parts": [{"type": "text", "content": "what is the transfer fee in euros?"}]}]
    chat = record(tracer, "chat gpt-4o", {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.conversation.id": "conv-42", "user.id": "cust-7",
        "faithwatch.confidence": 0.92, "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                               "parts": [{"type": "text", "content": "The fee is 3%."}]}])},
        2, 3.5, parent=root, events=[("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "Groundedness",
                                                                   "gen_ai.evaluation.score.value": 0.25}),
                                     ("gen_ai.evaluation.result", {"gen_ai.evaluation.name": "Relevance",
                                                                   "gen_ai.evaluation.score.value": 0.9})])
    root.end(end_time=ns(4))
    exporter = protobuf_exporter(url, gzip_body=True)
    # The retrieval first, alone; the LLM span in a later request; the root (not an LLM span) last.
    for span in (retrieval, chat, root):
        assert exporter.export([s for s in memory.get_finished_spans() if s.context == span.get_span_context()]) \
            == SpanExportResult.SUCCESS
    flush(url)
    got = row(store, interaction_id(chat))
    assert got["session_id"] == "conv-42" and got["customer_id"] == "cust-7"
    assert got["timestamp"] == datetime(2026, 11, 2, 10, 0, 3, 500000, tzinfo=UTC)
    assert got["query"] == "what is the transfer fee in euros?" and got["response"] == "The fee is 3%."
    assert got["model"] == "gpt-4o-2024-08-06" and got["confidence"] == 0.92
    assert (got["faithfulness"], got["faithfulness_source"]) == (0.25, "producer")
    assert got["context_doc_ids"] == ["pricing-table", "faq"] and got["context_doc_versions"] == ["v3", None]
    assert got["context_stale"] == [True, False]
    meta = json.loads(got["metadata"])["otlp"]
    assert meta["convention"] == "genai" and meta["service"] == "support-bot"
    c = chat.get_span_context()
    assert (meta["trace_id"], meta["span_id"]) == (f"{c.trace_id:032x}", f"{c.span_id:016x}")


def test_openinference_llm_and_retriever_over_otlp_json(server, sdk):
    url, store = server
    tracer, memory = sdk
    memory.clear()
    root = tracer.start_span("chain", attributes={"openinference.span.kind": "CHAIN"}, start_time=ns(10))
    retriever = record(tracer, "retrieve", {
        "openinference.span.kind": "RETRIEVER", "input.value": "how do I reset my card pin",
        "retrieval.documents.0.document.id": "cards-faq", "retrieval.documents.0.document.score": 0.8,
        "retrieval.documents.0.document.content": "Reset the PIN in the app under Card settings.",
        "retrieval.documents.0.document.metadata": json.dumps({"version": "v7"}),
        "retrieval.documents.1.document.id": "security", "retrieval.documents.1.document.score": 0.5,
        "retrieval.documents.1.document.content": "Never share your PIN."}, 11, 12, parent=root)
    llm = record(tracer, "ChatOpenAI", {
        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini", "session.id": "sess-9",
        "user.id": "cust-3", "faithwatch.confidence": 0.6,
        "llm.input_messages.0.message.role": "system", "llm.input_messages.0.message.content": "Be brief.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": "how do I reset my card pin",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "Open the app, then Card settings, then Reset PIN.",
        "input.value": json.dumps({"messages": []}), "input.mime_type": "application/json"}, 12, 13, parent=root)
    root.end(end_time=ns(14))
    exporter = JsonExporter(endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert exporter.export([s for s in memory.get_finished_spans() if s.name == "ChatOpenAI"]) \
        == SpanExportResult.SUCCESS
    assert exporter.export([s for s in memory.get_finished_spans() if s.name != "ChatOpenAI"]) \
        == SpanExportResult.SUCCESS
    flush(url)
    got = row(store, interaction_id(llm))  # the ids came as hex in OTLP/JSON
    assert (got["session_id"], got["customer_id"], got["model"]) == ("sess-9", "cust-3", "gpt-4o-mini")
    assert got["query"] == "how do I reset my card pin"
    assert got["response"] == "Open the app, then Card settings, then Reset PIN."
    assert got["confidence"] == 0.6 and got["faithfulness_source"] != "producer"
    assert got["context_doc_ids"] == ["cards-faq", "security"] and got["context_doc_versions"] == ["v7", None]
    assert got["timestamp"] == datetime(2026, 11, 2, 10, 0, 13, tzinfo=UTC)
    assert retriever.get_span_context().trace_id == llm.get_span_context().trace_id


def test_a_wrong_token_is_refused(server, sdk):
    url, store = server
    tracer, memory = sdk
    memory.clear()
    span = record(tracer, "chat", {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": "refused?"}]}])}, 20, 21)
    assert protobuf_exporter(url, token="not-the-token").export(memory.get_finished_spans()) \
        == SpanExportResult.FAILURE
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        r = httpx.post(f"{url}/v1/traces", content=body, headers={"Content-Type": "application/x-protobuf", **headers})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    flush(url)
    assert store.query("SELECT count() AS n FROM interactions WHERE interaction_id = {i:String}",
                       {"i": interaction_id(span)}) == [{"n": 0}]


def dead_letters(store, iid: str) -> list[dict]:
    return store.query("SELECT source, position, field, reason, raw FROM dead_letters "
                       "WHERE interaction_id = {iid:String}", {"iid": iid})


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_an_unmappable_llm_span_is_dead_lettered_and_reported_as_partial_success(server, sdk, encoding):
    url, store = server
    tracer, memory = sdk
    memory.clear()
    ok = record(tracer, "chat", {"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": f"accepted {encoding}"}]}])}, 30, 31)
    no_content = record(tracer, "chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"}, 30, 32)
    bad_confidence = record(tracer, "llm", {"openinference.span.kind": "LLM", "input.value": "hi",
                                            "faithwatch.confidence": 1.7}, 30, 33)
    other = record(tracer, "GET /health", {"http.route": "/health"}, 30, 34)
    spans = memory.get_finished_spans()
    if encoding == "protobuf":
        r = httpx.post(f"{url}/v1/traces", content=encode_spans(spans).SerializeToString(),
                       headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-protobuf"})
        answer = ExportTraceServiceResponse.FromString(r.content)
        rejected, message = answer.partial_success.rejected_spans, answer.partial_success.error_message
    else:
        from opentelemetry.exporter.otlp.json.common.trace_encoder import encode_spans as encode_json

        r = httpx.post(f"{url}/v1/traces", content=gzip.compress(encode_json(spans).to_json().encode()),
                       headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json",
                                "Content-Encoding": "gzip"})
        partial = r.json()["partialSuccess"]
        rejected, message = int(partial["rejectedSpans"]), partial["errorMessage"]
    assert r.status_code == 200 and r.headers["content-type"].startswith(
        "application/json" if encoding == "json" else "application/x-protobuf")
    assert rejected == 2
    assert "query: no user message text" in message and "confidence" in message
    dead = dead_letters(store, interaction_id(no_content))
    assert [(d["source"], d["field"]) for d in dead] == [("otlp", "query")]
    assert json.loads(dead[0]["raw"])["attributes"]["gen_ai.request.model"] == "gpt-4o"
    assert [d["field"] for d in dead_letters(store, interaction_id(bad_confidence))] == ["confidence"]
    flush(url)
    assert row(store, interaction_id(ok))["query"] == f"accepted {encoding}"
    for span in (other, no_content):
        assert store.query("SELECT count() AS n FROM interactions WHERE interaction_id = {i:String}",
                           {"i": interaction_id(span)}) == [{"n": 0}]


@pytest.mark.parametrize(("content_type", "body", "status", "says"), [
    ("application/x-protobuf", b"\xff\xff\xff", 400, "not a protobuf"),
    ("application/json", b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}', 400, "not hex"),
    ("application/json", b"[1, 2", 400, "not valid JSON"),
    ("application/json", b'{"resourceSpans": 5}', 400, "not an OTLP ExportTraceServiceRequest"),
    ("text/plain", b"hello", 415, "Content-Type"),
])
def test_a_body_that_is_not_an_export_request_is_refused_with_a_status(server, content_type, body, status, says):
    url, _ = server
    r = httpx.post(f"{url}/v1/traces", content=body,
                   headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": content_type})
    assert r.status_code == status
    message = r.json()["message"] if content_type == "application/json" else r.content.decode(errors="replace")
    assert says in message



def test_faithwatch_serve_hands_held_traces_to_the_pipeline_at_shutdown(tmp_path, sdk, monkeypatch):
    """A real ``faithwatch serve`` process holds the trace (hold 600 s); on SIGTERM it goes to the
    pipeline, which (fewer than bootstrap_size interactions) keeps it in the saved state."""
    from tests.services.test_cli_serve import serve_once

    tracer, memory = sdk
    memory.clear()
    llm = record(tracer, "llm", {"openinference.span.kind": "LLM", "input.value": "held until shutdown?",
                                 "output.value": "yes"}, 40, 41)

    def export(url, headers):
        exporter = ProtobufExporter(endpoint=f"{url}/v1/traces", headers=headers, timeout=30)
        assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS

    monkeypatch.setenv("FAITHWATCH_API__OTLP__HOLD_SECONDS", "600")
    code, err = serve_once(tmp_path / "data", export)
    assert code == 0, err
    with gzip.open(tmp_path / "data" / "state" / "pipeline.json.gz") as saved:
        assert interaction_id(llm).encode() in saved.read()


def test_the_hold_releases_on_its_clock_and_a_full_queue_answers_503(server, sdk):
    """The receiver on its own, with a clock of the test's: no timer thread, no waiting."""
    from services.otlp import PROTOBUF, OtlpError, OtlpReceiver

    _, store = server
    tracer, memory = sdk
    memory.clear()
    spans = [record(tracer, "llm", {"openinference.span.kind": "LLM", "input.value": f"clock {n}"}, 50, 51 + n)
             for n in range(2)]
    body = encode_spans(memory.get_finished_spans()).SerializeToString()
    settings = load_settings(embedding={"backend": "hashing"}, cluster={"bootstrap_size": 20},
                             api={"tokens": [TOKEN], "queue_max_records": 1, "otlp": {"hold_seconds": 5}})
    # Never started: what it accepts stays queued (depth) until close() processes it.
    ingestor = EmbeddedIngestor(build_pipeline(settings), store, Metrics(), max_queue=1)
    now = [100.0]
    receiver = OtlpReceiver(settings.api, store, ingestor, Metrics(), monotonic=lambda: now[0])
    receiver._stop.set()  # the release timer exits at once: this test ticks by hand
    assert receiver.receive(body, PROTOBUF, "", "r1") == (0, [])
    assert (len(receiver.hold), ingestor.depth) == (2, 0)
    now[0] = 104.9
    receiver.tick()
    assert (len(receiver.hold), ingestor.depth) == (2, 0)
    now[0] = 105.0
    receiver.tick()  # both traces are due; the queue takes at most 1 record: both wait in the receiver
    assert (len(receiver.hold), ingestor.depth, len(receiver._pending)) == (0, 0, 2)
    with pytest.raises(OtlpError) as refused:
        receiver.receive(body, PROTOBUF, "", "r2")
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
    ingestor.max_queue = 10
    receiver.tick()
    assert (ingestor.depth, receiver._pending) == (2, [])
    ingestor.close()  # processes the queue here, fitting the first clusters on what waits
    assert [row(store, interaction_id(s))["query"] for s in spans] == ["clock 0", "clock 1"]
