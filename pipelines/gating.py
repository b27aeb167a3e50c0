"""The live confidence gate: should the product show this answer, or defer it to a human?

A product asks before it shows an answer (``POST /v1/gate``): the query is placed, read-only, in
the :class:`ClusterModel` the stream last published, and :func:`decide` compares the answer's
confidence with the gate that applies to that cluster now. Where the threshold comes from,
strongest first (every step is said in ``reasons``):

1. an operator's override for the cluster, else one for its intent family (:class:`Override`);
2. else the category's ``gate`` (``alerts/categories.yaml``);
3. an irreversible action (``reversible`` false) never gets less than the category's
   ``irreversible_gate``;
4. while an incident is open on the cluster or its family, the category's ``on_incident``:
   ``defer`` (every answer deferred), ``{raise_to: X}`` (the threshold is at least X) or ``none``.
   It ends when the incident resolves: the next published model no longer lists it.

The answer is shown when ``confidence >= threshold`` (the gate's meaning in the detector too:
answers at or above it are shown without review).

Pure: no I/O, no clock; the model is an immutable value (its matrix is read-only), so any number
of threads may read one while the stream builds the next.

>>> from pipelines.policy import Category
>>> pricing = Category(name="pricing", gate=0.8, irreversible_gate=0.9, on_incident="defer")
>>> place = Placement("c003", "f003", "pricing", 0.91)
>>> d = decide(place, 0.84, pricing)
>>> d.decision, d.threshold
('answer', 0.8)
>>> decide(place, 0.84, pricing, reversible=False).decision
'defer'
>>> o = Override("c003", 0.92, reason="stale pricing table", actor="ana", at="2026-11-02T10:00:00+00:00", version=1)
>>> decide(place, 0.84, pricing, overrides={"c003": o}).threshold
0.92
>>> inc = OpenIncident("inc-c003-20261102T100000Z", frozenset({"c003"}), frozenset({"f003"}))
>>> d = decide(place, 0.99, pricing, incidents=[inc])
>>> d.decision, d.incident_id
('defer', 'inc-c003-20261102T100000Z')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipelines.labels import decode_array, encode_array
from pipelines.policy import Category, CategoryPolicy, RaiseTo

Decision = Literal["answer", "defer"]
Source = Literal["cluster override", "family override", "category gate"]


@dataclass(frozen=True)
class Override:
    """An operator's gate for one cluster or one intent family (``scope``), with who/when/why.

    ``version`` counts the changes of that scope (1 for the first ``gates set``)."""

    scope: str
    threshold: float
    reason: str
    actor: str
    at: str  # ISO 8601, as stored
    version: int


@dataclass(frozen=True)
class OpenIncident:
    """An open incident as the gate needs it: its member clusters and their families."""

    incident_id: str
    clusters: frozenset[str]
    family_ids: frozenset[str]


@dataclass(frozen=True)
class Placement:
    """Where a query falls: the cluster the stream would report it under (None: no cluster is close
    enough), its family and category, and the cosine to the cluster's centroid."""

    cluster_id: str | None
    family_id: str | None
    category: str
    similarity: float


@dataclass(frozen=True)
class GateDecision:
    cluster_id: str | None
    family_id: str | None
    category: str
    threshold: float
    decision: Decision
    reasons: tuple[str, ...]
    incident_id: str | None
    source: Source

    def as_dict(self) -> dict:
        return {"cluster_id": self.cluster_id, "family_id": self.family_id, "category": self.category,
                "threshold": self.threshold, "decision": self.decision, "reasons": list(self.reasons),
                "incident_id": self.incident_id, "source": self.source}


def active_gate(cluster_id: str | None, family_id: str | None, category: Category,
                overrides: Mapping[str, Override]) -> tuple[float, Source, Override | None]:
    """The gate before action and incidents: the cluster's override, its family's, or the category's.

    >>> active_gate("c001", "f001", Category(name="x", gate=0.8), {})
    (0.8, 'category gate', None)
    """
    for scope, source in ((cluster_id, "cluster override"), (family_id, "family override")):
        if scope is not None and scope in overrides:
            o = overrides[scope]
            return o.threshold, source, o  # type: ignore[return-value]
    return category.gate, "category gate", None


