"""The embedded driver: one process, no broker. Reads JSON Lines, runs the pipeline, writes out.

``replay`` streams a file through every stage in event-time order (records are ordered by their
``timestamp``, ties by ``interaction_id``: :func:`services.flow.event_order`, as every driver),
and hands each output to :class:`services.flow.Outputs`: each incident event to ``alerts_out`` as
one JSON object per line, each scored interaction to ``scored_out``, everything to the store, and
incident events to the notifier. Invalid lines go to the dead-letter file and table with their
reason; the stream goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from pipelines.engine import Output, Pipeline
from pipelines.errors import InvalidRecord
from pipelines.interaction import DeadLetter, Interaction, parse_record
from services.flow import DeadLetterFile, JsonLines, Outputs, Tally, event_order
from services.store.base import Store

__all__ = ["DeadLetterFile", "ReplayStats", "load_ordered", "process_batches", "read_lines", "replay"]

log = logging.getLogger("faithwatch.replay")


@dataclass
class ReplayStats:
    read: int = 0
    valid: int = 0
    invalid: int = 0
    tally: Tally = field(default_factory=Tally)
    events: list = field(default_factory=list)

    def as_dict(self) -> dict:
        t = self.tally
        return {"read": self.read, "valid": self.valid, "invalid": self.invalid,
                "duplicates": t.duplicates, "scored": t.scored,
                "below_baseline": t.below_baseline, "incident_events": len(self.events)}


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if line.strip():
                yield n, line.rstrip(b"\r\n")


def load_ordered(path: Path, clock, dead: list[DeadLetter]) -> list[Interaction]:
    """Parse every line; invalid ones become dead letters; valid ones in :func:`~services.flow.event_order`."""
    valid: list[tuple[int, Interaction]] = []
    for n, raw in read_lines(path):
        try:
            valid.append((n, parse_record(raw)))
        except InvalidRecord as exc:
            log.warning("line %d: %s", n, exc)
            dead.append(DeadLetter.of(exc, raw, received_at=clock(), source=str(path),
                                      position=f"line {n}"))
    valid.sort(key=lambda t: event_order(t[1]))  # stable: a repeated id keeps its file order
    return [i for _, i in valid]


def process_batches(pipeline: Pipeline, batches: Iterable[Sequence[Interaction]], *,
                    overlap: bool = True, now: datetime | None = None) -> Iterator[Output]:
    """:meth:`Pipeline.process` of each batch in turn, then :meth:`Pipeline.flush`: one output per
    batch and one for the flush, in order.

    With ``overlap`` the next batch is embedded and scored (:meth:`Pipeline.prepare`, which reads
    no stream state) on a worker thread while this one is sequenced and its output handled by the
    caller: the sequence half is one thread of Python, so on its own it leaves the other cores
    idle while the embedding runtime waits. Outputs are the same either way (the embedder and
    scorer give the same result for a text whatever its batch, and batches are prepared and
    sequenced in order).
    """
    if not overlap:
        for batch in batches:
            yield pipeline.process(batch, now)
        yield pipeline.flush()
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="faithwatch-prepare") as pool:
        pending: tuple[Future, Output] | None = None
        for batch in batches:
            out = Output()
            following = (pool.submit(pipeline.prepare, pipeline.admit(batch, out, now)), out)
            if pending is not None:
                yield pipeline.sequence_admitted(pending[0].result(), pending[1])
            pending = following
        if pending is not None:
            yield pipeline.sequence_admitted(pending[0].result(), pending[1])
    yield pipeline.flush()


def replay(pipeline: Pipeline, path: Path, *, store: Store | None, dead_letters: DeadLetterFile,
           alerts_out: Path | None = None, scored_out: Path | None = None, batch_size: int = 256,
           progress: bool | None = None, clock=lambda: datetime.now(UTC), notifier=None) -> ReplayStats:
    """Replay ``path``; with a ``notifier`` (:class:`~services.notify.notifier.Notifier`) each
    incident event is also queued for delivery once it is stored (sending happens on the notifier's
    threads, never here)."""
    stats = ReplayStats()
    started = clock()
    dead: list[DeadLetter] = []
    interactions = load_ordered(path, clock, dead)
    stats.invalid = len(dead)
    stats.valid = len(interactions)
    stats.read = stats.valid + stats.invalid
    outputs = Outputs(store=store, notifier=notifier, tally=stats.tally, dead_letter_file=dead_letters,
                      alerts=JsonLines(alerts_out) if alerts_out else None,
                      scored=JsonLines(scored_out) if scored_out else None)
    try:
        outputs.dead_letters(dead)
        # progress None: a bar only when stderr is a terminal.
        bar = tqdm(total=len(interactions), unit="interactions", desc="replay",
                   disable=None if progress is None else not progress)
        batches = [interactions[start:start + batch_size] for start in range(0, len(interactions), batch_size)]
        for k, out in enumerate(process_batches(pipeline, batches, now=started)):
            refused = out.dead_letters(started, str(path))  # valid, but too far ahead of the stream
            if refused:
                stats.valid -= len(refused)
                stats.invalid += len(refused)
                outputs.dead_letters(refused)
            outputs.write(out)
            stats.events += out.events
            bar.update(len(batches[k]) if k < len(batches) else 0)
        if store is not None:
            store.upsert_clusters(list(pipeline.clusters.values()))
        bar.close()
    finally:
        outputs.close()
    return stats
