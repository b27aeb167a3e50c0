"""The HTTP API: producers post interactions, analysts read clusters, incidents and sessions.

:func:`create_app` builds the FastAPI app around what the caller owns: the settings, the store
(read by every GET) and the :class:`~services.ingest.Ingestor` (fed by POST /v1/interactions).
In embedded mode (``faithwatch serve``) this process owns the chDB store and the live pipeline:
chDB opens a data path in one process only, so everything that reads the store while serving
reads it here.

- Authentication: ``Authorization: Bearer <token>`` on every route but ``/healthz``; the token
  is compared with every configured one in constant time. With no token configured the app
  refuses to start unless ``api.insecure`` is set.
- Every user-supplied value reaches SQL as a bound parameter (the store's methods only).
- ``/docs`` and ``/openapi.json`` need the token too unless ``api.public_docs`` is set.
"""


import asyncio
import base64
import binascii
import hmac
import importlib.util
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from pipelines.errors import ConfigError, InvalidRecord, StoreError
from pipelines.interaction import DeadLetter, Interaction, parse_record
from services import export
from services.body import BatchBody, BodyError
from services.columns import (
    CLUSTER_COLUMNS,
    FAMILY_COLUMNS,
    INCIDENT_COLUMNS,
    SESSION_COLUMNS,
    family_of,
    with_member_count,
)
from services.flush import FlushGate, wait_for
from services.gates import incident_gates
from services.ingest import Ingestor, IngestUnavailable
from services.metrics import CONTENT_TYPE, Metrics
from services.otlp import OtlpReceiver
from services.settings import ApiSettings
from services.spool import Spool
from services.store.base import SessionKey, Store, session_key

log = logging.getLogger("faithwatch.api")

# What a client is told of a failure inside the server: the reason (store messages name tables,
# queries and paths) is in the log, never in an answer.
_SEE_LOG = "the server log has the reason (faithwatch_ingest_errors_total counts these failures)"
# Swagger UI's files, served by /docs/assets/<name>: only these names (no path from a request).
# (find_spec locates the package without importing it: its own code pulls in jinja2 and yaml.)
SWAGGER_ASSETS = {name: Path(importlib.util.find_spec("swagger_ui").origin).parent / "static" / name
                  for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")}
# /healthz answers 503 when the store takes longer than this to answer SELECT 1.
HEALTH_TIMEOUT_SECONDS = 5.0
# At most this many per-record errors are returned; the count says how many there were.
MAX_ERRORS_RETURNED = 1000
# "+" in an unencoded query string arrives as a space: "...T10:00:00 00:00" meant "+00:00".
_PLUS_AS_SPACE = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d:\d\d)$")


# ---- response shapes (for OpenAPI; rows carry every stored column) ---------------------------

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RecordError(BaseModel):
    index: int = Field(description="0-based position of the record in the batch")
    line: int | None = Field(None, description="1-based line of the record (NDJSON only)")
    interaction_id: str | None
    field: str = Field(description="dotted path of the offending field, <record> for the whole record")
    reason: str


class PipelineTotals(BaseModel):
    received: int
    scored: int
    duplicates: int
    rejected: int = Field(0, description="accepted, then refused by the pipeline (timestamp more than "
                                         "input.max_ahead_hours ahead of the stream): dead letters")
    below_baseline: int
    waiting_for_bootstrap: int = Field(description="accepted but held back until the clusters are first fitted")
    incident_events: dict[str, int]


class IngestResult(BaseModel):
    request_id: str
    received: int = Field(description="records in the body")
    accepted: int = Field(description="valid records queued for processing")
    invalid: int = Field(description="records refused (stored as dead letters with their reason)")
    errors: list[RecordError]
    errors_truncated: bool = Field(description=f"more than {MAX_ERRORS_RETURNED} errors; only the first are listed")
    queue_depth: int
    processed: bool | None = Field(None, description="with ?wait=true: the accepted records are scored and stored")
    pipeline: PipelineTotals | None = Field(None, description="with ?wait=true: totals since the server started")


class FlushResult(BaseModel):
    processed: bool
    pipeline: PipelineTotals | None = Field(None, description="totals since the server started (None in Kafka mode: "
                                                               "the pipeline runs in the stream workers)")


class Health(BaseModel):
    status: str


