"""The faust app: agents ``score``, ``sequence`` and the sinks (topology in docs/kafka.md).

- ``score`` (one instance per worker, fed by the interactions topic's partitions this worker
  holds): batches of raw messages -> :func:`~pipelines.interaction.parse_record` (invalid ones go
  to the dead-letter topic with the reason and where they were read) -> ``Pipeline.prepare``
  (embeddings, faithfulness) -> the ``prepared`` topic, then one watermark per source partition.
- ``sequence`` (the single partition of ``prepared``: one worker at a time): the
  :class:`~services.kafka.sequencer.Sequencer` puts records back in event-time order and runs the
  stateful half of the pipeline; scored interactions, incident events and changed clusters go to
  their topics (and incident events to ``--alerts-out`` and, with a notify file, into the outbox
  of the notifier this worker runs while it holds the partition). Its state is checkpointed into a table
  (changelog-backed); its messages are acknowledged only once a checkpoint includes them, so the
  committed offset never runs ahead of the state. A worker that is assigned the partition
  restores the checkpoint and skips what it already holds. At a checkpoint it also publishes the
  confidence gate's cluster model when it changed (services/kafka/gate_model.py), for a
  Kafka-mode API's ``POST /v1/gate``.
- sinks: batched, idempotent writes of those topics to the store; a failed write is retried with
  backoff (services/retry.py; counted: ``faithwatch_worker_store_retries_total``) and its messages
  are acknowledged only once written. The sequence stage queues deliveries (the notifier's outbox,
  in the store) the same way: retried until stored, before the checkpoint acknowledges its input.

Agents only decode, call the stages and emit. CPU work runs beside the event loop on two threads:
one prepares (embedding, scoring; it also builds pipelines, the only other user of the embedder),
the other sequences (release, checkpoint state), so that the two halves overlap instead of taking
turns; store writes run on a third.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import faust

from pipelines.embedding import Embedder
from pipelines.engine import Output, Pipeline
from pipelines.errors import InvalidRecord
from pipelines.interaction import DeadLetter, parse_record
from services import retry
from services.flow import JsonLines, Outputs, Tally, event_key
from services.kafka import gate_model, messages
from services.kafka.sequencer import MANIFEST_KEY, Sequencer, checkpoint_entries, read_checkpoint
from services.metrics import Metrics
from services.notify.notifier import Notifier
from services.notify.notify_file import NotifyFile
from services.settings import Settings
from services.store.base import Store
from services.store.consistency import repair_drifted_rollups

log = logging.getLogger("faithwatch.kafka")

CHECKPOINT_TABLE = "sequence-checkpoint"
FETCH_BYTES = 256 * 1024  # per partition and fetch (see create_app)
_RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def broker_hosts(brokers: str) -> list[str]:
    """``kafka://a:9092;b:9092`` (faust's form) -> ``["a:9092", "b:9092"]`` (aiokafka's)."""
    out = []
    for part in brokers.replace(";", ",").split(","):
        part = part.strip()
        if part:
            out.append(part.split("://", 1)[-1].rstrip("/"))
    return out


def faust_brokers(brokers: str) -> str:
    return ";".join(f"kafka://{h}" for h in broker_hosts(brokers))


