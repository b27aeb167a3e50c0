"""The confidence gate's cluster model over Kafka: the sequence stage publishes it, a Kafka-mode API follows it.

``POST /v1/gate`` places a query among the clusters (pipelines/gating.py). In embedded mode the
ingest thread hands the gate an immutable :class:`~pipelines.gating.ClusterModel` after each
batch; in Kafka mode the clusters live in the worker holding the sequence stage, so that worker
publishes the model to ``kafka.gate_model_topic`` and the API process follows the topic:

- **What**: :meth:`ClusterModel.to_state` (cluster ids, centroids exact as base64 float arrays,
  families, categories, the clusterer's thresholds) and the name of the embedding model: JSON in
  a gzip container (stored, not compressed), cut into chunks below 512 KB (Kafka's default
  largest message is 1 MB) under one of two slots, then a manifest naming generation, slot,
  chunk count and the SHA-256 of the whole: the checkpoints' encoding
  (:func:`~services.kafka.sequencer.checkpoint_entries`). One partition, compacted: the keys are
  ``manifest`` and ``state/{slot}/{k}``, so the topic holds about two models whatever its age.
- **When**: at the sequence stage's checkpoints (every ``kafka.checkpoint_seconds`` or
  ``checkpoint_records``, and after an idle release), only when the model changed since the last
  publication (new or merged clusters, families, categories, or centroids that moved), never per
  record. The chunks are delivered before the manifest is sent.
- **Never mixed**: a reader assembles a model only from the chunks the manifest names and only
  if their SHA-256 matches; otherwise it keeps the model it has. The next publication writes the
  other slot, so the current manifest's chunks stay untouched (a worker that crashed between its
  manifest and its checkpoint may rewrite the current slot: a reader then keeps its previous model
  until the next manifest, and a reader starting just then waits for it).

:class:`GateModelFollower` is the reader: in the API process, a consumer without a group reads
the topic from the beginning, then follows it; it also re-reads the open incidents from the store
every ``refresh_seconds`` (the rollback trigger, ``on_incident``). :meth:`GateModelFollower.model`
is what :class:`~services.gates.GateService` calls, as it calls the embedded ingestor's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading

from pipelines.embedding import Embedder
from pipelines.errors import StateError
from pipelines.gating import ClusterModel, OpenIncident
from pipelines.policy import CategoryPolicy
from services.gates import ModelUnavailable
from services.kafka.sequencer import MANIFEST_KEY, checkpoint_entries, read_checkpoint
from services.settings import Settings
from services.store.base import Store

log = logging.getLogger("faithwatch.kafka.gate_model")

KIND = "GateModel"
VERSION = 1
# The sequence stage's checkpoint table keeps the last publication's generation under this key,
# so a new owner of the stage goes on alternating the slots.
TABLE_KEY = "gate-model"


class Publisher:
    """The sequence stage's side: the messages of a new publication, or None when nothing changed."""

    def __init__(self, embedder: str, generation: int = 0):
        self.embedder = embedder
        self.generation = generation
        self._last: ClusterModel | None = None

    def entries(self, model: ClusterModel) -> list[tuple[str, str]] | None:
        """The chunks then the manifest (send in this order, the manifest once the chunks are
        delivered) of ``model``; None if it places queries as the last published one does."""
        if not model.cluster_ids or (self._last is not None and self._last.same_clusters(model)):
            return None
        generation = self.generation + 1
        state = {"kind": KIND, "version": VERSION, "embedder": self.embedder, "generation": generation,
                 **model.to_state()}
        # Stored, not compressed: centroids (base64 floats) barely compress, and level 6 costs the
        # sequence thread about 3x as long (docs/kafka.md, "The gate's cluster model topic").
        chunks, manifest = checkpoint_entries(state, generation=generation, offset=-1, compresslevel=0)
        self.generation, self._last = generation, model
        return [*chunks, (MANIFEST_KEY, _json(manifest))]


def _json(value: dict) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Assembler:
    """The reader's side without a broker: feed it the topic's messages in order; :attr:`model` is
    the latest complete model (None before one arrived), :attr:`problem` why a manifest was refused."""

    def __init__(self, embedder: str):
        self.embedder = embedder
        self._values: dict[str, str] = {}
        self.model: ClusterModel | None = None
        self.problem: str | None = None

    def add(self, key: str, value: str | None, assemble: bool = True) -> bool:
        """One message (None: a tombstone); True when it completed a new model. With ``assemble``
        false a manifest is only kept (catching up on older publications: :meth:`assemble` later)."""
        if value is None:
            self._values.pop(key, None)
            return False
        self._values[key] = value
        return key == MANIFEST_KEY and assemble and self.assemble()

    def assemble(self) -> bool:
        """Take the model the latest manifest names, if its chunks are all there and match; True
        when that gave a model."""
        if MANIFEST_KEY not in self._values:
            return False
        try:
            got = read_checkpoint(self._values.get)
        except (StateError, ValueError, OSError) as exc:  # chunks of another publication: keep the model we have
            self.problem = f"the latest manifest does not match its chunks ({exc}); waiting for the next one"
            log.warning("gate model: %s", self.problem)
            return False
        assert got is not None
        state, manifest = got
        if state.get("kind") != KIND or state.get("version") != VERSION:
            self.problem = f"not a {KIND} v{VERSION} message (manifest generation {manifest.get('generation')})"
            return False
        if state["embedder"] != self.embedder:
            self.problem = (f"the workers embed with {state['embedder']!r} and this API with {self.embedder!r}: "
                            "give both the same embedding settings")
            return False
        self.model = ClusterModel.from_state(state, version=int(state["generation"]))
        self.problem = None
        return True


