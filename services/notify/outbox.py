"""The outbox: one row of the store's ``deliveries`` table (migration 0006) per (incident event,
channel), and how a delivery's state moves on after each attempt.

A delivery is queued ``pending`` (version 0). Each attempt writes its new state with the next
version: ``sent``; ``failed`` (the channel refused it: a 4xx other than 429); ``given_up`` (still
failing ``give_up_seconds`` after it was queued; the last attempt is made at that deadline); or
``pending`` again with its ``next_attempt_at`` after an exponential backoff with jitter (or the
``Retry-After`` the channel asked for). A delivery the channel takes no request for (PagerDuty
and Alertmanager on a late update after resolution) is stored ``skipped``. The pure functions
here build the rows; :class:`~services.notify.notifier.Notifier` writes them.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pipelines.records import IncidentEvent
from services.notify.transport import Attempt

Row = dict[str, Any]
STATUSES = ("pending", "sent", "failed", "given_up", "skipped")


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``base * 2**(n-1)`` after the n-th failure, at most ``maximum``,
    times a jitter in [0.5, 1) so that many deliveries failing together do not retry together.

    >>> b = Backoff(base=1.0, maximum=8.0, give_up=60.0)
    >>> [b.delay(n, random.Random(0)) <= 2.0 ** (n - 1) for n in (1, 2, 3)], b.delay(10, random.Random(0)) <= 8.0
    ([True, True, True], True)
    """

    base: float
    maximum: float
    give_up: float

    def delay(self, attempts: int, rng: random.Random) -> float:
        return min(self.maximum, self.base * 2 ** (attempts - 1)) * (0.5 + rng.random() / 2)


def key(row: Row) -> tuple[str, int, str]:
    return row["incident_id"], row["sequence"], row["channel"]


def queued(ev: IncidentEvent, channel: str, channel_type: str, now: datetime, *, skipped: bool = False) -> Row:
    """The first row of a delivery of ``ev`` to ``channel``: pending and due now, or skipped."""
    return {"incident_id": ev.incident_id, "sequence": ev.sequence, "channel": channel,
            "version": 1 if skipped else 0, "channel_type": channel_type, "event": ev.event,
            "status": "skipped" if skipped else "pending", "attempts": 0, "queued_at": now,
            "next_attempt_at": now, "updated_at": now, "http_status": None,
            "error": "the channel takes no request for this event" if skipped else "",
            "payload": json.dumps(ev.to_json_dict(), sort_keys=True)}


def event_of(row: Row) -> IncidentEvent:
    return IncidentEvent.model_validate_json(row["payload"])


def after(row: Row, attempt: Attempt, now: datetime, backoff: Backoff, rng: random.Random) -> Row:
    """The delivery's state after ``attempt`` at ``now``.

    >>> from datetime import UTC
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> row = {"attempts": 0, "version": 0, "queued_at": t0}
    >>> b = Backoff(1.0, 60.0, give_up=30.0)
    >>> after(row, Attempt("retry", 429, "slow down", 7.0, 0.1), t0, b, random.Random(0))["next_attempt_at"] - t0
    datetime.timedelta(seconds=7)
    >>> after(row, Attempt("retry", 503, "", None, 0.1), t0 + timedelta(seconds=30), b, random.Random(0))["status"]
    'given_up'
    >>> after(row, Attempt("failed", 404, "no such hook", None, 0.1), t0, b, random.Random(0))["status"]
    'failed'
    """
    attempts = row["attempts"] + 1
    out = {**row, "attempts": attempts, "version": max(row["version"], row["attempts"]) + 1, "updated_at": now,
           "http_status": attempt.http_status, "error": attempt.error}
    if attempt.outcome != "retry":
        return {**out, "status": attempt.outcome}
    deadline = row["queued_at"] + timedelta(seconds=backoff.give_up)
    if now >= deadline:
        return {**out, "status": "given_up",
                "error": f"gave up after {attempts} attempts over {backoff.give_up:g} s: {attempt.error}"}
    wait = attempt.retry_after if attempt.retry_after is not None else backoff.delay(attempts, rng)
    return {**out, "status": "pending", "next_attempt_at": min(now + timedelta(seconds=wait), deadline)}
