"""Pattern detection across clusters: below-baseline answers that form a pattern, not noise.

For every scored answer the :class:`PatternDetector` asks the answer's cluster baseline whether
it falls below the band, feeds that to the cluster's Bernoulli CUSUM (baseline rate ``p0``
against a shifted rate ``p1``) and opens an incident when the test alarms *and* the failing
answers since the estimated onset come from at least ``min_sessions`` distinct sessions (one
unlucky conversation is not a pattern). While an incident is open the cluster's answers do not
update its baseline, and a second CUSUM, in the other direction, resolves the incident once the
evidence says the cluster is back to its baseline rate (or the cluster has been quiet for
``resolve_quiet_hours``).

Every decision is a function of the events seen so far, in event-time order: the same stream
gives the same incidents, whichever driver runs it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipelines.baseline import Band, ClusterBaseline
from pipelines.config import BaselineConfig, DetectConfig
from pipelines.cusum import BernoulliCusum, threshold_for
from pipelines.incident import DocSeen, Failure, Incident, distinct_sessions
from pipelines.interaction import Interaction
from pipelines.policy import Category
from pipelines.records import IncidentEvent
from pipelines.state import check_envelope, envelope

# Failures kept for one CUSUM excursion before an incident opens; beyond it the oldest go
# (an excursion that long without alarming is noise by construction).
_EXCURSION_CAPACITY = 5_000


@dataclass(frozen=True)
class Judgement:
    below: bool
    baseline_low: float | None
    confident_wrong: bool
    incident_id: str | None
    events: tuple[IncidentEvent, ...]


class ClusterMonitor:
    """Baseline, sequential test and (at most one) open incident of one cluster."""

    def __init__(self, cluster_id: str, baseline: ClusterBaseline, threshold: float):
        self.cluster_id = cluster_id
        self.baseline = baseline
        self.cusum = BernoulliCusum(threshold)
        self.excursion: deque[Failure] = deque(maxlen=_EXCURSION_CAPACITY)
        self.excursion_observed = 0
        self.incident: Incident | None = None
        self.recovery: BernoulliCusum | None = None
        self.last_at: datetime | None = None
        self.label = cluster_id
        self.category: Category | None = None


def failure_of(i: Interaction, faithfulness: float, confident_wrong: bool) -> Failure:
    docs = tuple(DocSeen(c.doc_id, c.doc_version, c.stale, c.indexed_at, c.doc_updated_at)
                 for c in i.contexts if c.doc_id)
    return Failure(
        interaction_id=i.interaction_id, session_key=i.session_key, session_id=i.session_id,
        customer_id=i.customer_id, at=i.timestamp, query=i.query, response=i.response,
        faithfulness=faithfulness, confidence=i.confidence, docs=docs,
        confident_wrong=confident_wrong,
        irreversible=bool(i.action is not None and i.action.reversible is False),
    )


class PatternDetector:
    KIND = "pattern_detector"
    STATE_VERSION = 1

    def __init__(self, baseline_config: BaselineConfig, detect_config: DetectConfig):
        self.baseline_config = baseline_config
        self.config = detect_config
        self.threshold = threshold_for(detect_config.false_alarm_rate)
        # The global baseline takes only answers a cluster baseline has committed, so an
        # incident's answers (taken back from the cluster) never reach it either.
        self.global_config = baseline_config.model_copy(update={"holdback": 0, "holdback_hours": 0.0})
        self.global_baseline = ClusterBaseline(self.global_config)
        self.monitors: dict[str, ClusterMonitor] = {}
        self._open: set[str] = set()  # clusters with an open incident (advance() looks only at these)

    # -- helpers -----------------------------------------------------------------------------
    def _monitor(self, cluster_id: str, category: Category) -> ClusterMonitor:
        m = self.monitors.get(cluster_id)
        if m is None:
            m = ClusterMonitor(cluster_id, ClusterBaseline(self.baseline_config, category.tolerance),
                               self.threshold)
            self.monitors[cluster_id] = m
        m.baseline.tolerance = category.tolerance
        m.category = category
        return m

    def _rates(self, band: Band) -> tuple[float, float]:
        p0 = min(max(band.below_rate, self.config.min_baseline_rate), 0.5)
        p1 = min(max(p0 * self.config.shift_ratio, self.config.min_shifted_rate), 0.95)
        return p0, max(p1, min(0.99, p0 + 0.05))

    def band(self, cluster_id: str) -> Band:
        m = self.monitors.get(cluster_id)
        if m is None:
            return ClusterBaseline(self.baseline_config).band(self.global_baseline.prior())
        return m.baseline.band(self.global_baseline.prior())

    def _event(self, m: ClusterMonitor, kind: str, at: datetime, band: Band) -> IncidentEvent:
        assert m.incident is not None and m.category is not None
        return m.incident.event(kind, at, label=m.label, category=m.category, baseline=m.baseline,
                                band=band, examples=self.config.examples)

    def _observe_baseline(self, m: ClusterMonitor, at: datetime, f: float, c: float | None,
                          below: bool) -> None:
        m.baseline.observe(at, f, c, below)
        # What the cluster committed (and only that) flows on to the global baseline.
        for at_c, f_c, c_c, below_c in m.baseline.committed:
            self.global_baseline.observe(at_c, f_c, c_c, below_c)
        self.global_baseline.expire(at)

    # -- the one entry point -----------------------------------------------------------------
    def observe(self, interaction: Interaction, *, cluster_id: str, label: str,
                category: Category, faithfulness: float | None) -> Judgement:
        at = interaction.timestamp
        events = list(self.advance(at))
        m = self._monitor(cluster_id, category)
        m.label = label
        m.last_at = at
        band = m.baseline.band(self.global_baseline.prior())
        if faithfulness is None:
            inc = m.incident.incident_id if m.incident else None
            return Judgement(False, None if band.count == 0 and band.low == float("-inf") else band.low,
                             False, inc, tuple(events))
        below = band.is_below(faithfulness)
        conf = interaction.confidence
        confident_wrong = below and conf is not None and conf >= category.gate
        p0, p1 = self._rates(band)
        low = None if band.low == float("-inf") else band.low

        if m.incident is None:
            m.cusum.update(below, p0, p1, at)
            if m.cusum.onset is None:
                m.excursion.clear()
                m.excursion_observed = 0
            else:
                m.excursion_observed += 1
                if below:
                    m.excursion.append(failure_of(interaction, faithfulness, confident_wrong))
            self._observe_baseline(m, at, faithfulness, conf, below)
            if m.cusum.alarm and distinct_sessions(list(m.excursion)) >= self.config.min_sessions:
                onset = m.cusum.onset or at
                m.baseline.discard_since(onset)
                m.incident = Incident(
                    incident_id=Incident.make_id(cluster_id, onset), cluster_id=cluster_id,
                    onset=onset, detected_at=at, failures=list(m.excursion),
                    observed=m.excursion_observed, statistic=m.cusum.statistic,
                    threshold=self.threshold)
                m.recovery = BernoulliCusum(self.config.resolve_threshold)
                self._open.add(cluster_id)
                events.append(self._event(m, "opened", at, band))
            inc_id = m.incident.incident_id if m.incident else None
            return Judgement(below, low, confident_wrong, inc_id, tuple(events))

        inc = m.incident
        assert m.recovery is not None
        inc.observed += 1
        if below:
            inc.failures.append(failure_of(interaction, faithfulness, confident_wrong))
        # Recovery: evidence that the rate is back at p0 rather than still at p1.
        m.recovery.update(below, p1, p0, at)
        inc.statistic = m.cusum.statistic
        if m.recovery.alarm:
            events.append(self._resolve(m, at, band))
        elif len(inc.sessions) >= max(inc.reported_sessions + 1,
                                      inc.reported_sessions * self.config.update_growth):
            events.append(self._event(m, "updated", at, band))
        return Judgement(below, low, confident_wrong, inc.incident_id, tuple(events))

    def _resolve(self, m: ClusterMonitor, at: datetime, band: Band) -> IncidentEvent:
        assert m.incident is not None
        m.incident.resolved_at = at
        ev = self._event(m, "resolved", at, band)
        m.incident = None
        self._open.discard(m.cluster_id)
        m.recovery = None
        m.cusum.reset()
        m.excursion.clear()
        m.excursion_observed = 0
        return ev

    def advance(self, now: datetime) -> list[IncidentEvent]:
        """Resolve incidents whose cluster has been quiet for ``resolve_quiet_hours``."""
        quiet = timedelta(hours=self.config.resolve_quiet_hours)
        out = []
        for cid in sorted(self._open):  # a monitor without an open incident has nothing to resolve
            m = self.monitors[cid]
            if m.incident is not None and m.last_at is not None and now - m.last_at >= quiet:
                out.append(self._resolve(m, now, m.baseline.band(self.global_baseline.prior())))
        return out

    @property
    def open_incidents(self) -> dict[str, Incident]:
        return {m.incident.incident_id: m.incident for m in self.monitors.values() if m.incident}

    # -- state -------------------------------------------------------------------------------
    def to_state(self) -> dict:
        monitors = {}
        for cid, m in sorted(self.monitors.items()):
            inc = m.incident
            monitors[cid] = {
                "baseline": m.baseline.to_state(),
                "cusum": m.cusum.to_state(),
                "excursion": [f.to_state() for f in m.excursion],
                "excursion_observed": m.excursion_observed,
                "recovery": m.recovery.to_state() if m.recovery else None,
                "last_at": m.last_at.isoformat() if m.last_at else None,
                "label": m.label,
                "category": m.category.model_dump(mode="json") if m.category else None,
                "incident": None if inc is None else {
                    "incident_id": inc.incident_id, "onset": inc.onset.isoformat(),
                    "detected_at": inc.detected_at.isoformat(),
                    "failures": [f.to_state() for f in inc.failures], "observed": inc.observed,
                    "sequence": inc.sequence, "reported_sessions": inc.reported_sessions,
                    "last_event_at": inc.last_event_at.isoformat() if inc.last_event_at else None,
                    "statistic": inc.statistic, "threshold": inc.threshold,
                },
            }
        payload = {"global": self.global_baseline.to_state(), "monitors": monitors}
        return envelope(self.KIND, self.STATE_VERSION,
                        {"baseline": self.baseline_config.model_dump(mode="json"),
                         "detect": self.config.model_dump(mode="json")}, payload)

    @classmethod
    def from_state(cls, state: dict, baseline_config: BaselineConfig,
                   detect_config: DetectConfig) -> PatternDetector:
        p = check_envelope(state, cls.KIND, cls.STATE_VERSION,
                           {"baseline": baseline_config.model_dump(mode="json"),
                            "detect": detect_config.model_dump(mode="json")})
        d = cls(baseline_config, detect_config)
        d.global_baseline = ClusterBaseline.from_state(p["global"], d.global_config)
        for cid, s in p["monitors"].items():
            m = ClusterMonitor(cid, ClusterBaseline.from_state(s["baseline"], baseline_config),
                               d.threshold)
            m.cusum = BernoulliCusum.from_state(s["cusum"], d.threshold)
            m.excursion.extend(Failure.from_state(f) for f in s["excursion"])
            m.excursion_observed = s["excursion_observed"]
            if s["recovery"]:
                m.recovery = BernoulliCusum.from_state(s["recovery"], detect_config.resolve_threshold)
            m.last_at = datetime.fromisoformat(s["last_at"]) if s["last_at"] else None
            m.label = s["label"]
            m.category = Category.model_validate(s["category"]) if s["category"] else None
            if s["incident"]:
                i = s["incident"]
                m.incident = Incident(
                    incident_id=i["incident_id"], cluster_id=cid,
                    onset=datetime.fromisoformat(i["onset"]),
                    detected_at=datetime.fromisoformat(i["detected_at"]),
                    failures=[Failure.from_state(f) for f in i["failures"]],
                    observed=i["observed"], sequence=i["sequence"],
                    reported_sessions=i["reported_sessions"],
                    last_event_at=datetime.fromisoformat(i["last_event_at"]) if i["last_event_at"] else None,
                    statistic=i["statistic"], threshold=i["threshold"])
                d._open.add(cid)
            d.monitors[cid] = m
        return d