class Runtime:
    """What the agents share in one worker process."""

    def __init__(self, settings: Settings, embedder: Embedder,
                 build_pipeline: Callable[[dict | None], Pipeline], store: Store | None,
                 alerts_out: Path | None, monotonic: Callable[[], float] = time.monotonic,
                 notify_file: NotifyFile | None = None):
        self.settings = settings
        self.embedder = embedder
        self.build_pipeline = build_pipeline
        self.store = store
        # The sequence stage's sinks (the store is written by the topics' sinks, on every worker).
        # --alerts-out keeps its lines across restarts and skips an event it holds (re-emitted).
        self.metrics = Metrics()
        self.outputs = Outputs(alerts=JsonLines(alerts_out, append=True, key=event_key) if alerts_out else None,
                               tally=Tally(), metrics=self.metrics)
        self.monotonic = monotonic
        self.notify_file = notify_file
        self.cpu = ThreadPoolExecutor(1, thread_name_prefix="faithwatch-cpu")
        # The sequence half on its own thread: it runs while the next batches are embedded (onnxruntime
        # releases the GIL). It never calls the embedder (not thread-safe behind its cache).
        self.seq_cpu = ThreadPoolExecutor(1, thread_name_prefix="faithwatch-seq")
        self.io = ThreadPoolExecutor(1, thread_name_prefix="faithwatch-store")
        self._preparer: Pipeline | None = None
        self.seq: Sequencer | None = None
        self.gate_model: gate_model.Publisher | None = None  # made by the sequence stage's restore
        self.generation = 0
        self.pending: list[Any] = []  # prepared events processed but not yet in a checkpoint
        self.in_flight: list[Any] = []  # delivery futures of what the sequence stage sent since then
        self.stream: Any = None
        self.lock = asyncio.Lock()
        self.last_message = monotonic()
        self.last_checkpoint = monotonic()
        self.since_checkpoint = 0
        self.counts = {"read": 0, "dead_letters": 0, "prepared": 0, "checkpoints": 0, "stored_interactions": 0,
                       "idle_releases": 0, "late": 0, "store_retries": 0}
        self.metrics.track_counts("faithwatch_worker", lambda: dict(self.counts),
                                  "records through this worker's stages since it started")

    def report(self) -> dict:
        """The stage counters and the tally of the sequence stage's outputs (what the worker prints)."""
        t = self.outputs.tally
        return {**self.counts, "scored": t.scored, "incident_events": t.events, "duplicates": t.duplicates,
                "deliveries_queued": self.outputs.queued}

    async def on_cpu(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.cpu, partial(fn, *args))

    async def on_seq(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.seq_cpu, partial(fn, *args))

    async def on_io(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.io, partial(fn, *args))

    async def retrying(self, what: str, fn, *args) -> None:
        """``fn(*args)`` on the store thread until it succeeds: a failure (the store down, or
        answering errors) is logged, counted (``store_retries``) and retried after services.retry's
        delays. A stage waiting here holds its input unacknowledged: nothing is lost meanwhile. Once it
        succeeds after failures, the rollups are checked (``store.repairs_rollups``)."""
        failed = False
        for delay in retry.STORE.delays():
            try:
                await self.on_io(fn, *args)
            except Exception as exc:  # noqa: BLE001 - any store error: nothing acknowledged, retry
                self.counts["store_retries"] += 1
                retry.log_failure(log, what, exc, delay)
                failed = True
                await asyncio.sleep(delay)
                continue
            if failed and self.settings.store.repairs_rollups:
                # The server may have died mid-insert: rollups short of interactions stored
                # (services/store/consistency.py; on the store thread, off the event loop).
                try:
                    await self.on_io(repair_drifted_rollups, self.store, log, "after the store came back")
                except Exception:  # noqa: BLE001 - written; a failed check must not fail the write
                    log.exception("checking the rollups after the store came back failed")
            return

    @property
    def preparer(self) -> Pipeline:
        if self._preparer is None:
            self._preparer = self.build_pipeline(None)
        return self._preparer

    def start_notifier(self) -> None:
        """Deliver from this worker: called when it is assigned the sequence stage's partition.

        The outbox is shared by every worker (it is in the store), so exactly one of them may
        send from it: the one holding the single ``prepared`` partition, which is also the only
        one that emits incident events. It starts sending what is pending (a dead owner's
        deliveries included) and re-sends open incidents to Alertmanager.
        """
        if self.notify_file is not None and self.store is not None and self.outputs.notifier is None:
            self.outputs.notifier = Notifier(self.store, self.notify_file, self.settings.notify,
                                             self.metrics).start()
            log.warning("notify: this worker delivers alerts (it holds the sequence stage)")

    def stop_notifier(self) -> None:
        """Stop delivering (the partition was revoked, or the worker stops): an attempt in flight
        ends first, so the next owner never sends a delivery this one is still sending."""
        notifier, self.outputs.notifier = self.outputs.notifier, None
        if notifier is not None:
            notifier.close(timeout=self.settings.notify.timeout_seconds + 5)

    def prepare(self, batch: list) -> list:
        """``Pipeline.prepare`` on the preparing pipeline (built on first use): run it on :attr:`cpu`."""
        return self.preparer.prepare(batch)


