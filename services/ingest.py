"""The ingest worker: interactions accepted over HTTP go through the pipeline to the store.

The API validates each request's records and hands the valid ones to an :class:`Ingestor`, then
answers at once (202). :class:`Ingestor` is the seam between the two: the embedded one here runs
a live :class:`~pipelines.engine.Pipeline` on one background thread; a Kafka one (a later issue)
would publish to the interactions topic instead, with the pipeline in the stream workers.

:class:`EmbeddedIngestor` keeps a queue of submissions. Its thread takes whole submissions until
it has about ``batch_size`` interactions, orders them as every driver does
(:func:`services.flow.event_order`), runs the pipeline over them in batches of ``batch_size`` and
hands the output to :class:`services.flow.Outputs` (store, notifier, metrics). Every submission
gets a ticket; :meth:`Ingestor.wait` returns once the worker has written everything up to that
ticket, which is what ``POST /v1/interactions?wait=true`` and ``POST /v1/flush`` wait for.

Until the clusters are first fitted (``cluster.bootstrap_size`` interactions, or a seed file) the
pipeline holds interactions back; :meth:`Ingestor.request_flush` fits on whatever waits, like the
end of a replay, and :meth:`Ingestor.close` drains the queue and flushes before it returns.

With a ``checkpoint`` (a callable taking ``Pipeline.to_state()``), the worker saves the pipeline's
state every ``checkpoint_seconds`` after writing a batch to the store, and once more at
:meth:`Ingestor.close`, which then does not flush: what waits for the bootstrap stays in the
saved state and a restarted server continues with it.

With a ``spool`` (:class:`services.spool.Spool`), :meth:`EmbeddedIngestor.submit` returns only
once the records are synced to it, so what the API acknowledged survives a crash: :meth:`start`
replays what a previous run left there into the queue before the API takes requests (what was
processed already is dropped by the restored pipeline's seen ids or by the store), and the worker
trims the spool after each saved checkpoint, up to what that state covers. Without one, a crash
loses what was queued or waiting for the bootstrap, and the detector memory of the last
``checkpoint_seconds``.

A store that fails (:class:`~pipelines.errors.StoreError`: a ClickHouse server down, a disk error
under chDB) does not lose a batch: the pipeline step is not run again (its state moved on), the
batch's writes are, with services.retry's backoff, until the store takes them; each failed attempt
is logged and counted (``faithwatch_store_retries_total``), and ``faithwatch_store_failing`` is 1
meanwhile. The worker takes nothing else while it retries, so new requests queue (202, in the
spool) until the queue or the spool is full (503). The records of a batch being retried are not
reported done to the spool, so no checkpoint covers them. :meth:`close` during such an outage stops
retrying at once and leaves the unwritten batch and everything still queued in the spool, and saves
no state: the last saved checkpoint and the spool then stand exactly as after a crash, and the next
start replays them (the records processed since that checkpoint are processed again, the store
skipping what it holds). Any other error of a batch (a bug) is logged, counted
(``faithwatch_ingest_errors_total``) and reported to its waiters, not retried.
"""

from __future__ import annotations

import abc
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Self

from pipelines.embedding import Embedder
from pipelines.engine import Output, Pipeline
from pipelines.errors import FaithwatchError, StoreError
from pipelines.gating import ClusterModel
from pipelines.interaction import Interaction
from pipelines.policy import CategoryPolicy
from pipelines.records import ClusterInfo
from services import retry
from services.flow import Outputs, Tally, event_order
from services.metrics import Metrics
from services.spool import Spool, SpoolFull
from services.store.base import Store

log = logging.getLogger("faithwatch.ingest")

# Failed tickets remembered for wait(); older ones are forgotten (their callers gave up long ago).
_FAILED_MEMORY = 10_000


class IngestUnavailable(FaithwatchError):
    """The ingestor cannot take records now (queue or spool full, or shutting down)."""

    def __init__(self, message: str, retry_after: int = 1):
        super().__init__(message)
        self.retry_after = retry_after  # seconds, for the Retry-After header