class ClusterRow(_Open):
    cluster_id: str
    label: str
    category: str
    terms: list[str]
    representative_query: str
    size: int
    centroid_version: int
    first_seen: datetime | None
    last_seen: datetime | None
    family_id: str | None = Field(None, description="the intent family the cluster belongs to (null: none stored)")
    family_label: str | None = None
    family_category: str | None = None


class ClusterList(BaseModel):
    count: int
    items: list[ClusterRow]


class FamilyRow(_Open):
    family_id: str
    label: str | None = Field(description="the family's readable label, as its most recently stored member says")
    category: str | None = Field(description="the family's one category (the strictest of its members')")
    clusters: list[str] = Field(description="member cluster ids, oldest first")
    aliases: list[str] = Field([], description="family ids merged into this one (interactions scored before keep them)")
    n_clusters: int
    size: int = Field(description="queries assigned to its members")
    first_seen: datetime | None
    last_seen: datetime | None


class FamilyList(BaseModel):
    count: int
    items: list[FamilyRow]


class FamilyDetail(FamilyRow):
    members: list[ClusterRow] = Field(description="the member clusters, oldest first")
    open_incidents: list[str] = Field(description="open incidents with a member cluster among this family's")


class BaselineBand(BaseModel):
    source: str = Field(description="cluster: its own baseline; global prior: too new, borrows the global one")
    median: float | None
    low: float | None = Field(description="answers below this faithfulness count as below baseline")
    below_rate: float | None
    count: int


class RateWindow(BaseModel):
    window: str = Field(description="1h, 24h, 7d (ending at the cluster's latest answer) or all")
    first_at: datetime | None
    last_at: datetime | None
    interactions: int
    below_baseline: int
    below_baseline_rate: float | None
    confident_wrong: int
    confident_wrong_rate: float | None
    mean_faithfulness: float | None
    mean_confidence: float | None


class ClusterExample(_Open):
    interaction_id: str
    session_id: str | None
    customer_id: str | None
    timestamp: datetime
    query: str
    response: str | None
    faithfulness: float | None
    confidence: float | None
    below_baseline: bool


class ClusterDetail(ClusterRow):
    baseline: BaselineBand | None = Field(description="the live detector's band now; null without a live pipeline")
    last_at: datetime | None
    last_baseline_low: float | None = Field(description="band low when the latest answer was scored (from the store)")
    recent_rates: list[RateWindow]
    examples: list[ClusterExample]
    open_incidents: list[str] = Field(description="open incidents with this cluster among their members")
    family: FamilyRow | None = Field(None, description="the cluster's intent family with its member ids")


class IncidentRow(_Open):
    incident_id: str
    status: str
    severity: str
    category: str
    cluster_id: str
    cluster_label: str
    onset_at: datetime
    detected_at: datetime
    resolved_at: datetime | None
    below_baseline_count: int
    affected_sessions: int
    affected_customers: int
    outreach_required: bool
    summary: str
    level: str = Field("cluster", description="cluster: opened by one cluster's test; family: by its intent family's")
    clusters: list[str] = Field(description="member cluster ids in join order (cluster_id first); empty on incidents "
                                            "stored before families existed")
    n_clusters: int = Field(description="member clusters (1 for an incident stored without a member list)")
    family_ids: list[str]
    members: list[dict[str, Any]] = Field(description="per member cluster: cluster_id, cluster_label, family_id, "
                                                      "category, joined_at, since (its blast radius starts here), "
                                                      "joined_by (opened, family, document, sessions), "
                                                      "below_baseline_count, affected_sessions")
    cause: dict[str, Any] | None = Field(description="the document version the incident is correlated by, if any")


class IncidentList(BaseModel):
    count: int
    items: list[IncidentRow]


class IncidentGates(BaseModel):
    active: list[dict[str, Any]] = Field(description="per member cluster: its active gate and source (cluster "
                                                     "override, family override, category gate) with the override's "
                                                     "version, author, time and reason")
    suggested: dict[str, Any] | None = Field(description="the gate that would have held the failing answers back, "
                                                         "with its cost (null when none was computed)")
    adopt: str | None = Field(description="the one command that adopts the suggested gate")


class IncidentDetail(IncidentRow):
    events: list[dict[str, Any]]
    gates: IncidentGates = Field(description="the active gates of the member clusters beside the suggested one "
                                             "(docs/gates.md)")


