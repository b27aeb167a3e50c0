"""The notifier: incident events into the outbox, then out to their channels on worker threads.

:meth:`Notifier.submit` routes each event (first matching route of the notify file), and writes
one pending delivery per (event, channel) to the store, skipping keys already there: a replayed
stream, or a restarted process re-emitting its events, pages nobody again. It is one small
store write on the caller's thread; nothing waits for a channel.

Each channel has its own thread: it reads its pending deliveries from the store, sends the due
ones (an incident's events in sequence order: a later event of an incident waits until the
earlier one is sent or given up, so a resolve never overtakes its trigger) and writes each
outcome back. A dead channel holds up only its own thread. Because the work list is the table,
a new notifier on the same store (a restart, or after SIGKILL) sends what was pending.
Alertmanager channels also re-send open incidents every ``alertmanager_refresh_seconds``.
tests/services/notify/test_notifier.py runs notifiers against local HTTP receivers.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

import httpx

from pipelines.records import IncidentEvent
from services.metrics import Metrics
from services.notify import outbox
from services.notify.channels import render
from services.notify.message import Links
from services.notify.notify_file import NotifyFile
from services.notify.transport import Attempt, send
from services.settings import NotifySettings
from services.store.base import Store

log = logging.getLogger("faithwatch.notify")

# Longest a worker sleeps before it looks at the table again (another process may have queued).
_POLL_SECONDS = 5.0


class Notifier:
    """Delivers incident events per ``notify_file`` through the outbox in ``store``."""

    def __init__(self, store: Store, notify_file: NotifyFile, settings: NotifySettings | None = None,
                 metrics: Metrics | None = None, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 rng: random.Random | None = None):
        self.store = store
        self.notify_file = notify_file
        self.settings = settings or NotifySettings()
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.links = Links(self.settings.grafana_url, self.settings.api_url)
        self.backoff = outbox.Backoff(self.settings.backoff_seconds, self.settings.backoff_max_seconds,
                                      self.settings.give_up_seconds)
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._wake = {name: threading.Event() for name in notify_file.channels}
        self._threads = {name: threading.Thread(target=self._run, args=(name,), name=f"faithwatch-notify-{name}",
                                                daemon=True) for name in notify_file.channels}

    # -- the pipeline side ---------------------------------------------------------------------
    def submit(self, events: Sequence[IncidentEvent]) -> int:
        """Queue a delivery of each event to each channel its route names; returns how many were new."""
        if not events:
            return 0
        stored = self.store.delivery_keys([ev.incident_id for ev in events])
        now = self.clock()
        rows = []
        for ev in events:
            for name in self.notify_file.route(ev.to_json_dict()):
                if (ev.incident_id, ev.sequence, name) in stored:
                    continue
                stored.add((ev.incident_id, ev.sequence, name))
                channel = self.notify_file.channels[name]
                skipped = render(ev, channel, self.links, now) is None
                rows.append(outbox.queued(ev, name, channel.type, now, skipped=skipped))
                if skipped:
                    self.metrics.deliveries.labels(channel=name, outcome="skipped").inc()
        self.store.insert_deliveries(rows)
        for row in rows:
            self._wake[row["channel"]].set()
        return len(rows)

    def pending(self) -> int:
        """Deliveries not yet sent, failed or given up (across every channel)."""
        return len(self.store.list_deliveries(status="pending", limit=1_000_000))

    def drain(self, timeout: float | None = None, poll: float = 0.1) -> bool:
        """Wait until no delivery is pending (each sent, failed or given up); False on ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.store.list_deliveries(status="pending", limit=1):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def start(self) -> Self:
        for thread in self._threads.values():
            if not thread.is_alive():
                thread.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the workers (an attempt in flight finishes first); pending deliveries stay queued."""
        self._stop.set()
        for wake in self._wake.values():
            wake.set()
        for thread in self._threads.values():
            if thread.is_alive():
                thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the channel side ----------------------------------------------------------------------
    def _run(self, name: str) -> None:
        refresh = self.settings.alertmanager_refresh_seconds
        if self.notify_file.channels[name].type != "alertmanager":
            refresh = 0.0
        refreshed = time.monotonic()
        with httpx.Client(timeout=self.settings.timeout_seconds) as client:
            while not self._stop.is_set():
                try:
                    wait = self._step(name, client)
                    if refresh:
                        if time.monotonic() - refreshed >= refresh:
                            self._refresh(name, client)
                            refreshed = time.monotonic()
                        wait = min(wait, max(0.0, refreshed + refresh - time.monotonic()))
                except Exception:  # a store hiccup must not end the worker; the rows stay pending
                    log.exception("notify worker %s failed; retrying", name)
                    wait = 1.0
                self._wake[name].wait(wait)
                self._wake[name].clear()

    def _refresh(self, name: str, client: httpx.Client) -> None:
        """Send each open incident's latest delivered event to ``name`` again: Alertmanager ends a
        firing alert it has not heard of for its resolve_timeout. Best effort, not recorded: a
        failed refresh is retried at the next one."""
        channel = self.notify_file.channels[name]
        for row in self.store.latest_deliveries(name):
            if row["latest_status"] != "sent":
                continue  # pending: its delivery is on the way; failed, given up or skipped: not ours to repeat
            ev = IncidentEvent.model_validate_json(row["latest_payload"])
            if ev.status != "open" or self._stop.is_set():
                continue
            request = render(ev, channel, self.links, self.clock())
            if request is not None:
                attempt = send(client, request, self.clock())
                self.metrics.delivery_attempts.labels(channel=name, outcome=f"refresh_{attempt.outcome}").inc()

    def _step(self, name: str, client: httpx.Client) -> float:
        """Send what is due on ``name``; the seconds until the next delivery is due."""
        heads: dict[str, outbox.Row] = {}
        for row in self.store.pending_deliveries(name):
            heads.setdefault(row["incident_id"], row)  # an incident's events go in sequence order
        wait = _POLL_SECONDS
        for row in heads.values():
            if self._stop.is_set():
                break
            now = self.clock()
            if row["next_attempt_at"] > now:
                wait = min(wait, (row["next_attempt_at"] - now).total_seconds())
                continue
            state = self._attempt(name, row, client)
            self.store.insert_deliveries([state])
            if state["status"] == "pending":
                wait = min(wait, max(0.0, (state["next_attempt_at"] - self.clock()).total_seconds()))
            else:
                wait = 0.0  # the incident's next event may be waiting behind this one
                self.metrics.deliveries.labels(channel=name, outcome=state["status"]).inc()
                if state["status"] != "sent":
                    log.warning("delivery %s #%d to %s %s: %s", row["incident_id"], row["sequence"], name,
                                state["status"], state["error"])
        return wait

    def _attempt(self, name: str, row: outbox.Row, client: httpx.Client) -> outbox.Row:
        now = self.clock()
        channel = self.notify_file.channels[name]
        try:
            request = render(outbox.event_of(row), channel, self.links, now)
        except ValueError as exc:
            return outbox.after(row, Attempt("failed", None, f"cannot render: {exc}", None, 0.0), now, self.backoff,
                                self._rng)
        if request is None:
            return {**row, "status": "skipped", "version": row["version"] + 1, "updated_at": now}
        attempt = send(client, request, now)
        self.metrics.delivery_attempts.labels(channel=name, outcome=attempt.outcome).inc()
        self.metrics.delivery_latency.labels(channel=name).observe(attempt.seconds)
        return outbox.after(row, attempt, self.clock(), self.backoff, self._rng)


def deliveries_summary(store: Store, events: Sequence[IncidentEvent]) -> str:
    """How the deliveries of ``events`` ended, e.g. ``3 sent, 1 skipped`` (``none`` without any)."""
    keys = {(ev.incident_id, ev.sequence) for ev in events}
    counts: dict[str, int] = {}
    for row in store.list_deliveries(limit=1_000_000):
        if (row["incident_id"], row["sequence"]) in keys:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return ", ".join(f"{counts[s]} {s}" for s in outbox.STATUSES if s in counts) or "none"
