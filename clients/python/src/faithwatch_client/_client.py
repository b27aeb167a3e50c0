"""The client: a bounded buffer, one background sender, retries with backoff."""

from __future__ import annotations

import atexit
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

log = logging.getLogger("faithwatch_client")

ON_FULL = ("drop_new", "drop_oldest", "block")
# Answers worth another attempt: the server is busy or briefly away. Everything else (400, 401,
# 403, 415, ...) will not change by resending.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class FaithwatchClientError(Exception):
    """Root of the errors this client raises or reports to ``on_error``."""


class BufferFull(FaithwatchClientError):
    """``on_full="block"`` and no room came within ``block_timeout``."""


class SendFailed(FaithwatchClientError):
    """A batch was given up: a permanent error, or retries exhausted. ``status`` is the last HTTP
    status (None after a connection error)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class Stats:
    """What happened to the records given to :meth:`Client.log` so far."""

    accepted: int = 0  # taken into the buffer
    sent: int = 0  # delivered to the server (202), valid or not
    invalid: int = 0  # of those, refused by the server's contract check (dead letters there)
    dropped: int = 0  # lost to a full buffer (on_full drop_new / drop_oldest)
    failed: int = 0  # in batches given up (see on_error)
    retries: int = 0  # attempts repeated after a retryable answer or a connection error


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise TypeError(f"datetime {value.isoformat()} has no UTC offset; faithwatch needs one")
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _as_record(interaction: Any) -> dict:
    """A dict, or an object with ``to_record()`` (faithwatch's Interaction) / ``model_dump()`` (pydantic)."""
    if isinstance(interaction, Mapping):
        record = dict(interaction)
    elif hasattr(interaction, "to_record"):
        record = interaction.to_record()
    elif hasattr(interaction, "model_dump"):
        record = interaction.model_dump(mode="json", exclude_none=True)
    else:
        raise TypeError(f"an interaction is a dict (or has to_record/model_dump), not {type(interaction).__name__}")
    # Serialised now: a later change to the caller's dict does not change what is sent, and a value
    # JSON cannot carry fails here, in the caller's thread, not in the sender.
    return json.loads(json.dumps(record, default=_json_default))


def retry_after(value: str | None,
                now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date), None when absent or unreadable.

    >>> retry_after("3"), retry_after(None), retry_after("soon")
    (3.0, None, None)
    >>> retry_after("Wed, 21 Oct 2026 07:28:05 GMT", now=lambda: datetime(2026, 10, 21, 7, 28, tzinfo=timezone.utc))
    5.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now()).total_seconds())


