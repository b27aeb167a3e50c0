"""Prometheus metrics of one serving process, in a registry of their own.

A registry per :class:`Metrics` (not prometheus-client's global one) so that two apps in one
process, as in the tests, never share or double-register counters.

>>> m = Metrics()
>>> m.ingested.inc(3)
>>> "faithwatch_interactions_ingested_total 3.0" in m.render().decode()
True
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingested = Counter("faithwatch_interactions_ingested", "valid interactions accepted for processing",
                                registry=r)
        self.invalid = Counter("faithwatch_interactions_invalid",
                               "records that broke the contract (sent to the dead-letter table)", registry=r)
        self.duplicates = Counter("faithwatch_interactions_duplicate",
                                  "interactions dropped because their interaction_id was already seen", registry=r)
        self.scored = Counter("faithwatch_interactions_scored", "interactions scored and written to the store",
                              registry=r)
        self.below_baseline = Counter("faithwatch_interactions_below_baseline",
                                      "scored interactions below their cluster's baseline band", registry=r)
        self.incident_events = Counter("faithwatch_incident_events", "incident events emitted, by kind",
                                       ["kind"], registry=r)
        self.ingest_errors = Counter("faithwatch_ingest_errors",
                                     "ingest batches that failed (a store error is retried instead: "
                                     "faithwatch_store_retries)", registry=r)
        self.store_retries = Counter("faithwatch_store_retries",
                                     "writes of the ingest worker to the store that failed and are retried "
                                     "(the store down or answering errors)", registry=r)
        self.store_failing = Gauge("faithwatch_store_failing",
                                   "1 while the ingest worker's writes to the store fail (it retries them)",
                                   registry=r)
        self.queue_depth = Gauge("faithwatch_ingest_queue_depth",
                                 "accepted interactions waiting for the ingest worker", registry=r)
        self.flushes_waiting = Gauge("faithwatch_flush_waiting",
                                     "POST /v1/flush calls queued behind the running flush", registry=r)
        self.request_latency = Histogram("faithwatch_http_request_duration_seconds",
                                         "HTTP request latency by route template", ["method", "route", "status"],
                                         registry=r)
        self.deliveries = Counter("faithwatch_notify_deliveries",
                                  "incident deliveries finished, by channel and outcome "
                                  "(sent, failed, given_up, skipped)",
                                  ["channel", "outcome"], registry=r)
        self.delivery_attempts = Counter("faithwatch_notify_attempts",
                                         "delivery attempts, by channel and outcome (sent, retry, failed)",
                                         ["channel", "outcome"], registry=r)
        self.delivery_latency = Histogram("faithwatch_notify_attempt_duration_seconds",
                                          "time of one delivery attempt (HTTP request to answer or error)", ["channel"],
                                          registry=r)
        self.gate_decisions = Counter("faithwatch_gate_decisions", "confidence-gate decisions (POST /v1/gate), by "
                                      "cluster (unassigned: close to none) and decision (answer, defer)",
                                      ["cluster", "decision"], registry=r)
        for kind in ("opened", "updated", "resolved"):
            self.incident_events.labels(kind=kind)

    def track_queue_depth(self, depth: Callable[[], int]) -> None:
        """Read the queue depth at scrape time."""
        self.queue_depth.set_function(depth)

    def track_counts(self, prefix: str, counts: Callable[[], dict[str, int]], help_text: str) -> None:
        """Expose a driver's own counters (read at scrape time) as ``PREFIX_<name>_total``."""
        self.registry.register(_Counts(prefix, counts, help_text))

    def serve(self, port: int, host: str = "0.0.0.0"):
        """Serve ``/metrics`` from a thread of its own (for drivers without an HTTP server: the
        Kafka worker); returns the server, whose ``shutdown()`` stops it."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
    def track_flushes_waiting(self, waiting: Callable[[], int]) -> None:
        self.flushes_waiting.set_function(waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Counts(Collector):
    """Counters a driver keeps in a dict, as Prometheus counters (one per key)."""

    def __init__(self, prefix: str, counts: Callable[[], dict[str, int]], help_text: str):
        self.prefix, self.counts, self.help_text = prefix, counts, help_text

    def collect(self):
        for name, value in sorted(self.counts().items()):
            yield CounterMetricFamily(f"{self.prefix}_{name}", f"{self.help_text}: {name}", value=value)
