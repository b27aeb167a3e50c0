"""OTLP/HTTP trace ingest: ``POST /v1/traces`` turns GenAI and OpenInference spans into interactions.

The shell around :mod:`pipelines.otlp_mapping` (what spans mean) and :mod:`pipelines.trace_hold`
(how long a trace waits for its spans):

- decodes ``ExportTraceServiceRequest`` bodies, protobuf (``application/x-protobuf``) or OTLP/JSON
  (``application/json``), optionally gzip/deflate-compressed. OTLP/JSON writes trace and span ids
  as hex, not as protobuf-JSON's base64: they are converted before ``json_format`` reads the rest;
- reads each span at once: an LLM span that cannot be mapped is dead-lettered (source ``otlp``)
  and counted in the answer's ``partial_success.rejected_spans``; other spans that are neither LLM
  nor retrieval spans are counted and ignored;
- holds answers and retrievals per trace for ``api.otlp.hold_seconds`` (at most
  ``api.otlp.max_traces`` traces), then hands the interactions to the same
  :class:`~services.ingest.Ingestor` as ``POST /v1/interactions`` (so ``api.ingest=kafka``
  publishes them to the interactions topic). ``POST /v1/flush`` and shutdown release every held
  trace first;
- with a spool (``api.spool``, ``DATA_DIR/otlp-spool``, :class:`services.spool.Spool`) writes each
  request it accepts (decompressed, with its request id) to disk and syncs it before answering, so
  the spans it holds outlive a crash: :meth:`OtlpReceiver.recover` reads what a previous run left
  back into the hold at the next start. A request's spool mark is done once every trace it fed has
  been handed to the ingestor (whose own 202 is durable: its spool, or the broker's ack), and the
  spool is trimmed then. A span read twice (a crash after the hand-over, before the trim) gives the
  same interaction id, which the pipeline and the store drop as a duplicate; its dead letters get
  the same position, which the store keeps once.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from prometheus_client import Counter, Gauge

from pipelines.errors import InvalidRecord
from pipelines.interaction import DeadLetter, Interaction
from pipelines.otlp_mapping import (
    Answer,
    Rejected,
    Retrieval,
    Span,
    SpanEvent,
    complete,
    convention_of,
    raw_of,
    read_span,
)
from pipelines.trace_hold import HeldTrace, TraceHold
from services.ingest import Ingestor, IngestUnavailable
from services.metrics import Metrics
from services.settings import ApiSettings
from services.spool import Spool, SpoolFull
from services.store.base import Store

log = logging.getLogger("faithwatch.otlp")

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# google.rpc.Code values for the Status body of an error answer (OTLP/HTTP requires one).
_INVALID_ARGUMENT, _RESOURCE_EXHAUSTED, _UNAVAILABLE = 3, 8, 14
_REASONS_IN_ANSWER = 5


class OtlpError(HTTPException):
    """An OTLP request refused as a whole; answered with a google.rpc.Status body."""

    def __init__(self, status: int, message: str, code: int = _INVALID_ARGUMENT,
                 headers: dict[str, str] | None = None):
        super().__init__(status, message, headers)
        self.code = code


# ---- decoding --------------------------------------------------------------------------------

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def status_body(code: int, message: str, content_type: str) -> bytes:
    """A ``google.rpc.Status`` (code = 1, message = 2), protobuf or JSON."""
    if content_type == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """``body`` as sent before ``Content-Encoding`` (gzip, deflate or identity), at most ``limit`` bytes."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise OtlpError(415, f"Content-Encoding {encoding!r}: send gzip, deflate or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding == "gzip" else 0))
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OtlpError(400, f"body is not valid {encoding} ({exc})") from None
    if len(out) > limit:
        raise OtlpError(413, f"body exceeds {limit} bytes once decompressed (api.max_body_bytes): "
                             f"export smaller batches")
    return out