class Client:
    """Sends interactions to ``POST {url}/v1/interactions`` in batches, from a background thread.

    ``log`` never waits for the network: it puts the record in a buffer of at most ``max_buffer``
    records and returns. The sender sends a batch once ``batch_size`` records wait, or
    ``flush_interval`` seconds after the first of them arrived, or on :meth:`flush`.

    When the buffer is full, ``on_full`` decides:

    - ``"drop_new"`` (default): the new record is not taken; ``log`` returns False.
    - ``"drop_oldest"``: the oldest waiting record is dropped to make room.
    - ``"block"``: ``log`` waits up to ``block_timeout`` seconds for room, then raises
      :class:`BufferFull`.

    Every drop is counted in ``stats.dropped`` and logged (at most once per ``flush_interval``).
    The product never stalls on faithwatch unless it asks to (``"block"``).

    Retries: a connection error or a 408/429/5xx answer is retried after ``Retry-After`` when the
    server sends one (faithwatch does with 503 when its queue is full), otherwise after an
    exponential backoff (``backoff``, doubled each time up to ``backoff_max``, with jitter), at most
    ``max_retries`` times; then the batch is given up. A 413 splits the batch in two. Other answers
    (400, 401, ...) give the batch up at once. A given-up batch is counted in ``stats.failed`` and
    passed to ``on_error(records, error)``.
    """

    def __init__(self, url: str, token: str | None = None, *, batch_size: int = 500,
                 flush_interval: float = 1.0, max_buffer: int = 10_000, on_full: str = "drop_new",
                 block_timeout: float = 10.0, timeout: float = 10.0, max_retries: int = 8, backoff: float = 0.5,
                 backoff_max: float = 30.0, on_error: Callable[[list, Exception], None] | None = None,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] | None = None):
        if on_full not in ON_FULL:
            raise ValueError(f"on_full={on_full!r}: use one of {', '.join(ON_FULL)}")
        if batch_size < 1 or max_buffer < 1:
            raise ValueError("batch_size and max_buffer must be at least 1")
        self.url = url.rstrip("/") + "/v1/interactions"
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffer = max_buffer
        self.on_full = on_full
        self.block_timeout = block_timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.on_error = on_error
        self.stats = Stats()
        headers = {"Content-Type": "application/json", "User-Agent": "faithwatch-client/0.1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(headers=headers, timeout=timeout, transport=transport)
        self._buffer: deque = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._flush_wanted = False
        self._finished = 0  # records accepted and since sent, failed or dropped: flush() waits on it
        self._first_at: float | None = None  # when the oldest waiting record arrived
        self._last_drop_log = -float("inf")
        self._stop = threading.Event()
        self._sleep = sleep if sleep is not None else self._stop.wait
        self._thread = threading.Thread(target=self._run, name="faithwatch-client", daemon=True)
        self._thread.start()
        atexit.register(self.close, 10.0)  # at exit: what is buffered gets up to 10 s to go out

    # -- the producer's side -------------------------------------------------------------------
    def log(self, interaction: Any) -> bool:
        """Buffer one interaction (a dict in the input contract); False if the full buffer dropped it."""
        record = _as_record(interaction)
        with self._cond:
            if self._closing:
                raise FaithwatchClientError("the client is closed")
            if len(self._buffer) >= self.max_buffer:
                if self.on_full == "drop_new":
                    self._dropped(1)
                    return False
                if self.on_full == "drop_oldest":
                    self._buffer.popleft()
                    self._dropped(1)
                    self._finished += 1
                elif not self._cond.wait_for(lambda: len(self._buffer) < self.max_buffer or self._closing,
                                             self.block_timeout):
                    raise BufferFull(f"no room in the buffer ({self.max_buffer} records) within "
                                     f"{self.block_timeout} s")
            if self._first_at is None:
                self._first_at = time.monotonic()
            self._buffer.append(record)
            self.stats.accepted += 1
            self._cond.notify_all()
        return True

    def log_many(self, interactions: Iterable[Any]) -> int:
        """Buffer several interactions; how many were taken (see ``on_full``)."""
        return sum(1 for i in interactions if self.log(i))

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything buffered so far and wait until it is sent or given up; False on timeout."""
        with self._cond:
            target = self.stats.accepted
            self._flush_wanted = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._finished >= target or not self._thread.is_alive(), timeout)

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the sender and release the connection. Called at exit too."""
        if self._closing:
            return
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._stop.set()
        self._thread.join(timeout)
        self._http.close()
        atexit.unregister(self.close)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _dropped(self, n: int) -> None:
        self.stats.dropped += n
        now = time.monotonic()
        if now - self._last_drop_log >= max(self.flush_interval, 1.0):
            self._last_drop_log = now
            log.warning("faithwatch client: buffer full (%d records), %d dropped so far (on_full=%s)",
                        self.max_buffer, self.stats.dropped, self.on_full)

    # -- the sender ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._buffer and (len(self._buffer) >= self.batch_size or self._flush_wanted
                                         or self._closing
                                         or time.monotonic() - (self._first_at or 0) >= self.flush_interval):
                        break
                    if not self._buffer:
                        self._flush_wanted = False
                        if self._closing:
                            return
                        self._cond.wait()
                    else:
                        self._cond.wait(max(0.0, self.flush_interval - (time.monotonic() - self._first_at)))
                batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
                self._first_at = time.monotonic() if self._buffer else None
                self._cond.notify_all()  # room for a blocked log()
            try:
                self._send(batch)
            except Exception as exc:  # the sender must outlive anything; the batch is reported
                self._give_up(batch, exc)
            with self._cond:
                self._finished += len(batch)
                self._cond.notify_all()

    def _send(self, batch: list) -> None:
        body = json.dumps(batch).encode()
        attempt = 0
        while True:
            status = None
            wait = None
            try:
                response = self._http.post(self.url, content=body)
                status = response.status_code
            except httpx.HTTPError as exc:
                error: Exception = exc
            else:
                if status == 202 or status == 200:
                    self._delivered(batch, response)
                    return
                if status == 413 and len(batch) > 1:
                    half = len(batch) // 2
                    self._send(batch[:half])
                    self._send(batch[half:])
                    return
                error = SendFailed(f"HTTP {status}: {response.text[:300]}", status)
                if status not in RETRY_STATUSES:
                    self._give_up(batch, error)
                    return
                wait = retry_after(response.headers.get("retry-after"))
            if attempt >= self.max_retries or self._stop.is_set():
                self._give_up(batch, error)
                return
            if wait is None:
                wait = min(self.backoff_max, self.backoff * 2 ** attempt) * random.uniform(0.8, 1.0)
            attempt += 1
            self.stats.retries += 1
            log.info("faithwatch client: %s; retry %d of %d in %.1f s", error, attempt, self.max_retries, wait)
            self._sleep(wait)

    def _delivered(self, batch: list, response: httpx.Response) -> None:
        self.stats.sent += len(batch)
        try:
            result = response.json()
        except ValueError:
            return
        invalid = int(result.get("invalid") or 0) if isinstance(result, dict) else 0
        if invalid:
            self.stats.invalid += invalid
            first = (result.get("errors") or [{}])[0]
            log.warning("faithwatch client: %d of %d records refused by the server (first: %s: %s); they are in its "
                        "dead letters", invalid, len(batch), first.get("field"), first.get("reason"))

    def _give_up(self, batch: list, error: Exception) -> None:
        self.stats.failed += len(batch)
        log.error("faithwatch client: %d records given up: %s", len(batch), error)
        if self.on_error is not None:
            try:
                self.on_error(batch, error)
            except Exception:
                log.exception("faithwatch client: on_error raised")