class GateModelFollower:
    """The API process's side (Kafka mode): the latest published model with the store's open incidents."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, policy: CategoryPolicy, *,
                 refresh_seconds: float = 2.0):
        self.settings = settings
        self.embedder, self.policy = embedder, policy
        self.topic = settings.kafka.gate_model_topic
        self.store = store
        self.refresh_seconds = refresh_seconds
        self.assembler = Assembler(embedder.name)
        self._incidents: tuple[OpenIncident, ...] | None = None
        self._combined: ClusterModel | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faithwatch-gate-model", daemon=True)
        self.status = f"no cluster model has arrived yet on {self.topic} (the worker holding the sequence stage " \
                      "publishes one at its first checkpoint after the clusters are fitted)"

    # -- what the gate reads -----------------------------------------------------------------------
    def model(self) -> ClusterModel:
        """The latest complete model with the open incidents; :class:`ModelUnavailable` before both
        have been read once."""
        combined = self._combined
        if combined is None:
            raise ModelUnavailable(f"gate decisions in Kafka mode: {self.assembler.problem or self.status}")
        return combined

    def _combine(self) -> None:
        with self._lock:
            model, incidents = self.assembler.model, self._incidents
            if model is not None and incidents is None:
                self.status = "the open incidents have not been read from the store yet"
            if model is not None and incidents is not None:
                self._combined = dataclasses.replace(model, incidents=incidents)

    # -- the thread --------------------------------------------------------------------------------
    def start(self) -> GateModelFollower:
        if not self._thread.is_alive():
            self._thread.start()
            for coro in (self._follow(), self._read_incidents()):
                asyncio.run_coroutine_threadsafe(coro, self._loop)
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop following (the consumer is closed) and the thread."""
        if not self._thread.is_alive():
            return

        async def stop() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout)
        except Exception:  # noqa: BLE001 - stopping anyway
            log.exception("gate model: stopping the consumer")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    async def _read_incidents(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                rows = await loop.run_in_executor(None, lambda: self.store.list_incidents(status="open", limit=100_000))
                self._incidents = tuple(open_incident(r) for r in rows)
                self._combine()
            except Exception:  # the store may answer at the next read; the incidents read last stay
                log.exception("gate model: reading the open incidents from the store failed")
            await asyncio.sleep(self.refresh_seconds)

    async def _follow(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        from services.kafka.app import broker_hosts

        while True:  # the broker may be down or the topic not created yet: retry until it is there
            consumer = AIOKafkaConsumer(bootstrap_servers=broker_hosts(self.settings.kafka.brokers), group_id=None,
                                        enable_auto_commit=False, auto_offset_reset="earliest",
                                        max_partition_fetch_bytes=4 * 1024 * 1024)
            try:
                await consumer.start()
                while self.topic not in await consumer.topics():
                    await asyncio.sleep(1.0)
                tp = TopicPartition(self.topic, 0)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                # Until the end of what the topic held at start, only the latest value per key is
                # kept (an uncompacted log holds many publications): one model is assembled there.
                end = (await consumer.end_offsets([tp]))[tp]
                log.info("gate model: following %s from the beginning (%d messages now)", self.topic, end)
                async for msg in consumer:
                    key = msg.key.decode() if msg.key is not None else ""
                    value = msg.value.decode() if msg.value is not None else None
                    caught_up = msg.offset >= end - 1
                    new = self.assembler.add(key, value, assemble=caught_up)
                    if msg.offset == end - 1 and key != MANIFEST_KEY:
                        new = self.assembler.assemble()
                    if new:
                        self._combine()
                        log.info("gate model: generation %d, %d clusters", self.assembler.model.version,
                                 len(self.assembler.model.cluster_ids))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status = f"reading {self.topic} failed ({type(exc).__name__}: {exc}); retrying"
                log.warning("gate model: %s", self.status)
                await asyncio.sleep(2.0)
            finally:
                await consumer.stop()


def open_incident(row: dict) -> OpenIncident:
    """An open incident as the gate needs it, from a :meth:`Store.list_incidents` row: its member
    clusters (the first one included) and their families."""
    return OpenIncident(row["incident_id"], frozenset(row.get("clusters") or ()) | {row["cluster_id"]},
                        frozenset(f for f in row.get("family_ids") or () if f))