_CAMEL = {"resource_spans": "resourceSpans", "scope_spans": "scopeSpans", "trace_id": "traceId",
          "span_id": "spanId", "parent_span_id": "parentSpanId"}


def _get(d: dict, name: str) -> Any:
    camel = _CAMEL.get(name, name)
    return d[camel] if camel in d else d.get(name)


def _dicts(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _hex_ids_to_base64(obj: dict, names: Sequence[str], where: str) -> None:
    for name in names:
        for key in {name, _CAMEL[name]}:
            value = obj.get(key)
            if isinstance(value, str):
                try:
                    obj[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OtlpError(400, f"{where}.{key} {value[:40]!r} is not hex: OTLP/JSON writes trace and span "
                                         f"ids as hex strings") from None


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """OTLP/JSON: ids are hex (``json_format`` would read them as base64), the rest is proto3 JSON."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise OtlpError(400, f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise OtlpError(400, "expected an ExportTraceServiceRequest JSON object")
    # Anything not shaped as expected is left for json_format to refuse with its own message.
    for r, rs in enumerate(_dicts(_get(data, "resource_spans"))):
        for s, ss in enumerate(_dicts(_get(rs, "scope_spans"))):
            for n, span in enumerate(_dicts(ss.get("spans"))):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                _hex_ids_to_base64(span, ("trace_id", "span_id", "parent_span_id"), where)
                for k, link in enumerate(_dicts(span.get("links"))):
                    _hex_ids_to_base64(link, ("trace_id", "span_id"), f"{where}.links[{k}]")
    try:
        return json_format.ParseDict(data, ExportTraceServiceRequest(), ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise OtlpError(400, f"not an OTLP ExportTraceServiceRequest: {exc}") from None


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpError(400, f"body is not a protobuf ExportTraceServiceRequest ({exc})") from None
    return request


def value_of(v: AnyValue) -> Any:
    """An OTLP AnyValue as a plain value (arrays as lists, key-value lists as dicts, bytes as base64)."""
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None if kind is None else getattr(v, kind)


def spans_of(request: ExportTraceServiceRequest) -> list[Span]:
    spans = []
    for rs in request.resource_spans:
        resource = {kv.key: value_of(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(Span(
                    trace_id=s.trace_id.hex(), span_id=s.span_id.hex(), name=s.name,
                    parent_span_id=s.parent_span_id.hex() or None,
                    start_unix_nano=s.start_time_unix_nano, end_unix_nano=s.end_time_unix_nano,
                    attributes={kv.key: value_of(kv.value) for kv in s.attributes},
                    events=tuple(SpanEvent(e.name, e.time_unix_nano,
                                           {kv.key: value_of(kv.value) for kv in e.attributes}) for e in s.events),
                    resource=resource))
    return spans


def _parse(body: bytes, content_type: str) -> ExportTraceServiceRequest:
    return parse_json(body) if content_type == JSON else parse_protobuf(body)


def _valid_ids(span: Span) -> bool:
    return (len(span.trace_id) == 32 and len(span.span_id) == 16
            and span.trace_id.strip("0") != "" and span.span_id.strip("0") != "")


# ---- the receiver ----------------------------------------------------------------------------

class OtlpReceiver:
    """Receives OTLP trace requests and feeds their interactions to ``ingestor``."""

    def __init__(self, settings: ApiSettings, store: Store, ingestor: Ingestor, metrics: Metrics,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic, spool: Spool | None = None):
        self.settings = settings
        self.store = store
        self.ingestor = ingestor
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.hold = TraceHold(settings.otlp.hold_seconds, settings.otlp.max_traces)
        self._lock = threading.Lock()
        self._pending: list[Interaction] = []  # released while the ingest queue was full: retried
        self.spool = spool
        self.recovered = 0  # requests read back from the spool at start
        # Spool bookkeeping: the marks of the requests that fed each held trace, and per mark how
        # many trace holds (held, or released but not yet handed to the ingestor) still need it.
        self._trace_marks: dict[str, set[int]] = {}
        self._mark_refs: dict[int, int] = {}
        self._pending_marks: list[int] = []  # the marks of the traces behind _pending
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        r = metrics.registry
        self.spans = Counter("faithwatch_otlp_spans", "OTLP spans received, by outcome (interaction: an LLM span "
                                                      "mapped; retrieval; rejected: dead-lettered; ignored: other "
                                                      "spans)", ["outcome"], registry=r)
        for outcome in ("interaction", "retrieval", "rejected", "ignored"):
            self.spans.labels(outcome=outcome)
        self.held = Gauge("faithwatch_otlp_traces_held", "traces held for their remaining spans", registry=r)
        self.held.set_function(lambda: len(self.hold))

    # -- HTTP ------------------------------------------------------------------------------------
    def router(self, dependencies: list) -> APIRouter:
        router = APIRouter()
        doc = {"requestBody": {"required": True, "content": {
            PROTOBUF: {"schema": {"type": "string", "format": "binary",
                                  "description": "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest"}},
            JSON: {"schema": {"type": "object", "description": "ExportTraceServiceRequest as OTLP/JSON (hex ids)"}},
        }}}

        @router.post("/v1/traces", dependencies=dependencies, tags=["ingest"], openapi_extra=doc,
                     response_class=Response,
                     responses={200: {"content": {PROTOBUF: {}, JSON: {}},
                                      "description": "ExportTraceServiceResponse (partial_success when LLM spans "
                                                     "were rejected)"},
                                400: {"description": "not an ExportTraceServiceRequest"},
                                413: {"description": "body larger than api.max_body_bytes"},
                                415: {"description": "unsupported Content-Type or Content-Encoding"},
                                503: {"description": "ingest queue full: retry after Retry-After"}})
        async def traces(request: Request) -> Response:
            """OTLP/HTTP trace export (protobuf or JSON, optionally gzip): GenAI and OpenInference LLM
            spans become interactions (docs/ingest.md)."""
            content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
            answer_type = JSON if content_type == JSON else PROTOBUF
            try:
                if content_type not in (PROTOBUF, "application/protobuf", JSON):
                    raise OtlpError(415, f"Content-Type {content_type!r}: send application/x-protobuf or "
                                         f"application/json")
                body = await self._read(request)
                rejected, reasons = await run_in_threadpool(self.receive, body, content_type,
                                                            request.headers.get("content-encoding", "").lower().strip(),
                                                            uuid.uuid4().hex)
            except OtlpError as exc:
                return Response(status_body(exc.code, exc.detail, answer_type), status_code=exc.status_code,
                                media_type=answer_type, headers=exc.headers)
            out = ExportTraceServiceResponse()
            if rejected:
                out.partial_success.rejected_spans = rejected
                out.partial_success.error_message = "; ".join(reasons)
            body = json_format.MessageToJson(out).encode() if answer_type == JSON else out.SerializeToString()
            return Response(body, media_type=answer_type)

        return router

    async def _read(self, request: Request) -> bytes:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise OtlpError(413, f"body is {declared} bytes, limit {limit} (api.max_body_bytes): export smaller "
                                 f"batches")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise OtlpError(413, f"body exceeds {limit} bytes (api.max_body_bytes): export smaller batches")
            chunks.append(chunk)
        return b"".join(chunks)

    # -- the work --------------------------------------------------------------------------------
    def receive(self, body: bytes, content_type: str, encoding: str, request_id: str) -> tuple[int, list[str]]:
        """Decode, read and hold one request's spans; (rejected LLM spans, their first reasons)."""
        if self._pending or self.ingestor.depth >= self.settings.queue_max_records:
            raise OtlpError(503, "ingest queue full; retry shortly", _UNAVAILABLE, {"Retry-After": "1"})
        body = decompress(body, encoding, self.settings.max_body_bytes)
        spans = spans_of(_parse(body, content_type))
        mark = self._write(body, content_type, request_id)
        self._start()
        try:
            rejected = self._take(spans, request_id, mark)
        finally:
            if mark is not None:
                self._settle_mark(mark)  # done now if it holds no trace
        reasons = [f"span {r.span_id} of trace {r.trace_id}: {r.field}: {r.reason}"
                   for r in rejected[:_REASONS_IN_ANSWER]]
        if len(rejected) > _REASONS_IN_ANSWER:
            reasons.append(f"and {len(rejected) - _REASONS_IN_ANSWER} more (dead letters, source otlp)")
        return len(rejected), reasons

    def _write(self, body: bytes, content_type: str, request_id: str) -> int | None:
        """With a spool: ``body`` on disk (synced) before the 202; its mark."""
        if self.spool is None:
            return None
        line = json.dumps({"request": request_id, "type": content_type,
                           "body": base64.b64encode(body).decode("ascii")}).encode() + b"\n"
        try:
            return self.spool.append_lines(line)
        except SpoolFull as exc:
            raise OtlpError(503, str(exc), _UNAVAILABLE, {"Retry-After": "1"}) from None
        except OSError as exc:
            log.error("writing an OTLP request to the spool failed: %s", exc)
            raise OtlpError(503, "the spool cannot be written (the server log has the reason); retry shortly",
                            _UNAVAILABLE, {"Retry-After": "1"}) from None

    def _take(self, spans: list[Span], request_id: str, mark: int | None) -> list[Rejected]:
        """Read ``spans``, hold what belongs to a trace (under ``mark``), dead-letter the rejected
        LLM spans, release what is due; the rejected ones."""
        rejected: list[Rejected] = []
        now = self.monotonic()
        with self._lock:
            released: list[HeldTrace] = []
            for span in spans:
                if convention_of(span) is not None and not _valid_ids(span):
                    item: Any = Rejected(span.trace_id, span.span_id, "trace_id",
                                         "invalid trace or span id (16 and 8 bytes, not all zero)", raw_of(span))
                else:
                    item = read_span(span)
                if item is None:
                    self.spans.labels(outcome="ignored").inc()
                elif isinstance(item, Rejected):
                    rejected.append(item)
                else:
                    if mark is not None:
                        marks = self._trace_marks.setdefault(item.trace_id, set())
                        if mark not in marks:
                            marks.add(mark)
                            self._mark_refs[mark] = self._mark_refs.get(mark, 0) + 1
                    released += self.hold.add(item.trace_id, item, now)
            released += self.hold.due(now)
            released_marks = self._marks_of(released)
        self._dead_letter(rejected, f"request {request_id} ")
        self._release(released, released_marks)
        return rejected

    def recover(self) -> int:
        """Read the requests a previous run left in the spool back into the hold (before taking new
        ones); how many. A torn last line (its request was never answered) is skipped and logged."""
        if self.spool is None:
            return 0
        for mark, path, lines in self.spool.recover_lines():
            for n, line in lines:
                try:
                    entry = json.loads(line)
                    body = base64.b64decode(entry["body"], validate=True)
                    spans = spans_of(_parse(body, entry["type"]))
                except (ValueError, KeyError, TypeError, OtlpError) as exc:
                    torn = "" if line.endswith(b"\n") else " (torn: the write did not complete)"
                    log.warning("OTLP spool %s line %d cannot be read%s: %s; skipped", path.name, n, torn, exc)
                    continue
                self._start()
                self._take(spans, str(entry["request"]), mark)
                self.recovered += 1
            self._settle_mark(mark)
        if self.recovered:
            log.warning("OTLP: %d requests accepted before the last stop read back from the spool %s",
                        self.recovered, self.spool.directory)
        return self.recovered

    def _marks_of(self, traces: list[HeldTrace]) -> list[int]:
        """With the lock held: the marks of the requests that fed ``traces`` (just released), each
        once per trace: one reference each."""
        marks: list[int] = []
        for trace in traces:
            marks += self._trace_marks.pop(trace.trace_id, ())
        return marks

    def _settle(self, marks: list[int]) -> None:
        """The traces behind ``marks`` reached the ingestor: drop their references."""
        with self._lock:
            for mark in marks:
                self._mark_refs[mark] -= 1
        for mark in set(marks):
            self._settle_mark(mark)

    def _settle_mark(self, mark: int) -> None:
        """``mark`` is done once no trace hold needs it; then trim the spool."""
        assert self.spool is not None
        with self._lock:
            if self._mark_refs.get(mark, 0) > 0:
                return
            self._mark_refs.pop(mark, None)
        self.spool.done(mark)
        self.spool.trim(self.spool.settled())

    def release_all(self) -> None:
        """Release every held trace now (before ``POST /v1/flush`` and at shutdown)."""
        with self._lock:
            released = self.hold.drain()
            marks = self._marks_of(released)
        self._release(released, marks)

    def tick(self) -> None:
        """Release the traces held long enough, and retry what the full queue refused."""
        with self._lock:
            released = self.hold.due(self.monotonic())
            marks = self._marks_of(released)
        self._release(released, marks)

    def _release(self, traces: list[HeldTrace], marks: list[int]) -> None:
        """Hand the interactions of ``traces`` (and any still waiting) to the ingestor; ``marks``
        (the spool marks of those traces) are settled once the ingestor took them."""
        interactions: list[Interaction] = []
        rejected: list[Rejected] = []
        for trace in traces:
            retrievals = [i for i in trace.items if isinstance(i, Retrieval)]
            self.spans.labels(outcome="retrieval").inc(len(retrievals))
            for answer in (i for i in trace.items if isinstance(i, Answer)):
                out = complete(answer, retrievals)
                (rejected if isinstance(out, Rejected) else interactions).append(out)
        self._dead_letter(rejected, "")
        with self._lock:
            batch, self._pending = self._pending + interactions, []
            waiting, self._pending_marks = self._pending_marks + marks, []
        if batch:
            try:
                self.ingestor.submit(batch)
            except IngestUnavailable as exc:
                log.warning("OTLP: %d interactions wait for the ingest queue (%s)", len(batch), exc)
                with self._lock:
                    self._pending = batch + self._pending
                    self._pending_marks = waiting + self._pending_marks
                return
            self.spans.labels(outcome="interaction").inc(len(batch))
            self.metrics.ingested.inc(len(batch))
        if self.spool is not None:
            self._settle(waiting)

    def _dead_letter(self, rejected: list[Rejected], where: str) -> None:
        if not rejected:
            return
        received_at = self.clock()
        self.store.insert_dead_letters([
            DeadLetter.of(InvalidRecord(r.field, r.reason, r.interaction_id), dict(r.raw), received_at=received_at,
                          source="otlp", position=f"{where}trace {r.trace_id} span {r.span_id}")
            for r in rejected])
        self.spans.labels(outcome="rejected").inc(len(rejected))
        self.metrics.invalid.inc(len(rejected))
        log.info("OTLP: %d LLM spans dead-lettered (first: %s: %s)", len(rejected), rejected[0].field,
                 rejected[0].reason)

    # -- the release timer -----------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="faithwatch-otlp", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        every = min(max(self.settings.otlp.hold_seconds / 4, 0.05), 1.0)
        while not self._stop.wait(every):
            try:
                self.tick()
            except Exception:  # the timer must outlive a failed release (a store error); it is logged
                log.exception("OTLP: releasing held traces failed")

    def close(self) -> None:
        """Stop the timer and hand every held trace to the ingestor (before it closes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.release_all()
        if self._pending:
            log.error("OTLP: %d interactions could not be queued at shutdown", len(self._pending))
