"""The sequence stage without the broker: a reorder buffer in front of the stateful half of the
pipeline, its state, and that state cut into checkpoint chunks.

The score stage runs in parallel over the partitions of the interactions topic, so prepared
records reach the (single) sequence stage interleaved. :class:`ReorderBuffer` puts them back in
event-time order (ties: ``interaction_id``): a record is released once every source partition's
watermark (the highest event time the score stage has processed there) is past it, or when the
stream goes idle (:meth:`Sequencer.release` with ``force``). With each source partition in event
time order, the pipeline then sees exactly the order the embedded driver's sort gives, and so
finds the same clusters and incidents. A record older than what was already released (late) is
processed when it arrives, out of order, and counted.

:class:`Sequencer` adds the offset of the last ``prepared`` message its state includes: after a
restore, messages at or below it are skipped, so redelivery changes nothing.

>>> chunks, manifest = checkpoint_entries({"a": 1}, generation=3, offset=41, chunk_bytes=8)
>>> stored = dict(chunks) | {MANIFEST_KEY: manifest}
>>> state, m = read_checkpoint(stored.get)
>>> state, m["generation"], m["offset"], all(k.startswith("state/1/") for k, _ in chunks)
({'a': 1}, 3, 41, True)
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import heapq
import json
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pipelines.engine import Output, Pipeline
from pipelines.errors import StateError
from services.kafka.messages import prepared_of

log = logging.getLogger("faithwatch.kafka.sequence")

MANIFEST_KEY = "manifest"
# Kafka's default largest message is 1 MB; a chunk (base64: 4/3 of this) stays below 512 KB.
CHUNK_BYTES = 360_000


class ReorderBuffer:
    """Prepared-record messages held until every source partition's watermark has passed them."""

    def __init__(self, partitions: int):
        self.partitions = partitions
        self.watermarks: dict[int, datetime] = {}
        self._heap: list[tuple[datetime, str, int, dict]] = []
        self._n = 0
        self.released: tuple[datetime, str] | None = None
        self.late = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, msg: dict) -> None:
        i = msg["interaction"]
        key = (datetime.fromisoformat(i["timestamp"]), i["interaction_id"])  # services.flow.event_order, undecoded
        if self.released is not None and key < self.released:
            self.late += 1
        self._n += 1
        heapq.heappush(self._heap, (*key, self._n, msg))

    def watermark(self, partition: int, event_time: datetime) -> None:
        old = self.watermarks.get(partition)
        if old is None or event_time > old:
            self.watermarks[partition] = event_time

    @property
    def frontier(self) -> datetime | None:
        """Records strictly older than this are complete (None: a partition has sent nothing yet)."""
        if any(p not in self.watermarks for p in range(self.partitions)):
            return None
        return min(self.watermarks[p] for p in range(self.partitions))

    def release(self, force: bool = False) -> list[dict]:
        """The records now complete (all of them with ``force``), in event-time order."""
        frontier = self.frontier
        out = []
        while self._heap and (force or (frontier is not None and self._heap[0][0] < frontier)):
            ts, iid, _, msg = heapq.heappop(self._heap)
            out.append(msg)
            if self.released is None or (ts, iid) > self.released:
                self.released = (ts, iid)
        return out

    def to_state(self) -> dict:
        return {"partitions": self.partitions,
                "watermarks": {str(p): t.isoformat() for p, t in self.watermarks.items()},
                "pending": [m for *_, m in sorted(self._heap)],
                "released": None if self.released is None else [self.released[0].isoformat(), self.released[1]],
                "late": self.late}

    @classmethod
    def from_state(cls, state: dict) -> ReorderBuffer:
        self = cls(int(state["partitions"]))
        self.watermarks = {int(p): datetime.fromisoformat(t) for p, t in state["watermarks"].items()}
        late = int(state["late"])
        for m in state["pending"]:
            self.add(m)
        if state["released"] is not None:
            self.released = (datetime.fromisoformat(state["released"][0]), state["released"][1])
        self.late = late
        return self


