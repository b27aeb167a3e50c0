"""One incident per pattern: its evidence, blast radius, root-cause hint and events.

An :class:`Incident` is a pattern, not a cluster: it collects the :class:`Failure` s
(below-baseline answers) of every :class:`Member` cluster from that member's first failure on.
A pattern found in one cluster or in one intent family opens it; evidence elsewhere that shares
its cause (the same document version among the failing answers, or the same family) joins it
(see :mod:`pipelines.detector`). From the failures it derives what on-call needs in one alert:
the sessions and customers hit, the documents most failing answers share (and whether their
passages are stale), how many answers were confident but wrong, whether an irreversible action
was involved, and, over all members, the strictest category's severity and outreach rule and the
confidence gate that would have held the answers back.

Incident ids derive from the opening cluster (or family) and the onset, so every driver and
every replay of the same stream names the same incident the same way; ``(incident_id,
sequence)`` keys each event.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pipelines.baseline import Band, ClusterBaseline
from pipelines.cusum import BernoulliCusum
from pipelines.gate import suggest_gate
from pipelines.policy import SEVERITIES, Category, raise_severity
from pipelines.records import ContextRef, Example, IncidentEvent, IncidentMember, SharedDocument

# A document is "shared" when at least this share of failing answers retrieved it.
SHARED_DOCUMENT_MIN_SHARE = 0.3
# ...and it is the pattern's cause (what correlates evidence elsewhere with it) when more than
# this share did: a majority, so two causes can never both claim one set of failures.
CAUSE_MIN_SHARE = 0.5

DocKey = tuple[str, str | None]


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
    cluster_id: str = ""

    @property
    def stale(self) -> bool:
        return any(d.stale for d in self.docs)

    @property
    def doc_keys(self) -> frozenset[DocKey]:
        return frozenset((d.doc_id, d.doc_version) for d in self.docs)

    @property
    def top_doc(self) -> DocKey | None:
        """The best-ranked retrieved document (contexts come in retrieval order)."""
        return (self.docs[0].doc_id, self.docs[0].doc_version) if self.docs else None

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
            "cluster_id": self.cluster_id,
        }

    @classmethod
    def from_state(cls, s: dict) -> Failure:
        def dt(v):
            return datetime.fromisoformat(v) if v else None
        docs = tuple(DocSeen(d[0], d[1], bool(d[2]), dt(d[3]), dt(d[4])) for d in s["docs"])
        return cls(**{**s, "at": datetime.fromisoformat(s["at"]), "docs": docs})


def distinct_sessions(failures: Sequence[Failure]) -> int:
    return len({f.session_key for f in failures})


def cause_of(failures: Sequence[Failure]) -> DocKey | None:
    """The document version a majority of ``failures`` retrieved (the most retrieved; among
    those, the one retrieved first most often, then by id), or None: what ties this evidence to
    a cause. (Ties are common: an intent's answers retrieve its own passage first and a
    neighbour's below it, in every answer of some clusters. By id alone a CLINC150
    `restaurant_reviews` spike's family alarm named the neighbour, `restaurant_reservation`, as
    its cause, so it did not join the incident its document had opened: two pages.)

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 11, 2, tzinfo=UTC)
    >>> def f(*docs):
    ...     return Failure("i", "s", "s", None, t, "q", "a", 0.1, 0.9,
    ...                    tuple(DocSeen(d, "v3", False, None, None) for d in docs), False, False)
    >>> cause_of([f("price", "faq"), f("price"), f("app")]), cause_of([f("a"), f("b")])
    (('price', 'v3'), None)
    >>> cause_of([f("reviews", "reservation"), f("reviews", "reservation")])
    ('reviews', 'v3')
    """
    if not failures:
        return None
    counts: Counter[DocKey] = Counter()
    first: Counter[DocKey] = Counter()
    for f in failures:
        counts.update(f.doc_keys)
        if (top := f.top_doc) is not None:
            first[top] += 1
    if not counts:
        return None
    key, n = min(counts.items(), key=lambda kv: (-kv[1], -first[kv[0]], kv[0][0], kv[0][1] or ""))
    return key if n / len(failures) > CAUSE_MIN_SHARE else None


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
class Member:
    """One cluster of an incident, and why it belongs to it."""

    cluster_id: str
    label: str
    family_id: str | None
    category: Category
    joined_at: datetime
    since: datetime
    joined_by: str  # "opened", "family", "document" or "sessions"

    def to_state(self) -> dict:
        return {"cluster_id": self.cluster_id, "label": self.label, "family_id": self.family_id,
                "category": self.category.model_dump(mode="json"), "joined_at": self.joined_at.isoformat(),
                "since": self.since.isoformat(), "joined_by": self.joined_by}

    @classmethod
    def from_state(cls, s: dict) -> Member:
        return cls(s["cluster_id"], s["label"], s["family_id"], Category.model_validate(s["category"]),
                   datetime.fromisoformat(s["joined_at"]), datetime.fromisoformat(s["since"]),
                   s["joined_by"])


def strictest(categories: Sequence[Category]) -> Category:
    """The category whose rule is strictest: highest severity, then outreach, then lowest gate
    (ties: the first given)."""
    return max(categories, key=lambda c: (SEVERITIES.index(c.severity), c.outreach, -c.gate))


@dataclass
class Incident:
    incident_id: str
    cluster_id: str            # the first member (the one that opened it, or the family's founder)
    onset: datetime
    detected_at: datetime
    failures: list[Failure]
    observed: int = 0          # answers in the member clusters since they joined (failing or not)
    sequence: int = -1
    reported_sessions: int = 0
    reported_failures: int = 0  # len(failures) at the last event (or when a settle found no new session)
    last_event_at: datetime | None = None
    resolved_at: datetime | None = None
    statistic: float = 0.0
    threshold: float = 0.0
    level: str = "cluster"     # the test that opened it: "cluster", "family" or "document"
    members: dict[str, Member] = field(default_factory=dict)
    recovery: BernoulliCusum | None = None
    last_at: datetime | None = None  # the newest answer seen in any member cluster
    added: list[str] = field(default_factory=list)  # members joined since the last event
    # Failing answers seen while the recovery test leans towards "back at baseline": not yet the
    # incident's (PatternDetector._inside commits or drops them).
    pending: list[Failure] = field(default_factory=list)
    # Evidence (log-likelihood ratio since it opened) that answers of free clusters which
    # retrieved its cause document fail at the pattern's rate, and their failing answers still
    # waiting for that evidence (PatternDetector._outside).
    outside: float = 0.0
    outside_waiting: list[Failure] = field(default_factory=list)
    # The recovery test's statistic over its members' answers that retrieved its cause document
    # alone (its readers: the pattern's intent where other intents share the cluster;
    # PatternDetector._take).
    cited: float = 0.0
    # The recovery test's statistic against the failure rate the incident has shown rather than
    # p1 (PatternDetector._inside, _take).
    back: float = 0.0
    # The failure rate it had shown (``observed_rate``) when failing answers last joined it:
    # the passing answers after a fix do not lower it (PatternDetector._inside). None: not yet.
    shown: float | None = None
    # The cluster test's evidence (failing at p1 rather than p0) over its members' answers since
    # failing answers last joined it: the waiting ones join when it reaches that test's threshold,
    # however much the rate shown is above the rate they come at (PatternDetector._take).
    relapse: float = 0.0
    # Where it has a cause document: the cluster test over its members' answers that retrieved
    # another document first and not the cause, one per id of that document
    # (PatternDetector._take).
    aside: dict[str, float] = field(default_factory=dict)
    # When its answers came back at baseline (the recovery test alarmed, no member still
    # failing), while it waits out resolve_hold_minutes before it resolves (PatternDetector._inside).
    recovered_at: datetime | None = None
    extra: dict = field(default_factory=dict)
    # cause_of(failures) and the failure count it was computed at (derived, not state): the
    # detector asks for the cause on every failing answer while the incident is open.
    _cause: tuple[int, DocKey | None] = field(default=(-1, None), repr=False, compare=False)

    @property
    def observed_rate(self) -> float:
        """The failure rate the incident has shown: its failing answers over the answers its
        members gave since they joined (0 before any)."""
        return len(self.failures) / self.observed if self.observed else 0.0

    @property
    def shown_rate(self) -> float:
        """The failure rate the incident showed when failing answers last joined it (its
        ``observed_rate`` until then)."""
        return self.observed_rate if self.shown is None else self.shown

    def took(self) -> None:
        """Failing answers joined: the rate shown is the one observed now, and the evidence of a
        relapse starts again."""
        self.shown = self.observed_rate
        self.relapse = 0.0

    @staticmethod
    def make_id(cluster_id: str, onset: datetime) -> str:
        return f"inc-{cluster_id}-{onset.strftime('%Y%m%dT%H%M%SZ')}"

    @property
    def sessions(self) -> list[str]:
        return sorted({f.session_key for f in self.failures})

    @property
    def customers(self) -> list[str]:
        return sorted({f.customer_id for f in self.failures if f.customer_id})

    @property
    def cause(self) -> DocKey | None:
        # Failures are only ever added (and re-sorted), so their count says whether it is current.
        if self._cause[0] != len(self.failures):
            self._cause = (len(self.failures), cause_of(self.failures))
        return self._cause[1]

    def add_member(self, m: Member) -> None:
        self.members[m.cluster_id] = m
        self.added.append(m.cluster_id)

    def event(self, kind: str, at: datetime, *, label: str, category: Category,
              baseline: ClusterBaseline | Sequence[ClusterBaseline], band: Band, examples: int,
              gate_target: float = 0.9, head: str | None = None) -> IncidentEvent:
        """The event of ``kind``. ``label``, ``category`` and ``band``: the first member's; the
        severity, outreach and gate come from the strictest category over all members (and
        ``category`` for an incident without members), the gate's cost from all members'
        ``baseline`` s. ``head``: the summary's first words, if not the kind's. The status is
        ``resolved`` once the incident resolved, also for an update after that (late evidence)."""
        self.sequence += 1
        self.last_event_at = at
        sessions = self.sessions
        self.reported_sessions = len(sessions)
        self.reported_failures = len(self.failures)
        customers = self.customers
        docs = shared_documents(self.failures)
        cause = self.cause
        confident_wrong = sum(1 for f in self.failures if f.confident_wrong)
        irreversible = sum(1 for f in self.failures if f.irreversible)
        stale = sum(1 for f in self.failures if f.stale)
        rule = strictest([category, *(m.category for m in self.members.values())])
        severity = raise_severity(rule.severity) if irreversible else rule.severity
        gate = suggest_gate([f.confidence for f in self.failures if f.confidence is not None],
                            baseline, current_gate=rule.gate, target=gate_target)
        by_cluster: dict[str, list[Failure]] = {}
        for f in self.failures:
            by_cluster.setdefault(f.cluster_id, []).append(f)
        members = tuple(IncidentMember(
            cluster_id=m.cluster_id, cluster_label=m.label, family_id=m.family_id, category=m.category.name,
            joined_at=m.joined_at, since=m.since, joined_by=m.joined_by,  # type: ignore[arg-type]
            below_baseline_count=len(by_cluster.get(m.cluster_id, ())),
            affected_sessions=distinct_sessions(by_cluster.get(m.cluster_id, ())))
            for m in self.members.values())
        clusters = tuple(self.members) or (self.cluster_id,)
        added = clusters if kind == "opened" else tuple(self.added)
        self.added = []
        ev = IncidentEvent(
            event=kind,  # type: ignore[arg-type]
            incident_id=self.incident_id,
            sequence=self.sequence,
            cluster_id=self.cluster_id,
            cluster_label=label,
            category=rule.name,
            severity=severity,
            status="resolved" if self.resolved_at is not None else "open",
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
            outreach_required=rule.outreach,
            irreversible_actions=irreversible,
            suggested_gate=gate,
            shared_documents=docs,
            stale_contexts=stale,
            baseline_faithfulness=None if band.median != band.median else round(band.median, 4),
            baseline_low=None if band.low == float("-inf") else round(band.low, 4),
            baseline_below_rate=round(band.below_rate, 4),
            observed_below_rate=round(self.observed_rate, 4),
            statistic=round(self.statistic, 4),
            threshold=round(self.threshold, 4),
            summary="",
            examples=tuple(_example(f) for f in self.failures[:examples]),
            level=self.level,  # type: ignore[arg-type]
            clusters=clusters,
            clusters_added=added,
            family_ids=tuple(dict.fromkeys(m.family_id for m in self.members.values() if m.family_id)),
            members=members,
            cause=next((d for d in docs if (d.doc_id, d.doc_version) == cause), None),
        )
        return ev.model_copy(update={"summary": summarise(ev, head)})

    def to_state(self) -> dict:
        return {
            "incident_id": self.incident_id, "cluster_id": self.cluster_id, "onset": self.onset.isoformat(),
            "detected_at": self.detected_at.isoformat(),
            "failures": [f.to_state() for f in self.failures], "observed": self.observed,
            "sequence": self.sequence, "reported_sessions": self.reported_sessions,
            "reported_failures": self.reported_failures,
            "last_event_at": self.last_event_at.isoformat() if self.last_event_at else None,
            "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
            "statistic": self.statistic, "threshold": self.threshold, "level": self.level,
            "members": [m.to_state() for m in self.members.values()],
            "recovery": self.recovery.to_state() if self.recovery else None,
            "last_at": self.last_at.isoformat() if self.last_at else None, "added": list(self.added),
            "pending": [f.to_state() for f in self.pending],
            "outside": self.outside, "outside_waiting": [f.to_state() for f in self.outside_waiting],
            "cited": self.cited, "back": self.back, "shown": self.shown,
            "relapse": self.relapse, "aside": dict(self.aside),
            "recovered_at": self.recovered_at.isoformat() if self.recovered_at else None,
        }

    @classmethod
    def from_state(cls, s: dict, resolve_threshold: float) -> Incident:
        def dt(v):
            return datetime.fromisoformat(v) if v else None
        members = [Member.from_state(m) for m in s["members"]]
        return cls(
            incident_id=s["incident_id"], cluster_id=s["cluster_id"], onset=datetime.fromisoformat(s["onset"]),
            detected_at=datetime.fromisoformat(s["detected_at"]),
            failures=[Failure.from_state(f) for f in s["failures"]], observed=s["observed"],
            sequence=s["sequence"], reported_sessions=s["reported_sessions"],
            reported_failures=s.get("reported_failures", 0),  # absent before v3.7 (0: checked at the next settle)
            last_event_at=dt(s["last_event_at"]), resolved_at=dt(s["resolved_at"]),
            statistic=s["statistic"], threshold=s["threshold"],
            level=s["level"], members={m.cluster_id: m for m in members},
            recovery=BernoulliCusum.from_state(s["recovery"], resolve_threshold) if s["recovery"] else None,
            last_at=dt(s["last_at"]), added=list(s["added"]),
            pending=[Failure.from_state(f) for f in s.get("pending", ())],  # absent before v3.2
            outside=s.get("outside", 0.0),  # absent before v3.3
            outside_waiting=[Failure.from_state(f) for f in s.get("outside_waiting", ())],
            cited=s.get("cited", 0.0),  # absent before v3.4
            back=s.get("back", 0.0),  # absent before v3.5 (0: a failing answer joins, as at opening)
            shown=s.get("shown"),  # absent before v3.9 (None: observed_rate, as before)
            relapse=s.get("relapse", 0.0),  # absent before v3.9
            aside=dict(s.get("aside", {})),  # absent before v3.10
            recovered_at=dt(s.get("recovered_at")))  # absent before v3.8 (None: not yet back)


def _example(f: Failure) -> Example:
    return Example(interaction_id=f.interaction_id, session_id=f.session_id,
                   customer_id=f.customer_id, timestamp=f.at, query=f.query, response=f.response,
                   faithfulness=round(f.faithfulness, 4), confidence=f.confidence,
                   doc_refs=tuple(ContextRef(doc_id=d.doc_id, doc_version=d.doc_version, stale=d.stale)
                                  for d in f.docs))


def _days(a: datetime, b: datetime) -> str:
    d = (b - a).total_seconds() / 86400
    return f"{d:.0f} days" if d >= 1.5 else f"{d * 24:.0f} hours"


def doc_name(d: SharedDocument) -> str:
    """A document as a page names it: its id and version."""
    return f"{d.doc_id} {d.doc_version}" if d.doc_version else d.doc_id


def summarise(ev: IncidentEvent, head: str | None = None) -> str:
    """One paragraph an on-call engineer can act on without opening anything else (``head``:
    its first words, if not the event kind's)."""
    when = ev.onset_at.strftime("%Y-%m-%d %H:%M UTC")
    head = head or {"opened": "Pattern of below-baseline answers", "updated": "Still growing",
                    "resolved": "Resolved"}[ev.event]
    where = f"{ev.category} cluster {ev.cluster_id} \"{ev.cluster_label}\""
    if len(ev.members) > 1:
        others = ", ".join(f"{m.cluster_id} \"{m.cluster_label}\"" for m in ev.members[1:4])
        more = len(ev.members) - 4
        where += f" and {len(ev.members) - 1} more ({others}{f', +{more}' if more > 0 else ''})"
    parts = [f"{head} in {where} since {when}: "
             f"{ev.below_baseline_count} failing answers in {ev.affected_sessions} sessions "
             f"({ev.affected_customers} customers)."]
    if ev.event == "updated" and ev.clusters_added:
        parts.append(f"Joined by {', '.join(ev.clusters_added)}.")
    outside = ev.below_baseline_count - sum(m.below_baseline_count for m in ev.members)
    if outside > 0 and ev.cause is not None:  # (see PatternDetector._outside and _readers)
        parts.append(f"{outside} of them in other clusters, by answers there that retrieved "
                     f"{doc_name(ev.cause)}.")
    if ev.shared_documents:
        d = ev.shared_documents[0]
        cause = f"{d.count} of {ev.below_baseline_count} failing answers cite {doc_name(d)}"
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
