"""Confidence gates as a live decision: the service behind ``POST /v1/gate`` and ``faithwatch gates``.

:class:`GateService` answers a product's "show this answer or defer it?" for one query or a
batch: it embeds the queries (its own cache and lock in front of the shared embedding model, so a
gate call never waits for the ingest thread), places them in the :class:`~pipelines.gating.ClusterModel`
the ingest thread last published (an immutable value swapped after each batch: no pipeline lock;
in Kafka mode the one the sequence stage published, with the store's open incidents:
services/kafka/gate_model.py, whose source raises :class:`ModelUnavailable` until one arrived),
and applies :func:`pipelines.gating.decide` with the operators' overrides. A gate call is not an
interaction: it changes no cluster, baseline or stored interaction. Each decision is counted in
``faithwatch_gate_decisions_total{cluster, decision}`` and, per minute, in the store's
``gate_decision_minutes`` (the decision log, written every ``flush_seconds`` by a thread of its
own after :meth:`GateService.start`, and at :meth:`GateService.close`).

Overrides (:func:`set_override`, :func:`unset_override`) are rows of ``gate_overrides``
(migration 0007), versioned per scope with who/when/why. The service's thread re-reads them every
``refresh_seconds`` (a change made through the API applies at once), so a ``faithwatch gates set``
against a ClickHouse server reaches a running API within that time.

:func:`gate_table` is what ``gates list`` and ``GET /v1/gates`` show: per cluster the active gate
and its source beside the suggested gate of its latest incident with its cost;
:func:`incident_gates` is the same beside one incident (``GET /v1/incidents/{id}``, ``incidents show``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pipelines.embedding import CachedEmbedder, Embedder
from pipelines.errors import FaithwatchError
from pipelines.gating import ClusterModel, OpenIncident, Override, Placement, active_gate, decide, gate_many
from pipelines.policy import CategoryPolicy
from services.metrics import Metrics
from services.store.base import Row, Store

GATE_TABLE_COLUMNS = ["cluster_id", "family_id", "label", "category", "active_gate", "source", "override_version",
                      "override_by", "override_at", "override_reason", "suggested_gate", "suggested_by_incident",
                      "failing_held_back", "failing_total", "faithful_held_back_share"]
log = logging.getLogger("faithwatch.gates")

HISTORY_COLUMNS = ["scope", "version", "action", "threshold", "actor", "at", "reason"]


class GateError(FaithwatchError):
    """An override that cannot be set or removed (threshold out of range, no reason, ...)."""


class UnknownScope(GateError):
    """No cluster or family by that id, or no active override to remove."""


class ModelUnavailable(GateError):
    """No cluster model to place queries in yet (Kafka mode before the first one arrived): 503."""


@dataclass(frozen=True)
class GateRequest:
    query: str
    confidence: float
    reversible: bool = True


def active_overrides(history: Sequence[Row]) -> dict[str, Override]:
    """The active override per scope from :meth:`Store.gate_override_history` rows: the highest
    version of each scope when it is a ``set``.

    >>> rows = [{"scope": "c001", "version": 1, "action": "set", "threshold": 0.9, "reason": "r",
    ...          "actor": "a", "at": "t"}, {"scope": "c001", "version": 2, "action": "unset",
    ...          "threshold": None, "reason": "fixed", "actor": "a", "at": "t"}]
    >>> active_overrides(rows), sorted(active_overrides(rows[:1]))
    ({}, ['c001'])
    """
    latest: dict[str, Row] = {}
    for row in history:
        if row["scope"] not in latest or row["version"] > latest[row["scope"]]["version"]:
            latest[row["scope"]] = row
    return {scope: Override(scope, float(r["threshold"]), r["reason"], r["actor"], _iso(r["at"]), int(r["version"]))
            for scope, r in latest.items() if r["action"] == "set"}


def _iso(at: object) -> str:
    return at.isoformat() if isinstance(at, datetime) else str(at)


def _known_scope(store: Store, scope: str) -> None:
    if store.query("SELECT count() AS n FROM clusters WHERE cluster_id = {s:String} OR family_id = {s:String}",
                   {"s": scope})[0]["n"] == 0:
        raise UnknownScope(f"no cluster or intent family {scope!r} in the store (see `faithwatch clusters list`)")


def _change(store: Store, scope: str, action: str, threshold: float | None, reason: str, actor: str,
            at: datetime) -> Row:
    if not reason.strip():
        raise GateError("a gate change needs a reason (--reason): it is kept with the change")
    _known_scope(store, scope)
    versions = [r["version"] for r in store.gate_override_history(scope)]
    row = {"scope": scope, "version": max(versions, default=0) + 1, "action": action, "threshold": threshold,
           "reason": reason.strip(), "actor": actor, "at": at}
    store.insert_gate_override(row)
    return row


def set_override(store: Store, scope: str, threshold: float, reason: str, actor: str, at: datetime) -> Row:
    """Set the gate of cluster or family ``scope``; the new version's row."""
    if not 0.0 <= threshold <= 1.0:
        raise GateError(f"a gate is a confidence between 0 and 1, got {threshold}")
    return _change(store, scope, "set", round(float(threshold), 4), reason, actor, at)