class Sequencer:
    """The reorder buffer, the stateful half of the pipeline, and the last offset they include."""

    KIND = "KafkaSequencer"
    STATE_VERSION = 1

    def __init__(self, pipeline: Pipeline, partitions: int, reorder: ReorderBuffer | None = None,
                 offset: int = -1):
        self.pipeline = pipeline
        self.reorder = reorder or ReorderBuffer(partitions)
        if self.reorder.partitions != partitions:
            raise StateError(f"the checkpoint was written for {self.reorder.partitions} interaction "
                             f"partitions, the settings say {partitions}")
        self.offset = offset
        self.skipped = 0

    def add(self, msg: dict, offset: int) -> bool:
        """Take one ``prepared`` message; False (and nothing changes) if the state already has it."""
        if offset <= self.offset:
            self.skipped += 1
            return False
        self.offset = offset
        if msg.get("type") == "record":
            self.reorder.add(msg)
        elif msg.get("type") == "watermark":
            self.reorder.watermark(int(msg["partition"]), datetime.fromisoformat(msg["event_time"]))
        elif msg.get("type") != "tick":
            log.warning("prepared offset %d: unknown message type %r, skipped", offset, msg.get("type"))
        return True

    def add_all(self, items: Iterable[tuple[dict, int]]) -> int:
        return sum(self.add(m, o) for m, o in items)

    def release(self, force: bool = False, now: datetime | None = None) -> Output:
        """Run the sequence half on what the reorder buffer releases. ``force`` (the stream is
        idle): release everything, and fit the clusters on what waits for the bootstrap, as the
        embedded driver does at the end of a file. ``now`` (default: the wall clock) is the time
        a record far ahead of the stream is compared with, as the embedded drivers do."""
        out = self.pipeline.sequence([prepared_of(m) for m in self.reorder.release(force)],
                                     datetime.now(UTC) if now is None else now)
        if force:
            out.extend(self.pipeline.flush())
        return out

    @property
    def idle_work(self) -> bool:
        """Whether a forced release would do anything."""
        return bool(len(self.reorder)) or self.pipeline.waiting > 0

    def to_state(self) -> dict:
        return {"kind": self.KIND, "version": self.STATE_VERSION, "offset": self.offset,
                "reorder": self.reorder.to_state(), "pipeline": self.pipeline.to_state()}

    @classmethod
    def from_state(cls, state: dict, build_pipeline: Callable[[dict], Pipeline], partitions: int) -> Sequencer:
        if state.get("kind") != cls.KIND or state.get("version") != cls.STATE_VERSION:
            raise StateError(f"not a {cls.KIND} v{cls.STATE_VERSION} state")
        return cls(build_pipeline(state["pipeline"]), partitions, ReorderBuffer.from_state(state["reorder"]),
                   int(state["offset"]))


def checkpoint_entries(state: dict, *, generation: int, offset: int, chunk_bytes: int = CHUNK_BYTES,
                       compresslevel: int = 6) -> tuple[list[tuple[str, str]], dict]:
    """``state`` gzip'd and cut into chunks (base64 text, keys under the generation's slot), and the
    manifest (generation, slot, chunk count, offset, checksum).

    Write the chunks first and the manifest last: until the manifest is written, readers see the
    previous generation, whose chunks live in the other slot and are untouched.
    """
    blob = gzip.compress(json.dumps(state, separators=(",", ":")).encode(), compresslevel=compresslevel)
    parts = [blob[k:k + chunk_bytes] for k in range(0, len(blob), chunk_bytes)] or [b""]
    slot = generation % 2
    entries = [(f"state/{slot}/{k}", base64.b64encode(part).decode("ascii")) for k, part in enumerate(parts)]
    manifest = {"generation": generation, "slot": slot, "chunks": len(parts), "offset": offset,
                "bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
    return entries, manifest


def read_checkpoint(get: Callable[[str], Any]) -> tuple[dict, dict] | None:
    """The state and manifest the stored manifest names; None when nothing was checkpointed."""
    raw = get(MANIFEST_KEY)
    if raw is None:
        return None
    manifest = json.loads(raw) if isinstance(raw, str | bytes) else dict(raw)
    parts = [get(f"state/{manifest['slot']}/{k}") for k in range(manifest["chunks"])]
    if any(p is None for p in parts):
        raise StateError(f"checkpoint generation {manifest['generation']}: a chunk is missing")
    blob = b"".join(base64.b64decode(p) for p in parts)
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise StateError(f"checkpoint generation {manifest['generation']}: chunks do not match the manifest")
    return json.loads(gzip.decompress(blob)), manifest