def create_app(settings: Settings, runtime: Runtime) -> faust.App:
    k = settings.kafka
    rt = runtime
    app = faust.App(
        k.app_id, broker=faust_brokers(k.brokers), store="memory://", web_enabled=False,
        topic_partitions=k.partitions, topic_replication_factor=1, table_standby_replicas=0,
        consumer_auto_offset_reset="earliest", datadir=str(settings.data_dir / "faust"),
        broker_commit_every=100, broker_commit_interval=1.0, producer_max_request_size=4 * 1024 * 1024 + 65536,
        # faust hands a topic's fetched records on partition by partition: with its 4 MB per
        # partition, a backlog is prepared one partition after another and the reorder buffer
        # releases nothing until the last partition's turn (the halves then run one after the
        # other). 256 KB interleaves them every few hundred interactions. A larger message is
        # still delivered (the broker returns an oversized first batch: Kafka, and tansu, checked).
        consumer_max_fetch_size=FETCH_BYTES,
        # The sequence stage acknowledges prepared messages only at its checkpoints; a stopping
        # worker must not wait for the rest (the next owner gets them again).
        stream_wait_empty=False,
        broker_session_timeout=k.session_timeout_seconds, broker_rebalance_timeout=k.session_timeout_seconds,
        broker_heartbeat_interval=max(0.5, k.session_timeout_seconds / 10),
    )
    interactions = app.topic(k.interactions_topic, partitions=k.partitions, internal=True, **_RAW)
    prepared = app.topic(k.prepared_topic, partitions=1, internal=True, **_RAW)
    scored = app.topic(k.scored_topic, partitions=k.partitions, internal=True, **_RAW)
    incidents = app.topic(k.incidents_topic, partitions=k.partitions, internal=True, **_RAW)
    dead = app.topic(k.dead_letter_topic, partitions=k.partitions, internal=True, **_RAW)
    cluster_model = app.topic(k.cluster_model_topic, partitions=k.partitions, internal=True, compacting=True,
                              **_RAW)
    # What POST /v1/gate needs, for a Kafka-mode API (services/kafka/gate_model.py): one partition,
    # so the chunks and their manifest stay in order. Nothing here consumes it: declared on first use.
    gate_topic = app.topic(k.gate_model_topic, partitions=1, internal=True, compacting=True, **_RAW)
    # Keys and values are JSON (chunks are base64 text, the manifest an object).
    table = app.Table(CHECKPOINT_TABLE, default=None, partitions=1, use_partitioner=True)

    async def send_all(topic, items: list[tuple[bytes | None, bytes]]) -> None:
        futures = [await topic.send(key=key, value=value) for key, value in items]
        if futures:
            await asyncio.gather(*futures)

    async def send_unconfirmed(topic, items: list[tuple[bytes | None, bytes]]) -> None:
        """Send without waiting for delivery; the next checkpoint waits for it (before acknowledging)."""
        rt.in_flight += [await topic.send(key=key, value=value) for key, value in items]

    # -- score ------------------------------------------------------------------------------
    @app.agent(interactions, name="score")
    async def score(stream):
        async for events in stream.take_events(k.batch_size, within=k.batch_seconds):
            now = datetime.now(UTC)
            valid, letters = [], []
            for ev in events:
                m = ev.message
                try:
                    valid.append((parse_record(ev.value), m.partition, m.offset))
                except InvalidRecord as exc:
                    letters.append(DeadLetter.of(exc, ev.value, received_at=now, source=f"kafka:{m.topic}",
                                                 position=f"partition {m.partition} offset {m.offset}"))
            made = await rt.on_cpu(rt.prepare, [i for i, _, _ in valid])
            out: list[tuple[bytes | None, bytes]] = []
            marks: dict[int, datetime] = {}
            # A timestamp far ahead (dead-lettered by the sequence stage) must not move its partition's watermark.
            horizon = now + timedelta(hours=settings.input.max_ahead_hours)
            for (i, p, o), pr in zip(valid, made, strict=True):
                out.append((None, messages.record(pr, p, o)))
                marks[p] = max(marks.get(p, min(i.timestamp, horizon)), min(i.timestamp, horizon))
            out += [(None, messages.watermark(p, t)) for p, t in sorted(marks.items())]
            await send_all(prepared, out)
            await send_all(dead, [((d.interaction_id or "").encode() or None, messages.row(d)) for d in letters])
            rt.counts["read"] += len(events)
            rt.counts["prepared"] += len(made)
            rt.counts["dead_letters"] += len(letters)
            for d in letters:
                log.warning("dead letter (%s): %s: %s", d.position, d.field, d.reason)

    # -- sequence ---------------------------------------------------------------------------
    async def restore() -> Sequencer:
        got = read_checkpoint(table.get)
        if got is None:
            seq = Sequencer(await rt.on_cpu(rt.build_pipeline, None), k.partitions)
            rt.generation = 0
        else:
            state, manifest = got
            seq = await rt.on_cpu(Sequencer.from_state, state, rt.build_pipeline, k.partitions)
            rt.generation = int(manifest["generation"])
            log.warning("sequence: restored checkpoint generation %d (prepared offset %d)",
                        rt.generation, seq.offset)
        rt.gate_model = gate_model.Publisher(rt.embedder.name, int(table.get(gate_model.TABLE_KEY) or 0))
        rt.last_checkpoint = rt.monotonic()
        return seq

    async def publish_gate_model(seq: Sequencer) -> None:
        """The gate's cluster model, if it changed since the last publication: chunks, then (once
        they are delivered) the manifest; its generation is kept in the checkpoint table."""
        publisher = rt.gate_model
        assert publisher is not None  # made by restore(), before any checkpoint
        entries = await rt.on_seq(lambda: publisher.entries(seq.pipeline.cluster_model()))
        if entries is None:
            return
        await gate_topic.maybe_declare()
        *chunks, manifest = [(key.encode(), value.encode()) for key, value in entries]
        await send_all(gate_topic, chunks)
        await send_all(gate_topic, [manifest])
        table[gate_model.TABLE_KEY] = publisher.generation

    async def emit(out: Output) -> None:
        # Not confirmed per batch (three broker round trips each time): the checkpoint confirms
        # every delivery before it acknowledges the prepared messages these outputs came from.
        await send_unconfirmed(scored, [(s.cluster_id.encode(), messages.row(s)) for s in out.scored])
        await send_unconfirmed(incidents, [(e.incident_id.encode(), messages.row(e)) for e in out.events])
        await send_unconfirmed(cluster_model, [(c.cluster_id.encode(), messages.row(c)) for c in out.clusters])
        letters = out.dead_letters(datetime.now(UTC), f"kafka:{k.prepared_topic}")  # timestamps too far ahead
        await send_unconfirmed(dead, [((d.interaction_id or "").encode() or None, messages.row(d)) for d in letters])
        rt.counts["dead_letters"] += len(letters)
        # Queueing deliveries is a store round trip: off the loop. It happens before the checkpoint
        # that acknowledges the input these events came from, so none is lost; a re-emitted event
        # is already in the outbox and pages nobody again.
        if out.events and rt.outputs.notifier is not None:
            await rt.retrying(f"sequence: queueing the deliveries of {len(out.events)} incident events",
                              rt.outputs.write, out)
        else:
            rt.outputs.write(out)

    async def checkpoint(seq: Sequencer) -> None:
        state = await rt.on_seq(seq.to_state)
        generation = rt.generation + 1
        entries, manifest = await rt.on_seq(partial(checkpoint_entries, state, generation=generation,
                                                    offset=seq.offset))
        for key, value in entries:
            table[key] = value
        table[MANIFEST_KEY] = manifest
        clusters = list(seq.pipeline.clusters.values())
        await send_all(cluster_model, [(c.cluster_id.encode(), messages.row(c)) for c in clusters])
        await publish_gate_model(seq)
        await app.producer.flush()
        sent, rt.in_flight = rt.in_flight, []
        if sent:
            await asyncio.gather(*sent)  # a failed delivery raises here: nothing is acknowledged
        rt.generation = generation
        acks, rt.pending = rt.pending, []
        for ev in acks:
            await rt.stream.ack(ev)
        rt.last_checkpoint = rt.monotonic()
        rt.since_checkpoint = 0
        rt.counts["checkpoints"] += 1

    def checkpoint_due() -> bool:
        return (rt.since_checkpoint >= k.checkpoint_records
                or rt.monotonic() - rt.last_checkpoint >= k.checkpoint_seconds)

    @app.agent(prepared, name="sequence")
    async def sequence(stream):
        rt.stream = stream
        async for events in stream.noack_take(k.batch_size, within=k.batch_seconds):
            async with rt.lock:
                if rt.seq is None:
                    rt.seq = await restore()
                seq = rt.seq
                items = []
                for ev in events:
                    try:
                        items.append((messages.decode(ev.value), ev.message.offset))
                    except ValueError as exc:
                        log.error("prepared offset %d: undecodable (%s), skipped", ev.message.offset, exc)
                seq.add_all(items)
                out = await rt.on_seq(seq.release)
                rt.counts["late"] = seq.reorder.late
                await emit(out)
                if rt.seq is not seq:  # revoked meanwhile: the new owner restores the checkpoint
                    continue
                rt.pending += events
                rt.since_checkpoint += len(events)
                rt.last_message = rt.monotonic()
                if checkpoint_due():
                    await checkpoint(seq)

    @app.timer(interval=max(0.2, min(k.reorder_idle_seconds, k.checkpoint_seconds) / 4))
    async def idle():
        async with rt.lock:
            seq = rt.seq
            if seq is None:
                return
            if seq.idle_work and rt.monotonic() - rt.last_message >= k.reorder_idle_seconds:
                log.info("sequence: idle for %.1f s, releasing %d buffered records (%d wait for the bootstrap)",
                         rt.monotonic() - rt.last_message, len(seq.reorder), seq.pipeline.waiting)
                rt.counts["idle_releases"] += 1
                await emit(await rt.on_seq(seq.release, True))
                if rt.seq is seq:
                    await checkpoint(seq)
            elif rt.pending and checkpoint_due():
                await checkpoint(seq)

    @app.on_partitions_revoked.connect
    async def on_revoked(app_, revoked, **kwargs) -> None:
        if any(tp.topic == k.prepared_topic for tp in revoked):
            rt.seq = None
            rt.pending = []
            rt.in_flight = []
            # Before the group is re-formed, so two workers never send from the outbox at once.
            await asyncio.get_running_loop().run_in_executor(None, rt.stop_notifier)

    @app.on_partitions_assigned.connect
    async def on_assigned(app_, assigned, **kwargs) -> None:
        # The sequence stage restores its checkpoint when its first message arrives (after the
        # table's recovery). A tick makes sure one arrives, so a checkpoint whose reorder buffer
        # still holds the tail of the stream is released even when nothing else comes.
        if any(tp.topic == k.prepared_topic for tp in assigned):
            rt.start_notifier()
            await prepared.send(value=messages.tick())

    # -- sinks ------------------------------------------------------------------------------
    async def store_retrying(name: str, write, rows: list) -> None:
        """``write(rows)`` on the store thread until it succeeds: a store that is down (or answers
        errors) is retried with services.retry's backoff, each failed attempt logged and counted
        (``store_retries``)."""
        await rt.retrying(f"{name}: writing {len(rows)} rows to the store", write, rows)

    def sink(topic, name: str, decode, write) -> None:
        async def agent(stream):
            # Acknowledged by hand once written: ``take`` acknowledges a batch when the agent
            # leaves it, even by an exception or a cancelled retry, which would commit rows
            # never written. Unacknowledged messages are read again by the next owner.
            async for events in stream.noack_take(2000, within=1.0):
                rows = [decode(ev.value) for ev in events if ev.value is not None]
                if rt.store is not None and rows:
                    await store_retrying(name, write, rows)
                for ev in events:
                    await stream.ack(ev)

        app.agent(topic, name=name)(agent)

    def write_clusters(rows):
        latest = {c.cluster_id: c for c in rows}
        rt.store.upsert_clusters(list(latest.values()))

    def write_interactions(rows):
        rt.store.insert_interactions(rows)
        rt.counts["stored_interactions"] += len(rows)

    sink(scored, "sink-scored", messages.scored_of, write_interactions)
    sink(incidents, "sink-incidents", messages.event_of, lambda rows: rt.store.insert_incident_events(rows))
    sink(cluster_model, "sink-clusters", messages.cluster_of, write_clusters)
    sink(dead, "sink-dead-letters", messages.dead_letter_of, lambda rows: rt.store.insert_dead_letters(rows))

    @app.timer(interval=10.0)
    async def report_counts():
        log.info("counts %s", json.dumps(rt.report(), sort_keys=True))

    return app
