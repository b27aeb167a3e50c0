"""One delivery attempt over HTTP, and what its answer means.

- 2xx: ``sent``.
- 429: ``retry``, after the ``Retry-After`` the receiver asked for (seconds or an HTTP date).
- 5xx, a network error or a timeout: ``retry``.
- any other status (400 a bad request, 403/404 a revoked or mistyped URL, ...): ``failed`` at once,
  never retried: it would fail the same way again.

httpx exceptions stop here: the caller sees an :class:`Attempt`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx

from services.notify.message import Request

_BODY_IN_ERROR = 300


@dataclass(frozen=True)
class Attempt:
    outcome: Literal["sent", "retry", "failed"]
    http_status: int | None
    error: str
    retry_after: float | None
    seconds: float


def retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    >>> from datetime import UTC
    >>> retry_after("7", datetime(2026, 1, 1, tzinfo=UTC)), retry_after(None, datetime(2026, 1, 1, tzinfo=UTC))
    (7.0, None)
    >>> retry_after("Thu, 01 Jan 2026 00:00:30 GMT", datetime(2026, 1, 1, tzinfo=UTC))
    30.0
    """
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


def send(client: httpx.Client, request: Request, now: datetime) -> Attempt:
    """POST ``request`` once with ``client`` (its timeout applies)."""
    started = time.perf_counter()
    try:
        response = client.post(request.url, content=request.body, headers=request.headers)
    except httpx.TimeoutException as exc:
        return Attempt("retry", None, f"timeout: {type(exc).__name__}", None, time.perf_counter() - started)
    except httpx.HTTPError as exc:
        return Attempt("retry", None, f"network error: {type(exc).__name__}: {exc}", None,
                       time.perf_counter() - started)
    seconds = time.perf_counter() - started
    status = response.status_code
    if 200 <= status < 300:
        return Attempt("sent", status, "", None, seconds)
    text = " ".join(response.text.split())[:_BODY_IN_ERROR]
    error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    if status == 429:
        return Attempt("retry", status, error, retry_after(response.headers.get("Retry-After"),
                                                           now), seconds)
    if status >= 500:
        return Attempt("retry", status, error, None, seconds)
    return Attempt("failed", status, error, None, seconds)