def _incident_on(place: Placement, incidents: Sequence[OpenIncident]) -> tuple[OpenIncident, str] | None:
    """The open incident that concerns ``place``: one on its cluster first, then one on its family
    (ties: the smallest id, so the answer does not depend on the order given)."""
    if place.cluster_id is None:
        return None
    ordered = sorted(incidents, key=lambda i: i.incident_id)
    for inc in ordered:
        if place.cluster_id in inc.clusters:
            return inc, f"cluster {place.cluster_id}"
    for inc in ordered:
        if place.family_id is not None and place.family_id in inc.family_ids:
            return inc, f"family {place.family_id}"
    return None


def decide(place: Placement, confidence: float, category: Category, *, reversible: bool = True,
           overrides: Mapping[str, Override] | None = None,
           incidents: Sequence[OpenIncident] = ()) -> GateDecision:
    """Answer or defer, with the threshold and why (see the module docstring for the rules)."""
    overrides = overrides or {}
    reasons: list[str] = []
    if place.cluster_id is None:
        reasons.append(f"the query is close to no cluster: category {category.name} (the default)")
    threshold, source, override = active_gate(place.cluster_id, place.family_id, category, overrides)
    if override is not None:
        reasons.append(f"threshold {threshold:.2f} from the operator override on {source.split()[0]} "
                       f"{override.scope} (v{override.version} by {override.actor} at {override.at}: "
                       f"{override.reason})")
    else:
        reasons.append(f"threshold {threshold:.2f} from category {category.name}'s gate")
    if not reversible and category.strict_gate > threshold:
        threshold = category.strict_gate
        reasons.append(f"irreversible action: threshold raised to category {category.name}'s irreversible_gate "
                       f"{threshold:.2f}")
    elif not reversible:
        reasons.append(f"irreversible action: threshold already at least category {category.name}'s "
                       f"irreversible_gate {category.strict_gate:.2f}")
    found = _incident_on(place, incidents)
    incident_id = None
    forced_defer = False
    if found is not None:
        inc, where = found
        incident_id = inc.incident_id
        policy = category.on_incident
        if policy == "defer":
            forced_defer = True
            reasons.append(f"incident {inc.incident_id} is open on {where}: category {category.name}'s "
                           f"on_incident is defer (every answer deferred until it resolves)")
        elif isinstance(policy, RaiseTo):
            if policy.raise_to > threshold:
                threshold = policy.raise_to
                reasons.append(f"incident {inc.incident_id} is open on {where}: threshold raised to "
                               f"{threshold:.2f} (on_incident raise_to) until it resolves")
            else:
                reasons.append(f"incident {inc.incident_id} is open on {where}: threshold already at least "
                               f"on_incident raise_to {policy.raise_to:.2f}")
        else:
            reasons.append(f"incident {inc.incident_id} is open on {where}: category {category.name}'s "
                           f"on_incident is none (the gate is unchanged)")
    threshold = round(threshold, 4)
    if forced_defer:
        decision: Decision = "defer"
    elif confidence >= threshold:
        decision = "answer"
        reasons.append(f"confidence {confidence:.2f} >= threshold {threshold:.2f}: answer")
    else:
        decision = "defer"
        reasons.append(f"confidence {confidence:.2f} < threshold {threshold:.2f}: defer")
    return GateDecision(place.cluster_id, place.family_id, category.name, threshold, decision, tuple(reasons),
                        incident_id, source)


