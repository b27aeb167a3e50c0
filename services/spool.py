"""The write-ahead spool: accepted interactions on disk before the server answers 202.

``faithwatch serve`` (embedded ingest) appends every accepted batch to the spool and syncs it to
disk before the request is answered (``POST /v1/traces`` keeps a spool of its own for the requests
whose spans it holds, writing whole lines with :meth:`Spool.append_lines` and reading them back
with :meth:`Spool.recover_lines`: services/otlp.py); the ingest worker takes the batch from memory as before. So
a SIGKILL or a power loss after a 202 loses nothing: the next start replays the spool into the
pipeline before it takes new requests, and what was already processed is dropped downstream (the
pipeline's seen ids, restored from the checkpoint, and the store, which skips an
``interaction_id`` it holds).

- Files: ``DATA_DIR/spool/<12-digit number>.jsonl`` (directory 0700, files 0600), one record a
  line, as :meth:`~pipelines.interaction.Interaction.to_record` gives it (what the Kafka ingest
  publishes). A segment takes appends until it holds ``segment_bytes``; the next append opens a
  new one. Segments of a previous run are never appended to (their tail may be torn).
- Durability: :meth:`Spool.append` writes the batch and returns once an ``fsync`` of the segment
  covered it. Concurrent appends share fsyncs (group commit): a writer that finds an fsync running
  waits for it, and the next one covers everything written meanwhile.
- Marks: every append gets the next mark (1, 2, ...); each segment of a previous run gets one mark
  (:meth:`Spool.recover` hands its records back under it). The ingest worker reports each mark
  :meth:`Spool.done` once the pipeline has taken its records; :meth:`Spool.settled` is the mark up
  to which every append is done. After saving a pipeline checkpoint the worker calls
  :meth:`Spool.trim` with the mark that was settled when the state was taken: the segments whose
  appends are all ``<=`` it are deleted, their records being in the store or in the saved state
  (waiting for the bootstrap), and the detector's memory of them saved.
- Bounded: an append that would take the spool past ``max_bytes`` raises :class:`SpoolFull` and
  writes nothing (the API answers 503 with Retry-After).
- A line that cannot be read back (a torn tail after a crash mid-write: that append was never
  acknowledged) becomes a dead letter (source ``spool``, position ``<file> line N``) and is logged;
  the rest of the spool is replayed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipelines.errors import FaithwatchError, InvalidRecord
from pipelines.interaction import DeadLetter, Interaction, parse_record
from services.private import private_dir

log = logging.getLogger("faithwatch.spool")

SEGMENT_BYTES = 4 * 1024 * 1024
_SUFFIX = ".jsonl"


class SpoolFull(FaithwatchError):
    """The spool holds ``max_bytes``: nothing more is accepted until processed records are trimmed."""


@dataclass
class _Segment:
    number: int
    path: Path
    size: int
    last_mark: int  # the mark of its last append (0: none yet)


@dataclass(frozen=True)
class Recovered:
    """One segment of a previous run: its records (in the order appended) and its mark."""

    mark: int
    path: Path
    records: list[Interaction]
    dead_letters: list[DeadLetter]


def encode(records: Sequence[Interaction]) -> bytes:
    """``records`` as spool lines (one JSON object each)."""
    return b"".join(json.dumps(r.to_record(), separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
                    for r in records)


class Spool:
    def __init__(self, directory: Path, *, max_bytes: int, segment_bytes: int = SEGMENT_BYTES,
                 fsync: Callable[[int], None] = os.fsync):
        self.directory = private_dir(Path(directory))
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._fsync = fsync
        self._cond = threading.Condition()
        self._segments: list[_Segment] = []
        for number, path in sorted((int(p.stem), p) for p in self.directory.glob(f"*{_SUFFIX}") if p.stem.isdigit()):
            self._segments.append(_Segment(number, path, path.stat().st_size, len(self._segments) + 1))
        self._recoverable = list(self._segments)
        self._next_number = self._segments[-1].number + 1 if self._segments else 1
        self._written = len(self._segments)  # the last mark given
        self._synced = self._written
        self._syncing = False
        self._fd: int | None = None  # the open segment (the last of _segments) of this run
        # Marks given but not yet reported processed (done()): no segment holding one is trimmed.
        self._pending: set[int] = {s.last_mark for s in self._segments}
        self.fsyncs = 0

    # -- state -----------------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        """Bytes the spool holds on disk."""
        with self._cond:
            return sum(s.size for s in self._segments)

    @property
    def segments(self) -> list[Path]:
        with self._cond:
            return [s.path for s in self._segments]

    # -- replay ----------------------------------------------------------------------------------
    def recover_lines(self) -> Iterator[tuple[int, Path, list[tuple[int, bytes]]]]:
        """The segments a previous run left, oldest first: (mark, path, its non-blank lines with their
        numbers). A line without its newline is a torn tail (that append was never acknowledged)."""
        for seg in self._recoverable:
            with seg.path.open("rb") as fh:
                lines = [(n, line) for n, line in enumerate(fh, start=1) if line.strip()]
            yield seg.last_mark, seg.path, lines
        self._recoverable = []

    def recover(self, received_at: datetime) -> Iterator[Recovered]:
        """The segments a previous run left, oldest first, each read back whole as interactions.
        Lines that cannot be read are dead letters (``received_at`` is their time)."""
        for mark, path, lines in self.recover_lines():
            records: list[Interaction] = []
            dead: list[DeadLetter] = []
            for n, line in lines:
                try:
                    records.append(parse_record(line.rstrip(b"\n")))
                except InvalidRecord as exc:
                    torn = "" if line.endswith(b"\n") else " (torn: the write did not complete)"
                    log.warning("spool %s line %d cannot be read%s: %s: %s; dead-lettered", path.name, n,
                                torn, exc.field, exc.reason)
                    dead.append(DeadLetter.of(InvalidRecord(exc.field, exc.reason + torn, exc.interaction_id),
                                              line, received_at=received_at, source="spool",
                                              position=f"{path.name} line {n}"))
            yield Recovered(mark, path, records, dead)

    # -- writing ---------------------------------------------------------------------------------
    def append(self, records: Sequence[Interaction]) -> int:
        """Write ``records`` and sync them to disk; their mark. Raises :class:`SpoolFull`."""
        return self.append_lines(encode(records))

    def append_lines(self, data: bytes) -> int:
        """Write ``data`` (whole lines, each ending in a newline) and sync it to disk; its mark.
        Raises :class:`SpoolFull`."""
        with self._cond:
            held = sum(s.size for s in self._segments)
            if held + len(data) > self.max_bytes:
                raise SpoolFull(f"the spool holds {held} bytes, limit {self.max_bytes} (api.spool_max_bytes) "
                                f"until processed records are checkpointed; retry shortly")
            if self._fd is None or self._segments[-1].size >= self.segment_bytes:
                self._open_segment()
            assert self._fd is not None
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            self._written += 1
            mark = self._written
            self._pending.add(mark)
            seg = self._segments[-1]
            seg.size += len(data)
            seg.last_mark = mark
            self._sync_until(mark)
        return mark

    def _sync_until(self, mark: int) -> None:
        """With the lock held: return once an fsync begun after ``mark`` was written has finished."""
        while self._synced < mark:
            if self._syncing:
                self._cond.wait()
                continue
            self._syncing = True
            fd, upto = self._fd, self._written
            self._cond.release()
            try:
                self._fsync(fd)
            finally:
                self._cond.acquire()
                self._syncing = False
                self._cond.notify_all()
            self.fsyncs += 1
            self._synced = max(self._synced, upto)

    def _open_segment(self) -> None:
        """With the lock held: close this run's open segment (synced) and start the next."""
        while self._syncing:  # the running fsync uses the open descriptor
            self._cond.wait()
        self._close_fd()
        number, self._next_number = self._next_number, self._next_number + 1
        path = self.directory / f"{number:012d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._segments.append(_Segment(number, path, 0, self._written))
        self._sync_directory()  # the new file's name survives a crash too

    def _close_fd(self) -> None:
        if self._fd is not None:
            if self._synced < self._written:
                self._fsync(self._fd)
                self.fsyncs += 1
                self._synced = self._written
            os.close(self._fd)
            self._fd = None

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            self._fsync(fd)
        finally:
            os.close(fd)

    # -- trimming --------------------------------------------------------------------------------
    def done(self, mark: int) -> None:
        """The records of ``mark`` went through the pipeline (stored, or held in its state)."""
        with self._cond:
            self._pending.discard(mark)

    def settled(self) -> int:
        """The highest mark up to which every append is :meth:`done` (appends still being written
        or waiting for the worker hold it back, whatever order they finish in)."""
        with self._cond:
            return min(self._pending) - 1 if self._pending else self._written

    def trim(self, upto: int) -> int:
        """Delete the segments whose appends all have marks ``<= upto``; how many were deleted."""
        with self._cond:
            while self._syncing:
                self._cond.wait()
            deleted = 0
            while self._segments and self._segments[0].last_mark <= upto:
                seg = self._segments.pop(0)
                if not self._segments:
                    self._close_fd()  # the open one: the next append starts a new segment
                seg.path.unlink(missing_ok=True)
                deleted += 1
            if deleted:
                log.debug("spool: %d segments trimmed up to mark %d", deleted, upto)
            return deleted

    def close(self) -> None:
        with self._cond:
            while self._syncing:
                self._cond.wait()
            self._close_fd()
