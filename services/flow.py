"""One flow for every driver: the order the stateful half sees records in, and where a pipeline's
outputs go.

``replay`` (:mod:`services.embedded`), the HTTP ingest worker (:mod:`services.ingest`) and the
Kafka sequence stage (:mod:`services.kafka.app`) differ in where records come from, not in what
happens to what the pipeline makes of them:

- :func:`event_order`: records are sequenced by event time, ties by ``interaction_id``. A line
  number or an arrival order is not something every driver knows (the Kafka score stage
  interleaves partitions), so no driver uses one, and equal timestamps give the same incidents
  everywhere.
- :class:`Tally`: the counts each driver reports (``replay``'s summary line, the API's pipeline
  totals, the worker's counts).
- :class:`Outputs`: the fan-out of each :class:`~pipelines.engine.Output`: the store (clusters,
  scored interactions, incident events), ``--alerts-out`` / ``--scored-out`` JSON Lines, the
  notifier's outbox, Prometheus metrics and a tally. A driver builds one with the sinks it has
  (the Kafka sequence stage has no store: its topics' sinks write it) and hands it every output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipelines.engine import Output
from pipelines.interaction import DeadLetter, Interaction
from pipelines.records import ClusterInfo, IncidentEvent
from services.metrics import Metrics
from services.private import private_append, private_dir
from services.store.base import Store


def event_order(i: Interaction) -> tuple[datetime, str]:
    """The key every driver sorts a batch by before the stateful half (a stable sort: a repeated
    id keeps its arrival order, and the pipeline counts the later copies as duplicates)."""
    return i.timestamp, i.interaction_id


def event_key(row: dict) -> tuple[str, int]:
    """An incident event's identity: (incident_id, sequence)."""
    return row["incident_id"], int(row["sequence"])


@dataclass
class Tally:
    """What the pipeline did with what a driver gave it."""

    scored: int = 0
    duplicates: int = 0
    rejected: int = 0  # valid records the pipeline refused (timestamp too far ahead): dead letters
    below_baseline: int = 0
    incident_events: dict[str, int] = field(default_factory=lambda: {"opened": 0, "updated": 0, "resolved": 0})

    def add(self, out: Output) -> None:
        self.scored += len(out.scored)
        self.duplicates += out.duplicates
        self.rejected += len(out.rejected)
        self.below_baseline += sum(1 for s in out.scored if s.below_baseline)
        for ev in out.events:
            self.incident_events[ev.event] = self.incident_events.get(ev.event, 0) + 1

    @property
    def events(self) -> int:
        return sum(self.incident_events.values())


class JsonLines:
    """Rows (``to_json_dict()``, sorted keys) written one JSON object a line, flushed per write.

    A new file by default; with ``append`` the file keeps what it holds (a restarted worker's
    lines), and with ``key`` a row whose key the file already holds, or that was written, is not
    written again, so a re-emitted incident event leaves the file as it was.
    """

    def __init__(self, path: Path, *, append: bool = False, key: Callable[[dict], Hashable] | None = None):
        self.path = Path(path)
        self.key = key
        self.seen: set = set()
        if key is not None and append and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    self.seen.add(key(json.loads(line)))
                except (ValueError, KeyError, TypeError):
                    continue
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a" if append else "w", encoding="utf-8")

    def write(self, rows: Iterable[Any]) -> int:
        lines = []
        for row in rows:
            d = row.to_json_dict()
            if self.key is not None:
                k = self.key(d)
                if k in self.seen:
                    continue
                self.seen.add(k)
            lines.append(json.dumps(d, sort_keys=True) + "\n")
        if lines:
            self._fh.writelines(lines)
            self._fh.flush()
        return len(lines)

    def close(self) -> None:
        self._fh.close()


class DeadLetterFile:
    """Dead letters as JSON Lines under the data dir (the store keeps them too)."""

    def __init__(self, path: Path):
        self.path = path

    def write(self, letters: list[DeadLetter]) -> None:
        if not letters:
            return
        private_dir(self.path.parent)
        with private_append(self.path) as fh:
            for d in letters:
                fh.write(json.dumps(d.model_dump(mode="json"), sort_keys=True) + "\n")


@dataclass
class Outputs:
    """Where a driver's pipeline outputs go; every sink is optional.

    :meth:`write` stores first (clusters, then scored interactions, then incident events), then
    queues the incident events for delivery, then writes the files, then counts: an event in
    ``--alerts-out`` is stored and queued. ``notifier`` may be swapped while running (the Kafka worker has
    one only while it holds the sequence stage).
    """

    store: Store | None = None
    alerts: JsonLines | None = None
    scored: JsonLines | None = None
    notifier: Any = None  # services.notify.notifier.Notifier
    metrics: Metrics | None = None
    tally: Tally | None = None
    dead_letter_file: DeadLetterFile | None = None
    queued: int = 0  # deliveries the notifier queued (new ones only)

    def write(self, out: Output, clusters: list[ClusterInfo] | None = None) -> None:
        """Fan ``out`` out; ``clusters`` (default ``out.clusters``) are the cluster rows to store."""
        clusters = out.clusters if clusters is None else clusters
        if self.store is not None:
            if clusters:
                self.store.upsert_clusters(clusters)
            if out.scored:
                self.store.insert_interactions(out.scored)
            if out.events:
                self.store.insert_incident_events(out.events)
        self.notify(out.events)
        if self.alerts is not None:
            self.alerts.write(out.events)
        if self.scored is not None:
            self.scored.write(out.scored)
        if self.metrics is not None:
            below = sum(1 for s in out.scored if s.below_baseline)
            self.metrics.scored.inc(len(out.scored))
            self.metrics.duplicates.inc(out.duplicates)
            self.metrics.invalid.inc(len(out.rejected))
            self.metrics.below_baseline.inc(below)
            for ev in out.events:
                self.metrics.incident_events.labels(kind=ev.event).inc()
        if self.tally is not None:
            self.tally.add(out)

    def notify(self, events: list[IncidentEvent]) -> None:
        notifier = self.notifier
        if notifier is not None and events:
            self.queued += notifier.submit(events)

    def dead_letters(self, letters: list[DeadLetter]) -> None:
        if self.dead_letter_file is not None:
            self.dead_letter_file.write(letters)
        if self.store is not None and letters:
            self.store.insert_dead_letters(letters)

    def close(self) -> None:
        for f in (self.alerts, self.scored):
            if f is not None:
                f.close()
