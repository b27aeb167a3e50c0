"""``faithwatch serve`` in Kafka mode (``api.ingest=kafka``): accepted records go to the interactions topic.

:class:`KafkaIngestor` publishes each valid record, as the JSON object it was parsed from, to
``kafka.interactions_topic`` keyed by its ``session_id`` (what ``faithwatch produce`` does), and
returns once the broker has acknowledged every message (``acks=all``): a 202 then means the
records are durable in Kafka. The stream workers (``faithwatch worker``) score, cluster, detect
and store them; the API reads the results from the shared ClickHouse store.

So in Kafka mode ``?wait=true`` waits for the broker's acknowledgement only, ``POST /v1/flush``
has nothing to do here (the workers release a quiet stream after ``kafka.reorder_idle_seconds``),
the live baseline of ``GET /v1/clusters/{id}`` is not available in this process, and the
``pipeline`` totals are None. ``POST /v1/gate`` places queries in the cluster model the sequence
stage publishes, which a :class:`~services.kafka.gate_model.GateModelFollower` (``gate``: with the embedder and
categories of the workers' settings) reads, started and stopped with this ingestor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pipelines.embedding import Embedder
from pipelines.gating import ClusterModel
from pipelines.interaction import Interaction
from pipelines.policy import CategoryPolicy
from services.ingest import Ingestor, IngestUnavailable, WaitResult
from services.metrics import Metrics
from services.settings import Settings

if TYPE_CHECKING:
    from services.kafka.gate_model import GateModelFollower

log = logging.getLogger("faithwatch.kafka.ingest")


class KafkaIngestor(Ingestor):
    def __init__(self, settings: Settings, metrics: Metrics | None = None, *, timeout: float | None = None,
                 gate: GateModelFollower | None = None):
        self.settings = settings
        self.gate = gate
        self.metrics = metrics or Metrics()
        self.timeout = timeout if timeout is not None else settings.kafka.publish_timeout_seconds
        self.topic = settings.kafka.interactions_topic
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faithwatch-kafka-ingest", daemon=True)
        self._producer = None
        self._lock = threading.Lock()
        self._tickets = 0
        self._published = 0
        self._closing = False

    def gate_inputs(self) -> tuple[Embedder, CategoryPolicy] | None:
        return None if self.gate is None else (self.gate.embedder, self.gate.policy)

    def cluster_model(self) -> ClusterModel | None:
        return None if self.gate is None else self.gate.model()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout)

    def start(self) -> KafkaIngestor:
        if self._producer is not None:
            return self
        from aiokafka import AIOKafkaProducer

        from services.kafka.app import broker_hosts

        self._thread.start()

        async def make():
            # A batch the broker has not acknowledged within the timeout fails the request (503);
            # the client's resend may publish it twice, which the store keeps once.
            p = AIOKafkaProducer(bootstrap_servers=broker_hosts(self.settings.kafka.brokers), acks="all",
                                 linger_ms=5, max_request_size=4 * 1024 * 1024 + 65536,
                                 request_timeout_ms=int(self.timeout * 1000))
            await p.start()
            return p

        try:
            self._producer = self._run(make())
        except Exception as exc:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise IngestUnavailable(f"kafka {self.settings.kafka.brokers}: {exc}") from exc
        if self.gate is not None:
            self.gate.start()
        return self

    async def _send(self, records: Sequence[Interaction]) -> None:
        assert self._producer is not None
        futures = []
        for r in records:
            key = r.session_id.encode() if r.session_id else None
            value = json.dumps(r.to_record(), separators=(",", ":"), ensure_ascii=False).encode()
            futures.append(await self._producer.send(self.topic, value, key=key))
        await asyncio.gather(*futures)

    def submit(self, records: Sequence[Interaction]) -> int:
        with self._lock:
            if self._closing or self._producer is None:
                raise IngestUnavailable("the server is shutting down; retry against another instance")
        try:
            self._run(self._send(records))
        except Exception as exc:  # the broker is down or slow: the client retries (503)
            log.warning("publishing %d records to %s failed: %s", len(records), self.topic, exc)
            self.metrics.ingest_errors.inc()
            raise IngestUnavailable(f"kafka did not acknowledge the records ({type(exc).__name__}: {exc}); "
                                    "retry shortly") from exc
        with self._lock:
            self._tickets += 1
            self._published += len(records)
            return self._tickets

    def request_flush(self) -> int:
        with self._lock:
            if self._closing:
                raise IngestUnavailable("the server is shutting down")
            self._tickets += 1
            return self._tickets

    def wait(self, ticket: int, timeout: float | None) -> WaitResult:
        return WaitResult(True)  # submit() returned after the broker acknowledged

    @property
    def depth(self) -> int:
        return 0

    def totals(self) -> dict | None:
        return None

    @property
    def published(self) -> int:
        return self._published

    def close(self, timeout: float | None = None) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
        if self._producer is not None:
            try:
                self._run(self._producer.stop())
            except Exception:
                log.exception("stopping the kafka producer")
        if self.gate is not None:
            self.gate.close(timeout)
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