def unset_override(store: Store, scope: str, reason: str, actor: str, at: datetime) -> Row:
    """Remove ``scope``'s override (the category's gate applies again); the new version's row."""
    if scope not in active_overrides(store.gate_override_history(scope)):
        raise UnknownScope(f"{scope!r} has no active gate override")
    return _change(store, scope, "unset", None, reason, actor, at)


def gate_table(store: Store, policy: CategoryPolicy) -> list[Row]:
    """Per stored cluster: the active gate and where it comes from, and the suggested gate of the
    latest incident with the cluster among its members, with its cost."""
    overrides = active_overrides(store.gate_override_history())
    latest: dict[str, Row] = {}
    for inc in store.list_incidents(limit=100_000):  # most recently detected first
        for cid in inc.get("clusters") or [inc["cluster_id"]]:
            latest.setdefault(cid, inc)
    rows = []
    for c in store.list_clusters():
        inc = latest.get(c["cluster_id"])
        g = (inc or {}).get("suggested_gate") or {}
        rows.append({
            **_active_row(c, policy, overrides),
            "suggested_gate": g.get("threshold"), "suggested_by_incident": inc["incident_id"] if g else None,
            "failing_held_back": g.get("failing_held_back"), "failing_total": g.get("failing_total"),
            "faithful_held_back_share": g.get("faithful_held_back_share")})
    return rows


def _active_row(c: Mapping, policy: CategoryPolicy, overrides: Mapping[str, Override]) -> Row:
    """One cluster's active gate, its source and the override behind it (if any)."""
    cid, fid = c["cluster_id"], c.get("family_id")
    threshold, source, o = active_gate(cid, fid, policy.get(c["category"]), overrides)
    return {"cluster_id": cid, "family_id": fid, "label": c.get("label"), "category": c["category"],
            "active_gate": threshold, "source": source, "override_version": o.version if o else None,
            "override_by": o.actor if o else None, "override_at": o.at if o else None,
            "override_reason": o.reason if o else None}


def incident_gates(store: Store, policy: CategoryPolicy, incident: Mapping) -> Row:
    """What the incident view shows beside its suggested gate: the active gate of each member
    cluster (``active``: :data:`GATE_TABLE_COLUMNS`' active part), the suggested gate with its cost
    (``suggested``, or None), and the one command that adopts it (``adopt``, or None). The command
    sets the gate of the incident's intent family when the incident spans several clusters of one
    family, else of its cluster."""
    overrides = active_overrides(store.gate_override_history())
    members = list(incident.get("clusters") or [incident["cluster_id"]])
    known = {c["cluster_id"]: c for c in store.list_clusters() if c["cluster_id"] in members}
    active = [_active_row(known.get(cid) or {"cluster_id": cid, "category": incident["category"],
                                             "label": incident.get("cluster_label")}, policy, overrides)
              for cid in members]
    suggested = incident.get("suggested_gate") or None
    adopt = None
    if suggested:
        families = {r["family_id"] for r in active}
        scope = families.pop() if len(members) > 1 and len(families) == 1 and None not in families \
            else incident["cluster_id"]
        adopt = (f'faithwatch gates set {scope} {suggested["threshold"]:.2f} '
                 f'--reason "adopt the gate suggested by {incident["incident_id"]}"')
    return {"active": active, "suggested": suggested, "adopt": adopt}


def gate_while_open(event: Mapping, policy: CategoryPolicy, confidence: float = 0.84) -> str:
    """One line for an opened incident (the demo's): what ``POST /v1/gate`` answers, while it is
    open and with no override, for an answer in its first cluster at ``confidence``."""
    cid = event["cluster_id"]
    category = policy.get(event["category"])
    families = tuple(event.get("family_ids") or ())
    inc = OpenIncident(event["incident_id"], frozenset(event.get("clusters") or (cid,)), frozenset(families))
    d = decide(Placement(cid, families[0] if families else None, category.name, 1.0), confidence, category,
               incidents=[inc])
    verdict = "deferred" if d.decision == "defer" else "answered"
    why = next(r for r in d.reasons if r.startswith(f"incident {inc.incident_id}")).split(": ", 1)[1]
    return (f"  -> while it is open, POST /v1/gate: {category.name} answers in {cid} at confidence {confidence:.2f} "
            f"are {verdict} (threshold {d.threshold:.2f}; {why})")