@dataclass(frozen=True)
class Baseline:
    """A cluster's faithfulness band as the live detector sees it now."""

    source: str  # "cluster": the cluster's own baseline; "global prior": too new, borrows the global one
    median: float | None
    low: float | None
    below_rate: float | None
    count: int


@dataclass(frozen=True)
class WaitResult:
    done: bool
    error: str | None = None


@dataclass
class Totals(Tally):
    """What the pipeline did since this process started."""

    received: int = 0

    def as_dict(self) -> dict:
        return {"received": self.received, "scored": self.scored, "duplicates": self.duplicates,
                "rejected": self.rejected, "below_baseline": self.below_baseline,
                "waiting_for_bootstrap": max(0, self.received - self.scored - self.duplicates - self.rejected),
                "incident_events": dict(self.incident_events)}


class Ingestor(abc.ABC):
    """Takes valid interactions for processing; what the HTTP API writes to."""

    @abc.abstractmethod
    def submit(self, records: Sequence[Interaction]) -> int:
        """Queue ``records``; returns a ticket for :meth:`wait`. Raises :class:`IngestUnavailable`."""

    @abc.abstractmethod
    def request_flush(self) -> int:
        """Ask for everything queued to be processed and the bootstrap buffer fitted; a ticket."""

    @abc.abstractmethod
    def wait(self, ticket: int, timeout: float | None) -> WaitResult:
        """Block until everything up to ``ticket`` is processed and stored (or ``timeout``)."""

    def baseline(self, cluster_id: str) -> Baseline | None:
        """The live baseline of ``cluster_id``; None where this process runs no detector."""
        return None

    def cluster_model(self) -> ClusterModel | None:
        """The cluster model last published for the confidence gate (may raise
        :class:`services.gates.ModelUnavailable`); None where there is none."""
        return None

    def gate_inputs(self) -> tuple[Embedder, CategoryPolicy] | None:
        """What the confidence gate embeds queries with (the stream's model) and the categories it
        applies; None where this process offers no :meth:`cluster_model`."""
        pipeline = getattr(self, "pipeline", None)
        return None if pipeline is None else (pipeline.embedder, pipeline.policy)

    @property
    def store_failing(self) -> bool:
        """True while this process's writes to the store fail (and are being retried)."""
        return False

    @property
    @abc.abstractmethod
    def depth(self) -> int:
        """Accepted interactions not yet processed."""

    @abc.abstractmethod
    def totals(self) -> dict | None:
        """Counts since start (see :class:`Totals`); None where this process runs no pipeline."""

    def start(self) -> Self:
        return self

    @abc.abstractmethod
    def close(self, timeout: float | None = None) -> None:
        """Stop taking records, process what was accepted, release the worker."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class _Item:
    ticket: int
    records: Sequence[Interaction] | None  # None: a control item (flush or stop)
    flush: bool = True  # a control item fits what waits for the bootstrap
    mark: int | None = None  # the records' mark in the spool


class EmbeddedIngestor(Ingestor):
    """One worker thread running ``pipeline`` and writing to ``store``."""

    def __init__(self, pipeline: Pipeline, store: Store, metrics: Metrics | None = None, *,
                 batch_size: int = 256, max_queue: int = 100_000, cluster_refresh_seconds: float = 5.0,
                 checkpoint: Callable[[dict], None] | None = None, checkpoint_seconds: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic, notifier=None, spool: Spool | None = None,
                 repair_after_outage: Callable[[], None] | None = None):
        self.pipeline = pipeline
        self.store = store
        self.metrics = metrics or Metrics()
        # With a Notifier (services.notify.notifier) incident events are queued for delivery once stored.
        self.outputs = Outputs(store=store, notifier=notifier, metrics=self.metrics)
        # Called once a write succeeds after failed ones (a ClickHouse server that died mid-insert
        # leaves rollups short: services/store/consistency.py); its own failure is logged, not raised.
        self.repair_after_outage = repair_after_outage
        self.batch_size = batch_size
        self.max_queue = max_queue
        self.cluster_refresh_seconds = cluster_refresh_seconds
        self._monotonic = monotonic
        self._cond = threading.Condition()
        self._queue: deque[_Item] = deque()
        self._depth = 0
        self._issued = 0
        self._done = 0
        self._failed: OrderedDict[int, str] = OrderedDict()
        self._closing = False
        # Held while the pipeline runs a batch, and by baseline(): the detector is not thread-safe.
        self._pipeline_lock = threading.Lock()
        self._totals = Totals()
        self._last_refresh = -math.inf
        self.checkpoint = checkpoint
        self.checkpoint_seconds = checkpoint_seconds
        self._last_checkpoint = monotonic()
        self.checkpoints = 0  # saved so far
        self.spool = spool
        self.replayed = 0  # records the spool handed back at start
        self._store_failing = False
        # Closed during a store outage: the unwritten records stay in the spool, no state is saved.
        self.abandoned = 0
        self._thread = threading.Thread(target=self._run, name="faithwatch-ingest", daemon=True)
        self.metrics.track_queue_depth(lambda: self._depth)
        # What gate calls read: an immutable snapshot replaced (one reference assignment, atomic)
        # after every batch, so they never take the pipeline lock.
        self._model_version = 0
        self._model = pipeline.cluster_model()

    # -- the API side ----------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the worker; with a spool, first queue what a previous run left in it."""
        if not self._thread.is_alive():
            self._thread.start()
            if self.spool is not None:
                self._replay_spool()
        return self

    def _replay_spool(self) -> None:
        assert self.spool is not None
        for seg in self.spool.recover(datetime.now(UTC)):
            self.outputs.dead_letters(seg.dead_letters)
            if not seg.records:
                self.spool.done(seg.mark)
                continue
            n = len(seg.records)
            with self._cond:
                # Bypasses max_queue (these were accepted), but waits for room between segments.
                self._cond.wait_for(lambda n=n: self._depth == 0 or self._depth + n <= self.max_queue)
                self._issued += 1
                self._queue.append(_Item(self._issued, seg.records, mark=seg.mark))
                self._depth += n
                self._cond.notify_all()
            self.replayed += n
        if self.replayed:
            log.warning("replaying %d interactions accepted before the last stop from the spool %s "
                        "(those already processed are dropped as duplicates)", self.replayed, self.spool.directory)

    def _refuse(self, n: int) -> None:
        """With the lock held: raise IngestUnavailable if ``n`` more records cannot be queued now."""
        if self._closing:
            raise IngestUnavailable("the server is shutting down; retry against another instance")
        if n and self._depth + n > self.max_queue:
            raise IngestUnavailable(f"ingest queue full ({self._depth} interactions waiting, limit "
                                    f"{self.max_queue}); retry shortly")

    def _enqueue(self, records: Sequence[Interaction] | None, mark: int | None = None) -> int:
        with self._cond:
            self._refuse(len(records or ()))
            self._issued += 1
            self._queue.append(_Item(self._issued, records, mark=mark))
            self._depth += len(records or ())
            self._cond.notify_all()
            return self._issued

    def submit(self, records: Sequence[Interaction]) -> int:
        records = list(records)
        if self.spool is None or not records:
            return self._enqueue(records)
        with self._cond:
            self._refuse(len(records))  # nothing is written for a batch the queue would refuse
        try:
            mark = self.spool.append(records)
        except SpoolFull as exc:
            # Room comes back as checkpoints let processed segments go.
            raise IngestUnavailable(str(exc), retry_after=max(1, math.ceil(min(self.checkpoint_seconds, 30)))) from None
        except OSError as exc:
            log.error("writing %d records to the spool failed: %s", len(records), exc)
            self.metrics.ingest_errors.inc()
            raise IngestUnavailable("the spool cannot be written (the server log has the reason); retry "
                                    "shortly") from None
        try:
            return self._enqueue(records, mark)
        except IngestUnavailable:
            self.spool.done(mark)  # refused after all (a 503): the client sends them again
            raise

    def request_flush(self) -> int:
        return self._enqueue(None)

    def wait(self, ticket: int, timeout: float | None) -> WaitResult:
        with self._cond:
            done = self._cond.wait_for(lambda: self._done >= ticket, timeout)
            return WaitResult(done, self._failed.pop(ticket, None) if done else None)

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def store_failing(self) -> bool:
        return self._store_failing

    def totals(self) -> dict:
        with self._cond:
            return self._totals.as_dict()

    def cluster_model(self) -> ClusterModel:
        return self._model

    def baseline(self, cluster_id: str) -> Baseline | None:
        with self._pipeline_lock:
            detector = self.pipeline.detector
            own = cluster_id in detector.monitors
            band = detector.band(cluster_id)

        def finite(x: float) -> float | None:
            return x if math.isfinite(x) else None

        return Baseline(source="cluster" if own else "global prior", median=finite(band.median),
                        low=finite(band.low), below_rate=finite(band.below_rate), count=band.count)

    def close(self, timeout: float | None = None) -> None:
        """Drain the queue, fit what waits for the bootstrap, write it all, stop the thread."""
        with self._cond:
            if self._closing:
                already = True
            else:
                already = False
                self._issued += 1
                # With a checkpoint, what waits for the bootstrap is saved, not fitted early.
                self._queue.append(_Item(self._issued, None, flush=self.checkpoint is None))
                self._closing = True
                self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif not already:
            # Never started: process what was queued here, so nothing accepted is lost.
            while self._step():
                pass
        if not already and not self._thread.is_alive():
            if self.abandoned and self.spool is not None:
                # The pipeline's state holds the unwritten records: saving it would claim them.
                log.warning("the store is failing: %d interactions not written stay in the spool %s; the "
                            "pipeline state is not saved, the next start replays them from the last checkpoint",
                            self.abandoned, self.spool.directory)
            else:
                self._save_checkpoint()

    def _save_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        with self._pipeline_lock:
            state = self.pipeline.to_state()
            # Every record of a mark up to this one is in the store or in this state.
            settled = self.spool.settled() if self.spool is not None else None
        self.checkpoint(state)
        self.checkpoints += 1
        self._last_checkpoint = self._monotonic()
        if settled is not None:
            assert self.spool is not None
            self.spool.trim(settled)

    # -- the worker side -------------------------------------------------------------------------
    def _run(self) -> None:
        while self._step(block=True):
            pass

    def _step(self, block: bool = False) -> bool:
        with self._cond:
            while block and not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return False
            items = self._take()
        error = None
        try:
            write, count = self._process(items)
            if not self._write_retrying(items, write):
                self._abandon(items)
                return False
            with self._cond:
                count()
        except Exception as exc:  # the worker must outlive a bad batch; the error goes to wait()
            log.exception("ingest batch of tickets %d-%d failed", items[0].ticket, items[-1].ticket)
            self.metrics.ingest_errors.inc()
            error = f"{type(exc).__name__}: {exc}"
        if self.spool is not None:
            for item in items:
                if item.mark is not None:
                    self.spool.done(item.mark)
            if self.checkpoint is None and items[0].records is None and items[0].flush:
                # No saved state: only a flush puts everything taken so far in the store.
                self.spool.trim(self.spool.settled())
        with self._cond:
            for item in items:
                self._depth -= len(item.records or ())
                if error is not None:
                    self._failed[item.ticket] = error
            while len(self._failed) > _FAILED_MEMORY:
                self._failed.popitem(last=False)
            self._done = items[-1].ticket
            self._cond.notify_all()
        if (error is None and self.checkpoint is not None and self.checkpoint_seconds > 0
                and self._monotonic() - self._last_checkpoint >= self.checkpoint_seconds):
            try:
                self._save_checkpoint()
            except Exception:  # a failed save must not stop ingest; the next one may succeed
                log.exception("saving the pipeline checkpoint failed")
                self.metrics.ingest_errors.inc()
        return True

    def _take(self) -> list[_Item]:
        """Whole submissions up to about batch_size interactions; a flush goes alone."""
        first = self._queue.popleft()
        items = [first]
        if first.records is None:
            return items
        n = len(first.records)
        while self._queue and self._queue[0].records is not None and n < self.batch_size:
            item = self._queue.popleft()
            items.append(item)
            n += len(item.records or ())
        return items

    def _write_retrying(self, items: list[_Item], write: Callable[[], None]) -> bool:
        """``write()`` until the store takes it (a :class:`StoreError` is retried with backoff);
        False if :meth:`close` came first. Other errors are raised."""
        what = f"ingest: writing tickets {items[0].ticket}-{items[-1].ticket} to the store"
        for delay in retry.STORE.delays():
            try:
                write()
            except StoreError as exc:
                self.metrics.store_retries.inc()
                self._store_failing = True
                self.metrics.store_failing.set(1)
                with self._cond:
                    closing = self._closing
                retry.log_failure(log, what, exc, None if closing else delay)
                with self._cond:
                    if closing or self._cond.wait_for(lambda: self._closing, delay):
                        return False
                continue
            if self._store_failing:
                log.warning("%s: the store took it", what)
                self._store_failing = False
                self.metrics.store_failing.set(0)
                if self.repair_after_outage is not None:
                    try:
                        self.repair_after_outage()
                    except Exception:  # the records are written; a failed check must not fail them
                        log.exception("checking the rollups after the store came back failed")
            return True
        raise AssertionError("unreachable: the delays never end")

    def _abandon(self, items: list[_Item]) -> None:
        """Closing while the store fails: ``items`` and everything still queued stay in the spool
        (not reported done), their waiters are told, the worker stops."""
        with self._cond:
            items = items + list(self._queue)
            self._queue.clear()
            n = sum(len(item.records or ()) for item in items)
            reason = ("StoreError: the store failed until the server stopped; the records stay in the spool "
                      "for the next start" if self.spool is not None else
                      "StoreError: the store failed until the server stopped; the records are lost (no spool)")
            for item in items:
                self._failed[item.ticket] = reason
            self._depth -= n
            self.abandoned = n
            self._done = self._issued
            self._cond.notify_all()
        log.error("stopping while the store fails: %d accepted interactions not written (%s)", n,
                  "in the spool" if self.spool is not None else "lost: no spool")

    def _process(self, items: list[_Item]) -> tuple[Callable[[], None], Callable[[], None]]:
        """Run the pipeline over ``items``; (the store writes of its output, which may be repeated,
        and the count of it, to call once with the lock held once they are done)."""
        flush = items[0].records is None and items[0].flush
        records = sorted((r for item in items for r in item.records or ()), key=event_order)
        out = Output()
        now = datetime.now(UTC)
        for start in range(0, len(records), self.batch_size):
            with self._pipeline_lock:
                out.extend(self.pipeline.process(records[start:start + self.batch_size], now))
        refresh = flush or self._monotonic() - self._last_refresh >= self.cluster_refresh_seconds
        with self._pipeline_lock:
            if flush:
                out.extend(self.pipeline.flush())
            clusters: dict[str, ClusterInfo] = {c.cluster_id: c for c in out.clusters}
            if refresh:
                # Sizes and last-seen times change with every answer; labels only now and then.
                clusters.update(self.pipeline.clusters)
            self._model_version += 1
            self._model = self.pipeline.cluster_model(self._model_version)
        if refresh:
            self._last_refresh = self._monotonic()

        def write() -> None:
            # Repeated after a store error: each table written here skips what it holds (ids,
            # (incident_id, sequence), cluster rows replaced, dead letters by source, position and
            # raw record), the notifier queues only deliveries not in its outbox, and the metrics
            # are counted after the last write that can fail.
            self.outputs.dead_letters(out.dead_letters(now, "http"))  # valid, but too far ahead of the stream
            self.outputs.write(out, list(clusters.values()))

        def count() -> None:
            self._totals.received += len(records)
            self._totals.add(out)

        return write, count
