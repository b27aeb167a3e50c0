"""One incident per pattern: its evidence, blast radius, root-cause hint and events.

An :class:`Incident` collects the :class:`Failure` s (below-baseline answers) of one cluster from
the estimated onset on. From them it derives what on-call needs in one alert: the sessions and
customers hit, the documents most failing answers share (and whether their passages are stale),
how many answers were confident but wrong, whether an irreversible action was involved, the
category's outreach rule, and the confidence gate that would have held them back.

Incident ids derive from the cluster and the onset, so every driver and every replay of the same
stream names the same incident the same way; ``(incident_id, sequence)`` keys each event.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pipelines.baseline import Band, ClusterBaseline
from pipelines.gate import suggest_gate
from pipelines.policy import Category, raise_severity
from pipelines.records import ContextRef, Example, IncidentEvent, SharedDocument

# A document is "shared" when at least this share of failing answers retrieved it.
SHARED_DOCUMENT_MIN_SHARE = 0.3


@dataclass(frozen=True)
class DocSeen:
    doc_id: str
    doc_version: str | None
    stale: bool
    indexed_at: datetime | None
    doc_updated_at: datetime | None


@dataclass(frozen=True)
class Failure:
    """A below-baseline answer, kept as evidence."""

    interaction_id: str
    session_key: str
    session_id: str | None
    customer_id: str | None
    at: datetime
    query: str
    response: str | None
    faithfulness: float
    confidence: float | None
    docs: tuple[DocSeen, ...]
    confident_wrong: bool
    irreversible: bool

    @property
    def stale(self) -> bool:
        return any(d.stale for d in self.docs)

    def to_state(self) -> dict:
        return {
            "interaction_id": self.interaction_id, "session_key": self.session_key,
            "session_id": self.session_id, "customer_id": self.customer_id,
            "at": self.at.isoformat(), "query": self.query, "response": self.response,
            "faithfulness": self.faithfulness, "confidence": self.confidence,
            "docs": [[d.doc_id, d.doc_version, d.stale,
                      d.indexed_at.isoformat() if d.indexed_at else None,
                      d.doc_updated_at.isoformat() if d.doc_updated_at else None] for d in self.docs],
            "confident_wrong": self.confident_wrong, "irreversible": self.irreversible,
        }

    @classmethod
    def from_state(cls, s: dict) -> Failure:
        def dt(v):
            return datetime.fromisoformat(v) if v else None
        docs = tuple(DocSeen(d[0], d[1], bool(d[2]), dt(d[3]), dt(d[4])) for d in s["docs"])
        return cls(**{**s, "at": datetime.fromisoformat(s["at"]), "docs": docs})


def distinct_sessions(failures: list[Failure]) -> int:
    return len({f.session_key for f in failures})


def shared_documents(failures: list[Failure]) -> tuple[SharedDocument, ...]:
    """Document versions retrieved by at least 30 % of the failing answers, most shared first."""
    if not failures:
        return ()
    counts: Counter[tuple[str, str | None]] = Counter()
    seen: dict[tuple[str, str | None], DocSeen] = {}
    stale: set[tuple[str, str | None]] = set()
    for f in failures:
        keys = set()
        for d in f.docs:
            key = (d.doc_id, d.doc_version)
            keys.add(key)
            seen.setdefault(key, d)
            if d.stale:
                stale.add(key)
                seen[key] = d
        counts.update(keys)
    n = len(failures)
    out = []
    for (doc_id, version), c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or "")):
        if c / n < SHARED_DOCUMENT_MIN_SHARE:
            continue
        d = seen[(doc_id, version)]
        out.append(SharedDocument(doc_id=doc_id, doc_version=version, count=c, share=round(c / n, 4),
                                  stale=(doc_id, version) in stale, indexed_at=d.indexed_at,
                                  doc_updated_at=d.doc_updated_at))
    return tuple(out)


@dataclass
class Incident:
    incident_id: str
    cluster_id: str
    onset: datetime
    detected_at: datetime
    failures: list[Failure]
    observed: int = 0          # answers in the cluster since onset (failing or not)
    sequence: int = -1
    reported_sessions: int = 0
    last_event_at: datetime | None = None
    resolved_at: datetime | None = None
    statistic: float = 0.0
    threshold: float = 0.0
    extra: dict = field(default_factory=dict)

    @staticmethod
    def make_id(cluster_id: str, onset: datetime) -> str:
        return f"inc-{cluster_id}-{onset.strftime('%Y%m%dT%H%M%SZ')}"

    @property
    def sessions(self) -> list[str]:
        return sorted({f.session_key for f in self.failures})

    @property
    def customers(self) -> list[str]:
        return sorted({f.customer_id for f in self.failures if f.customer_id})

    def event(self, kind: str, at: datetime, *, label: str, category: Category,
              baseline: ClusterBaseline, band: Band, examples: int,
              gate_target: float = 0.9) -> IncidentEvent:
        self.sequence += 1
        self.last_event_at = at
        sessions = self.sessions
        self.reported_sessions = len(sessions)
        customers = self.customers
        docs = shared_documents(self.failures)
        confident_wrong = sum(1 for f in self.failures if f.confident_wrong)
        irreversible = sum(1 for f in self.failures if f.irreversible)
        stale = sum(1 for f in self.failures if f.stale)
        severity = raise_severity(category.severity) if irreversible else category.severity
        gate = suggest_gate([f.confidence for f in self.failures if f.confidence is not None],
                            baseline, current_gate=category.gate, target=gate_target)
        observed_rate = len(self.failures) / self.observed if self.observed else 0.0
        ev = IncidentEvent(
            event=kind,  # type: ignore[arg-type]
            incident_id=self.incident_id,
            sequence=self.sequence,
            cluster_id=self.cluster_id,
            cluster_label=label,
            category=category.name,
            severity=severity,
            status="resolved" if kind == "resolved" else "open",
            onset_at=self.onset,
            detected_at=self.detected_at,
            event_at=at,
            resolved_at=self.resolved_at,
            below_baseline_count=len(self.failures),
            affected_sessions=len(sessions),
            affected_customers=len(customers),
            session_ids=tuple(sessions),
            customer_ids=tuple(customers),
            confident_wrong_count=confident_wrong,
            outreach_required=category.outreach,
            irreversible_actions=irreversible,
            suggested_gate=gate,
            shared_documents=docs,
            stale_contexts=stale,
            baseline_faithfulness=None if band.median != band.median else round(band.median, 4),
            baseline_low=None if band.low == float("-inf") else round(band.low, 4),
            baseline_below_rate=round(band.below_rate, 4),
            observed_below_rate=round(observed_rate, 4),
            statistic=round(self.statistic, 4),
            threshold=round(self.threshold, 4),
            summary="",
            examples=tuple(_example(f) for f in self.failures[:examples]),
        )
        return ev.model_copy(update={"summary": summarise(ev)})


def _example(f: Failure) -> Example:
    return Example(interaction_id=f.interaction_id, session_id=f.session_id,
                   customer_id=f.customer_id, timestamp=f.at, query=f.query, response=f.response,
                   faithfulness=round(f.faithfulness, 4), confidence=f.confidence,
                   doc_refs=tuple(ContextRef(doc_id=d.doc_id, doc_version=d.doc_version, stale=d.stale)
                                  for d in f.docs))


def _days(a: datetime, b: datetime) -> str:
    d = (b - a).total_seconds() / 86400
    return f"{d:.0f} days" if d >= 1.5 else f"{d * 24:.0f} hours"


def summarise(ev: IncidentEvent) -> str:
    """One paragraph an on-call engineer can act on without opening anything else."""
    when = ev.onset_at.strftime("%Y-%m-%d %H:%M UTC")
    head = {"opened": "Pattern of below-baseline answers", "updated": "Still growing",
            "resolved": "Resolved"}[ev.event]
    parts = [f"{head} in {ev.category} cluster {ev.cluster_id} \"{ev.cluster_label}\" since {when}: "
             f"{ev.below_baseline_count} failing answers in {ev.affected_sessions} sessions "
             f"({ev.affected_customers} customers)."]
    if ev.shared_documents:
        d = ev.shared_documents[0]
        doc = f"{d.doc_id} {d.doc_version}" if d.doc_version else d.doc_id
        cause = f"{d.count} of {ev.below_baseline_count} failing answers cite {doc}"
        if d.stale and d.indexed_at and d.doc_updated_at:
            cause += (f", a stale passage: indexed {d.indexed_at:%Y-%m-%d}, "
                      f"{_days(d.indexed_at, d.doc_updated_at)} before its source changed")
        parts.append(cause + ".")
    if ev.confident_wrong_count:
        gate = ev.suggested_gate.current_gate if ev.suggested_gate else None
        parts.append(f"{ev.confident_wrong_count} were confident but wrong"
                     + (f" (confidence >= gate {gate:.2f})." if gate is not None else "."))
    if ev.suggested_gate:
        g = ev.suggested_gate
        parts.append(f"A gate at {g.threshold:.2f} would have held back {g.failing_held_back} of "
                     f"{g.failing_total} (and {g.faithful_held_back_share:.0%} of faithful answers).")
    if ev.irreversible_actions:
        parts.append(f"{ev.irreversible_actions} irreversible actions were taken.")
    if ev.outreach_required:
        parts.append("Customer outreach required.")
    return " ".join(parts)