class GateService:
    """Gate decisions against the published cluster model (see the module docstring)."""

    def __init__(self, embedder: Embedder, policy: CategoryPolicy, model: Callable[[], ClusterModel | None],
                 store: Store, metrics: Metrics | None = None, *, cache_size: int = 10_000,
                 refresh_seconds: float = 2.0, flush_seconds: float = 10.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        # The shared model (onnxruntime sessions run concurrently), not the ingest path's cache:
        # CachedEmbedder is not thread-safe, so the gate path has its own, behind its own lock.
        inner = embedder.inner if isinstance(embedder, CachedEmbedder) else embedder
        self.embedder = CachedEmbedder(inner, cache_size) if cache_size else inner
        self._embed_lock = threading.Lock()
        self.policy = policy
        self.model = model
        self.store = store
        self.metrics = metrics or Metrics()
        self.refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._overrides: Mapping[str, Override] = {}
        self._loaded_at: float | None = None
        # The decision log: counts per (minute, cluster, category, decision) not yet written.
        self._clock = clock
        self._counts: Counter[tuple[datetime, str, str, str]] = Counter()
        self._counts_lock = threading.Lock()
        self.flush_seconds = flush_seconds
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        _ = inner.dim  # load the model now, not on a racing first call

    def overrides(self) -> Mapping[str, Override]:
        """The active overrides. After :meth:`start` the background thread re-reads them every
        ``refresh_seconds`` and a gate call never queries the store (except after a change made
        through the API, or before the first read); without it, the call re-reads them when older."""
        now = self._monotonic()
        stale = self._loaded_at is None or (self._flusher is None and now - self._loaded_at >= self.refresh_seconds)
        if stale:
            self.reload()
        return self._overrides

    def reload(self) -> None:
        """Read the active overrides from the store now."""
        self._overrides = active_overrides(self.store.gate_override_history())
        self._loaded_at = self._monotonic()

    def invalidate(self) -> None:
        """Re-read the overrides on the next call (after a change)."""
        self._loaded_at = None

    def decide(self, requests: Sequence[GateRequest]) -> list[dict]:
        """One decision per request, in order (``as_dict`` of :class:`~pipelines.gating.GateDecision`)."""
        if not requests:
            return []
        with self._embed_lock:
            vectors = self.embedder.encode([r.query for r in requests])
        model = self.model() or ClusterModel()
        decisions = gate_many(model, vectors, [r.confidence for r in requests], [r.reversible for r in requests],
                              self.policy, self.overrides())
        counter = self.metrics.gate_decisions
        minute = self._clock().astimezone(UTC).replace(second=0, microsecond=0)
        with self._counts_lock:
            for d in decisions:
                cluster = d.cluster_id or "unassigned"
                counter.labels(cluster, d.decision).inc()
                self._counts[(minute, cluster, d.category, d.decision)] += 1
        return [d.as_dict() for d in decisions]

    # -- the decision log in the store -------------------------------------------------------------
    def flush(self) -> int:
        """Write the decision counts gathered since the last flush; how many rows. Counts that
        fail to write are kept for the next flush."""
        with self._counts_lock:
            counts, self._counts = self._counts, Counter()
        rows = [{"minute": m, "cluster_id": c, "category": cat, "decision": d, "calls": n}
                for (m, c, cat, d), n in sorted(counts.items())]
        try:
            self.store.insert_gate_decisions(rows)
        except Exception:
            with self._counts_lock:
                self._counts.update(counts)
            raise
        return len(rows)

    def start(self) -> GateService:
        """From a thread of its own: re-read the overrides every ``refresh_seconds`` and write the
        decision log every ``flush_seconds``, so no gate call waits for the store."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="faithwatch-gate-log", daemon=True)
            self._flusher.start()
        return self

    def _flush_loop(self) -> None:
        step = max(0.01, min(self.refresh_seconds, self.flush_seconds))
        last_flush = self._monotonic()
        while not self._stop.wait(step):
            try:
                self.reload()
            except Exception:  # the overrides read last stay in force until the store answers
                log.exception("reading the gate overrides failed")
            if self._monotonic() - last_flush >= self.flush_seconds:
                last_flush = self._monotonic()
                try:
                    self.flush()
                except Exception:  # the store may be back at the next flush; the counts wait for it
                    log.exception("writing the gate decision log failed")

    def close(self) -> None:
        """Stop the flushing thread and write what is left."""
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