@dataclass(frozen=True)
class ClusterModel:
    """The clusters as the stream last published them: enough to place a query without the
    clusterer (centroids as read-only rows, ids, families, categories) and the open incidents.

    ``assign_threshold`` and ``attach_threshold`` are the clusterer's: a query at least
    ``assign_threshold`` close to its nearest centroid would join that cluster, one at least
    ``attach_threshold`` close would be reported under it; below, it is in no cluster.
    """

    cluster_ids: tuple[str, ...] = ()
    centroids: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    family_ids: tuple[str | None, ...] = ()
    categories: tuple[str, ...] = ()
    assign_threshold: float = 1.0
    attach_threshold: float = 1.0
    incidents: tuple[OpenIncident, ...] = ()
    version: int = 0

    def __post_init__(self):
        self.centroids.flags.writeable = False
        if not (len(self.cluster_ids) == len(self.family_ids) == len(self.categories) == len(self.centroids)):
            raise ValueError("a ClusterModel needs one id, family, category and centroid per cluster")

    def to_state(self) -> dict:
        """What a process without the pipeline needs to place queries, JSON-safe (centroids exact,
        base64); not the open incidents (a reader takes those from the store) nor the version."""
        return {"cluster_ids": list(self.cluster_ids), "centroids": encode_array(self.centroids),
                "family_ids": list(self.family_ids), "categories": list(self.categories),
                "assign_threshold": self.assign_threshold, "attach_threshold": self.attach_threshold}

    @classmethod
    def from_state(cls, state: dict, *, version: int = 0,
                   incidents: tuple[OpenIncident, ...] = ()) -> ClusterModel:
        """Inverse of :meth:`to_state`.

        >>> m = ClusterModel(("c001",), np.eye(1, 4, dtype=np.float32), ("f001",), ("pricing",), 0.8, 0.7)
        >>> r = ClusterModel.from_state(m.to_state(), version=3)
        >>> r.same_clusters(m), r.version, r.centroids.dtype
        (True, 3, dtype('float32'))
        """
        return cls(tuple(state["cluster_ids"]), decode_array(state["centroids"]), tuple(state["family_ids"]),
                   tuple(state["categories"]), float(state["assign_threshold"]), float(state["attach_threshold"]),
                   incidents, version)

    def same_clusters(self, other: ClusterModel) -> bool:
        """Whether ``other`` places every query as this one does (incidents and version aside)."""
        return (self.cluster_ids == other.cluster_ids and self.family_ids == other.family_ids
                and self.categories == other.categories and self.assign_threshold == other.assign_threshold
                and self.attach_threshold == other.attach_threshold
                and self.centroids.dtype == other.centroids.dtype
                and np.array_equal(self.centroids, other.centroids))

    def place(self, vectors: np.ndarray, default_category: str) -> list[Placement]:
        """Where each row of ``vectors`` (query embeddings) falls; changes nothing.

        The vectors are rounded as the clusterer stores a query (unit length, float16), so a
        placement agrees with what ``OnlineClusterer.assign`` would answer for it now."""
        x = np.asarray(vectors, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        x = x.astype(np.float16).astype(np.float64)
        if not self.cluster_ids:
            return [Placement(None, None, default_category, -1.0) for _ in range(len(x))]
        sims = x @ self.centroids.T
        best = np.argmax(sims, axis=1)
        out = []
        for k, b in enumerate(best.tolist()):
            sim = float(sims[k, b])
            if sim >= min(self.assign_threshold, self.attach_threshold):
                out.append(Placement(self.cluster_ids[b], self.family_ids[b], self.categories[b], sim))
            else:
                out.append(Placement(None, None, default_category, sim))
        return out


def gate_many(model: ClusterModel, vectors: np.ndarray, confidences: Sequence[float],
              reversible: Sequence[bool], policy: CategoryPolicy,
              overrides: Mapping[str, Override]) -> list[GateDecision]:
    """:func:`decide` for a batch of embedded queries against one model (one matrix product)."""
    places = model.place(vectors, policy.default)
    return [decide(p, c, policy.get(p.category), reversible=r, overrides=overrides, incidents=model.incidents)
            for p, c, r in zip(places, confidences, reversible, strict=True)]