class SessionRow(_Open):
    session_id: str | None
    customer_id: str | None
    first_at: datetime
    last_at: datetime
    below_baseline_count: int
    confident_wrong_count: int
    worst_faithfulness: float | None
    example_interaction_id: str
    example_query: str
    example_response: str | None


class SessionList(BaseModel):
    count: int = Field(description="rows on this page")
    items: list[SessionRow]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next page; null on the last page")
    next: str | None = Field(None, description="the URL of the next page (also in the `Link` header); null on the "
                                               "last page")


# ---- helpers ---------------------------------------------------------------------------------

def instant(name: str, value: str | None) -> datetime | None:
    """A query parameter as an aware datetime; HTTP 422 saying what to send otherwise."""
    if value is None:
        return None
    text = _PLUS_AS_SPACE.sub(r"\1+\2", value.strip())
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(422, f"{name}: {value!r} is not a date-time; use RFC 3339 with an offset, "
                                 f"e.g. 2026-11-02T10:00:00Z") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise HTTPException(422, f"{name}: {value!r} has no UTC offset; add one, e.g. 2026-11-02T10:00:00Z "
                                 f"(encode '+' as %2B in a URL)")
    return parsed


def _range(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    lo, hi = instant("since", since), instant("until", until)
    if lo is not None and hi is not None and lo > hi:
        raise HTTPException(422, f"since ({since}) is after until ({until})")
    return lo, hi


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    return "text/csv" in request.headers.get("accept", "")


def _table(request: Request, fmt: str | None, rows: list[dict], columns: Sequence[str], name: str,
           **extra: Any) -> Any:
    """``rows`` as CSV (an attachment named ``name``) or JSON ``{count, items, **extra}``."""
    if _wants_csv(request, fmt):
        return Response(export.as_csv(rows, columns), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": export.attachment(name, "csv")})
    return {"count": len(rows), "items": rows, **extra}


# Session lists page by keyset: a JSON page holds at most SESSION_PAGE rows unless ``limit`` says
# otherwise; CSV is the outreach export and holds every row unless ``limit`` is given (a CSV cut
# off at a default size would silently drop customers to contact).
SESSION_PAGE = 1_000
SESSION_LIMIT = 1_000_000
_SESSION_LIMIT_DOC = (f"rows per page (1 to {SESSION_LIMIT:,}); default {SESSION_PAGE:,} for JSON, every row for CSV")
_CURSOR_DOC = "the `next_cursor` of the previous page"


def encode_cursor(key: SessionKey) -> str:
    """An opaque, URL-safe token for a session row's place in the keyset order.

    >>> decode_cursor(encode_cursor((datetime(2026, 11, 2, 10, 0, 0, 5000, tzinfo=UTC), "s 1")))
    (datetime.datetime(2026, 11, 2, 10, 0, 0, 5000, tzinfo=datetime.timezone.utc), 's 1')
    """
    at, session = key
    raw = json.dumps([at.astimezone(UTC).isoformat(), session], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> SessionKey:
    """:func:`encode_cursor`'s key; HTTP 400 for anything else."""
    try:
        at, session = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = datetime.fromisoformat(at), session
        if key[0].tzinfo is None or not (session is None or isinstance(session, str)):
            raise ValueError(key)
        return key
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error):
        raise HTTPException(400, f"cursor {token[:80]!r} is not a cursor this API issued: pass the next_cursor "
                                 f"of the previous page, or no cursor for the first page") from None


def _session_page(request: Request, response: Response, fmt: str | None, limit: int | None, cursor: str | None,
                  read: Any, name: str) -> Any:
    """One page of session rows from ``read(limit=, after=)`` with its next cursor and link."""
    csv_out = _wants_csv(request, fmt)
    size = limit if limit is not None else (None if csv_out else SESSION_PAGE)
    rows = read(limit=None if size is None else size + 1, after=None if cursor is None else decode_cursor(cursor))
    token = link = None
    if size is not None and len(rows) > size:
        rows = rows[:size]
        token = encode_cursor(session_key(rows[-1]))
        link = str(request.url.include_query_params(cursor=token))
    headers = {} if link is None else {"Link": f'<{link}>; rel="next"', "X-Next-Cursor": token}
    out = _table(request, fmt, rows, SESSION_COLUMNS, name, next_cursor=token, next=link)
    (out if isinstance(out, Response) else response).headers.update(headers)
    return out


class _Timing:
    """ASGI middleware: request latency by route template (ids never become label values)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "<unmatched>"
            self.metrics.request_latency.labels(scope["method"], route, str(status[0])).observe(
                time.perf_counter() - start)


# ---- the app ---------------------------------------------------------------------------------

def check_auth(settings: ApiSettings) -> list[bytes]:
    """The configured tokens; ConfigError when there are none and ``insecure`` is not set."""
    tokens = [t.get_secret_value().encode("utf-8") for t in settings.tokens]
    if any(not t.strip() for t in tokens):
        raise ConfigError("api.tokens: an empty token would let anyone in; remove it")
    if not tokens and not settings.insecure:
        raise ConfigError("no api.tokens configured: set FAITHWATCH_API__TOKENS='[\"<token>\"]' (or api.tokens in "
                          "the config file), or pass --insecure (api.insecure=true) to serve without authentication")
    return tokens


def create_app(settings: ApiSettings, store: Store, ingestor: Ingestor, metrics: Metrics | None = None,
               clock=lambda: datetime.now(UTC), otlp_spool: Spool | None = None) -> FastAPI:
    """The API over ``store`` and ``ingestor`` (both owned, started and closed by the caller);
    ``otlp_spool`` (owned by the caller too) makes the 202 of ``POST /v1/traces`` durable."""
    tokens = check_auth(settings)
    if not tokens:
        log.warning("serving WITHOUT authentication (api.insecure): every route is open")
    metrics = metrics or Metrics()
    bearer = HTTPBearer(auto_error=False, description="one of api.tokens")

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if not tokens:
            return
        presented = credentials.credentials.encode("utf-8") if credentials else b""
        # Compare with every token (no early exit): the time taken says nothing about which matched.
        ok = False
        for token in tokens:
            ok |= hmac.compare_digest(presented, token)
        if credentials is None or not ok:
            raise HTTPException(401, "missing or invalid bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(require_token)]
    flushes = FlushGate(ingestor)
    metrics.track_flushes_waiting(lambda: flushes.waiting)
    app = FastAPI(title="faithwatch", version="1", openapi_url=None, docs_url=None, redoc_url=None,
                  description="Ingest model interactions; read clusters, incidents and the sessions they hit.")
    app.add_middleware(_Timing, metrics=metrics)
    app.state.store, app.state.ingestor, app.state.metrics = store, ingestor, metrics

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        # The store's own message names tables, queries and paths: it goes to the log, with an id
        # the client can quote, never to the client.
        error_id = uuid.uuid4().hex[:12]
        log.error("store error %s on %s: %s", error_id, request.url.path, exc)
        return JSONResponse({"detail": f"store unavailable (error {error_id}; the server log has the reason)"},
                            status_code=503)

    docs_auth = [] if settings.public_docs else auth

    # OTLP/HTTP trace ingest (services/otlp.py): spans become interactions for the same ingestor.
    otlp = app.state.otlp = OtlpReceiver(settings, store, ingestor, metrics, clock, spool=otlp_spool)
    app.include_router(otlp.router(auth))

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs_auth)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs_auth)
    def docs() -> HTMLResponse:
        # Swagger UI's files come from this server (the swagger-ui-py package), never a CDN.
        return get_swagger_ui_html(openapi_url="/openapi.json", title="faithwatch API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")

    @app.get("/docs/assets/{name}", include_in_schema=False, dependencies=docs_auth)
    def docs_asset(name: str) -> FileResponse:
        if name not in SWAGGER_ASSETS:
            raise HTTPException(404, f"no docs asset {name!r}")
        return FileResponse(SWAGGER_ASSETS[name])

    # The probe has a thread of its own: however busy the shared pool is, it answers.
    health_thread = ThreadPoolExecutor(1, thread_name_prefix="faithwatch-health")

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Any:
        """Liveness and store reachability; open without a token (so it says nothing more)."""
        if ingestor.store_failing:  # the worker's writes fail (retried): reads may still work
            return JSONResponse({"status": "store unavailable"}, status_code=503)
        probe = asyncio.get_running_loop().run_in_executor(health_thread, store.query, "SELECT 1 AS ok")
        try:
            await asyncio.wait_for(probe, HEALTH_TIMEOUT_SECONDS)
        except StoreError as exc:
            log.error("health check: store unavailable: %s", exc)
            return JSONResponse({"status": "store unavailable"}, status_code=503)
        except TimeoutError:
            log.error("health check: the store did not answer within %s s", HEALTH_TIMEOUT_SECONDS)
            return JSONResponse({"status": "store unavailable"}, status_code=503)
        return {"status": "ok"}

    @app.get("/metrics", dependencies=auth, tags=["operations"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}})
    def prometheus() -> Response:
        """Counters of ingest and detection, queue depth and request latency (Prometheus text)."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # -- ingest --------------------------------------------------------------------------------
    body_doc = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "array", "items": {"type": "object"},
                                        "description": "interactions (contract/interaction.schema.json)"}},
        "application/x-ndjson": {"schema": {"type": "string", "description": "one interaction object per line"}},
    }}}

    def accept(body: BatchBody, request_id: str) -> dict:
        valid: list[Interaction] = []
        errors: list[dict] = []
        dead: list[DeadLetter] = []
        received_at = clock()
        received = 0
        for index, line, raw in body.records():
            received += 1
            try:
                valid.append(parse_record(raw))
            except InvalidRecord as exc:
                errors.append({"index": index, "line": line, "interaction_id": exc.interaction_id,
                               "field": exc.field, "reason": exc.reason})
                where = f"line {line}" if line is not None else f"index {index}"
                dead.append(DeadLetter.of(exc, raw, received_at=received_at, source="http",
                                          position=f"request {request_id} {where}"))
        # Queue first: a 503 (queue full) leaves nothing behind, so the producer can resend the batch.
        if valid:
            ticket = ingestor.submit(valid)
        else:
            ticket = None
        store.insert_dead_letters(dead)
        metrics.ingested.inc(len(valid))
        metrics.invalid.inc(len(dead))
        if dead:
            log.info("request %s: %d of %d records refused (%s)", request_id, len(dead), received, body.kind)
        return {"request_id": request_id, "received": received, "accepted": len(valid),
                "invalid": len(errors), "errors": errors[:MAX_ERRORS_RETURNED],
                "errors_truncated": len(errors) > MAX_ERRORS_RETURNED, "ticket": ticket}

    def _timeout(timeout: float | None) -> float:
        return min(timeout or settings.wait_timeout_seconds, settings.wait_timeout_seconds)

    @app.post("/v1/interactions", status_code=202, response_model=IngestResult, dependencies=auth,
              tags=["ingest"], openapi_extra=body_doc,
              responses={400: {"description": "the body is not a JSON array / NDJSON"},
                         413: {"description": "body larger than api.max_body_bytes, or more records than "
                                              "api.max_records_per_request"},
                         415: {"description": "unsupported Content-Type"},
                         503: {"description": "ingest queue or spool full, or shutting down: retry after "
                                              "Retry-After"}})
    async def ingest(request: Request,
                     wait: Annotated[bool, Query(description="answer only once these records are scored and "
                                                             "stored")] = False,
                     timeout: Annotated[float | None, Query(gt=0, description="longest wait, seconds (capped "
                                                                               "by api.wait_timeout_seconds)")] = None
                     ) -> Any:
        """Accept a batch of interactions: a JSON array, or NDJSON (one object per line).

        Valid records are queued for the pipeline; invalid ones are listed in ``errors`` (index,
        interaction_id, field, reason) and stored as dead letters. The answer is 202 at once, or
        with ``?wait=true`` once the accepted records are processed and stored.
        """
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"body is {declared} bytes, limit {limit} (api.max_body_bytes): "
                                     f"split the batch")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        size = 0
        try:
            # Split while reading: a body of too many records is refused before the rest arrives.
            body = BatchBody(content_type, settings.max_records_per_request)
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"body exceeds {limit} bytes (api.max_body_bytes): split the batch")
                body.feed(chunk)
            request_id = uuid.uuid4().hex
            result = await run_in_threadpool(accept, body, request_id)
        except BodyError as exc:
            raise HTTPException(exc.status, str(exc)) from None
        except IngestUnavailable as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after)}) from None
        ticket = result.pop("ticket")
        if wait and ticket is not None:
            done = await wait_for(ingestor, ticket, _timeout(timeout))
            if done.error:
                raise HTTPException(500, f"records accepted but processing failed; {_SEE_LOG}")
            result["processed"] = done.done
            result["pipeline"] = ingestor.totals()
        elif wait:
            result["processed"] = True
            result["pipeline"] = ingestor.totals()
        result["queue_depth"] = ingestor.depth
        return result

    @app.post("/v1/flush", response_model=FlushResult, dependencies=auth, tags=["ingest"],
              responses={202: {"description": "still processing when the timeout passed"}})
    async def flush(timeout: Annotated[float | None, Query(gt=0)] = None) -> Any:
        """Process everything accepted so far, fitting the first clusters now if the pipeline is
        still waiting for ``cluster.bootstrap_size`` interactions, and write it all to the store.

        One flush runs at a time; concurrent calls wait for it and share the next one."""
        try:
            otlp.release_all()  # traces held for their remaining spans go in now
            done = await flushes.flush(_timeout(timeout))
        except IngestUnavailable as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
        if done.error:
            raise HTTPException(500, f"processing failed; {_SEE_LOG}")
        body = {"processed": done.done, "pipeline": ingestor.totals()}
        return body if done.done else JSONResponse(body, status_code=202)

    # -- reads ---------------------------------------------------------------------------------
    Fmt = Annotated[Literal["json", "csv"] | None, Query(alias="format", description="json (default) or csv; "
                                                                                    "Accept: text/csv also works")]
    csv_doc = {200: {"content": {"text/csv": {}}}}

    @app.get("/v1/clusters", response_model=ClusterList, dependencies=auth, tags=["clusters"], responses=csv_doc)
    def clusters(request: Request, fmt: Fmt = None) -> Any:
        """Every cluster the pipeline has found, with its label and category."""
        return _table(request, fmt, store.list_clusters(), CLUSTER_COLUMNS, "clusters")

    @app.get("/v1/clusters/{cluster_id}", response_model=ClusterDetail, dependencies=auth, tags=["clusters"],
             responses={404: {"description": "no such cluster"}})
    def cluster(cluster_id: str) -> Any:
        """One cluster: label, category, the live baseline band, recent rates and latest answers."""
        detail = store.cluster_detail(cluster_id)
        if detail is None:
            raise HTTPException(404, f"no cluster {cluster_id!r}")
        band = ingestor.baseline(cluster_id)
        detail["baseline"] = None if band is None else band.__dict__
        detail["open_incidents"] = [i["incident_id"] for i in
                                    store.list_incidents(status="open", cluster_id=cluster_id)]
        detail["family"] = family_of(store, detail)
        return detail

    @app.get("/v1/families", response_model=FamilyList, dependencies=auth, tags=["clusters"], responses=csv_doc)
    def families(request: Request, fmt: Fmt = None) -> Any:
        """Every intent family: clusters that are one intent, monitored as one unit besides each cluster."""
        return _table(request, fmt, store.list_families(), FAMILY_COLUMNS, "families")

    @app.get("/v1/families/{family_id}", response_model=FamilyDetail, dependencies=auth, tags=["clusters"],
             responses={404: {"description": "no such family"}})
    def family(family_id: str) -> Any:
        """One family with its member clusters and the open incidents that involve them. An id the
        family merged in (an alias: interactions scored before the merge carry it) finds the family."""
        found = store.list_families(family_id=family_id)
        if not found:
            raise HTTPException(404, f"no family {family_id!r}")
        members = set(found[0]["clusters"])
        opened = [i["incident_id"] for i in store.list_incidents(status="open", limit=10_000)
                  if members & set(i["clusters"] or [i["cluster_id"]])]
        return {**found[0], "members": store.list_clusters(family_id=found[0]["family_id"]), "open_incidents": opened}

    @app.get("/v1/incidents", response_model=IncidentList, dependencies=auth, tags=["incidents"],
             responses=csv_doc)
    def incidents(request: Request,
                  status: Literal["open", "resolved"] | None = None,
                  cluster: Annotated[str | None, Query(description="cluster id: incidents with it among their "
                                                                     "member clusters")] = None,
                  category: str | None = None,
                  since: Annotated[str | None, Query(description="active at or after (RFC 3339 with offset)")] = None,
                  until: Annotated[str | None, Query(description="began at or before (RFC 3339 with offset)")] = None,
                  limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
                  fmt: Fmt = None) -> Any:
        """Incidents (latest state of each), most recently detected first."""
        lo, hi = _range(since, until)
        rows = with_member_count(store.list_incidents(status=status, cluster_id=cluster, category=category, since=lo,
                                                      until=hi, limit=limit))
        return _table(request, fmt, rows, INCIDENT_COLUMNS, "incidents")

    @app.get("/v1/incidents/{incident_id}", response_model=IncidentDetail, dependencies=auth, tags=["incidents"],
             responses={404: {"description": "no such incident"}})
    def incident(incident_id: str) -> Any:
        """One incident's latest state and every event (opened, updated, resolved), with the active
        gates of its member clusters beside its suggested gate and the command that adopts it."""
        found = store.get_incident(incident_id)
        if found is None:
            raise HTTPException(404, f"no incident {incident_id!r}")
        return {**with_member_count([found])[0], "gates": incident_gates(store, app.state.gate_policy(), found)}

    @app.get("/v1/incidents/{incident_id}/sessions", response_model=SessionList, dependencies=auth,
             tags=["incidents"], responses={**csv_doc, 404: {"description": "no such incident"}})
    def incident_sessions(request: Request, response: Response, incident_id: str, fmt: Fmt = None,
                          limit: Annotated[int | None, Query(ge=1, le=SESSION_LIMIT,
                                                             description=_SESSION_LIMIT_DOC)] = None,
                          cursor: Annotated[str | None, Query(description=_CURSOR_DOC)] = None) -> Any:
        """The blast radius for outreach: every session of the incident's session list (the
        alert's `session_ids`), with its below-baseline answers until the incident was resolved
        (in a member cluster from that member's `since`; in another cluster, a reader of the cause
        document, too), the customer id and the worst answer.

        Ordered by first failing answer, then session id. JSON pages hold 1,000 rows by default
        (follow `next`); CSV holds every row unless `limit` is given."""
        if store.get_incident(incident_id) is None:
            raise HTTPException(404, f"no incident {incident_id!r}")
        return _session_page(request, response, fmt, limit, cursor,
                             lambda **page: store.incident_sessions(incident_id, **page), f"sessions-{incident_id}")

    @app.get("/v1/sessions", response_model=SessionList, dependencies=auth, tags=["sessions"], responses=csv_doc)
    def sessions(request: Request, response: Response,
                 cluster: Annotated[str, Query(description="cluster id")],
                 since: Annotated[str, Query(description="answers at or after (RFC 3339 with offset)")],
                 until: Annotated[str | None, Query(description="answers before (RFC 3339 with offset)")] = None,
                 below_baseline: Annotated[bool, Query(description="only sessions with a below-baseline "
                                                                   "answer")] = True,
                 fmt: Fmt = None,
                 limit: Annotated[int | None, Query(ge=1, le=SESSION_LIMIT, description=_SESSION_LIMIT_DOC)] = None,
                 cursor: Annotated[str | None, Query(description=_CURSOR_DOC)] = None) -> Any:
        """Sessions with answers in one cluster during a time range (by default only failing ones).

        Ordered by first answer, then session id. JSON pages hold 1,000 rows by default (follow
        `next`, or the `Link` header); CSV holds every row unless `limit` is given."""
        lo, hi = _range(since, until)
        assert lo is not None
        return _session_page(request, response, fmt, limit, cursor,
                             lambda **page: store.sessions(cluster, lo, hi, below_baseline=below_baseline, **page),
                             f"sessions-{cluster}")

    # Confidence gates: POST /v1/gate and /v1/gates (services/gate_api.py).
    from services import gate_api

    gate_api.mount(app, store, ingestor, metrics, auth, clock)

    # Read-only ClickHouse HTTP on the embedded store, for Grafana (services/clickhouse_proxy.py).
    from services import clickhouse_proxy

    clickhouse_proxy.mount(app, store, tokens, clickhouse_proxy.ProxyLimits.of(settings))
    return app


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` under uvicorn on a background thread; yields its base URL (port 0: a free one).

    For tests and embedding; ``faithwatch serve`` runs uvicorn in the foreground instead.
    """
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="faithwatch-api", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the API server did not start on {host}:{port}")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join()
