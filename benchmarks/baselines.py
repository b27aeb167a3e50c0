"""What today's monitoring tools would do with the same scored stream: the detection baselines.

Both are fed the scored interactions in event order (the same faithfulness scores and the same
cluster assignments faithwatch produced), one :class:`Scored` at a time, and return an
:class:`Alert` when they fire. One alert per *episode*: a monitor that fired stays quiet until it
has recovered, as alerting rules with a pending/recovery state do.

- :class:`FixedThresholdMonitor` is the per-cluster monitor most LLM observability tools offer:
  the cluster's mean faithfulness over the last ``window_minutes`` (15) falls below ``threshold``
  (0.7), once the window holds at least ``min_count`` answers.
- :class:`GlobalMeanMonitor` is the same rule on the whole stream, without clusters: the mean
  over all answers in the window. It names no cluster.

An alert's blast radius is what such a tool could list: the sessions with an answer below the
threshold in the alerting scope from the start of the window that fired until the episode ends.

>>> from datetime import UTC, datetime, timedelta
>>> t0 = datetime(2026, 11, 2, tzinfo=UTC)
>>> m = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=3)
>>> fired = [m.observe(Scored(t0 + timedelta(minutes=k), "c1", f, f"s{k}", f"i{k}"))
...          for k, f in enumerate([0.9, 0.2, 0.3, 0.2, 0.95, 0.9, 0.9, 0.9, 0.9])]
>>> [(a.cluster_id, a.at.minute) for a in fired if a]
[('c1', 2)]
>>> sorted(m.alerts[0].sessions)
['s1', 's2', 's3']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Scored:
    """One scored interaction as a monitor sees it."""

    at: datetime
    cluster_id: str
    faithfulness: float
    session_id: str
    interaction_id: str


@dataclass
class Alert:
    """One episode of a monitor: when it fired, on what, and the sessions it would list."""

    at: datetime
    cluster_id: str | None  # None: the global monitor names no cluster
    window_start: datetime
    sessions: set[str] = field(default_factory=set)
    ended_at: datetime | None = None


class _Window:
    """The answers of one scope (a cluster, or everything) over the last ``span``."""

    def __init__(self, span: timedelta):
        self.span = span
        self.items: deque[Scored] = deque()
        self.total = 0.0

    def add(self, s: Scored) -> None:
        self.items.append(s)
        self.total += s.faithfulness
        self.expire(s.at)

    def expire(self, now: datetime) -> None:
        while self.items and self.items[0].at <= now - self.span:
            self.total -= self.items.popleft().faithfulness

    @property
    def mean(self) -> float:
        return self.total / len(self.items) if self.items else float("nan")


class _ThresholdRule:
    """Windowed mean below a threshold, one alert per episode, per scope key."""

    def __init__(self, threshold: float, window_minutes: float, min_count: int):
        if min_count < 1 or window_minutes <= 0:
            raise ValueError("min_count must be >= 1 and window_minutes > 0")
        self.threshold = threshold
        self.span = timedelta(minutes=window_minutes)
        self.min_count = min_count
        self.windows: dict[str | None, _Window] = {}
        self.open: dict[str | None, Alert] = {}
        self.alerts: list[Alert] = []

    def _observe(self, key: str | None, s: Scored) -> Alert | None:
        w = self.windows.setdefault(key, _Window(self.span))
        w.expire(s.at)
        episode = self.open.get(key)
        if episode is not None and not w.items:
            episode.ended_at = s.at  # the scope went quiet for a whole window: recovered
            del self.open[key]
            episode = None
        w.add(s)
        low = s.faithfulness < self.threshold
        if episode is not None:
            if len(w.items) >= self.min_count and w.mean >= self.threshold:
                episode.ended_at = s.at
                del self.open[key]
            elif low:
                episode.sessions.add(s.session_id)
            return None
        if len(w.items) >= self.min_count and w.mean < self.threshold:
            alert = Alert(at=s.at, cluster_id=key, window_start=w.items[0].at,
                          sessions={x.session_id for x in w.items if x.faithfulness < self.threshold})
            self.open[key] = alert
            self.alerts.append(alert)
            return alert
        return None

    def run(self, stream: Iterable[Scored]) -> list[Alert]:
        """Feed a whole stream (in event order); return every alert."""
        for s in stream:
            self.observe(s)
        return self.alerts


class FixedThresholdMonitor(_ThresholdRule):
    """Per cluster: mean faithfulness over the last ``window_minutes`` below ``threshold``."""

    def observe(self, s: Scored) -> Alert | None:
        return self._observe(s.cluster_id, s)


class GlobalMeanMonitor(_ThresholdRule):
    """The whole stream's mean faithfulness over the last ``window_minutes`` below ``threshold``.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 11, 2, tzinfo=UTC)
    >>> g = GlobalMeanMonitor(threshold=0.8, window_minutes=60, min_count=4)
    >>> alerts = g.run(Scored(t0 + timedelta(minutes=k), f"c{k % 3}", f, f"s{k}", f"i{k}")
    ...                for k, f in enumerate([0.9, 0.9, 0.9, 0.9, 0.3, 0.3, 0.3]))
    >>> [(a.cluster_id, a.at.minute, sorted(a.sessions)) for a in alerts]
    [(None, 4, ['s4', 's5', 's6'])]
    """

    def observe(self, s: Scored) -> Alert | None:
        return self._observe(None, s)


def calibrate_global_threshold(streams: Iterable[Iterable[Scored]], window_minutes: float,
                               min_count: int, margin: float = 0.01) -> float:
    """The threshold an operator would set for the global monitor after watching clean traffic:
    just below the lowest windowed mean seen (minus ``margin``), so clean traffic never fires.

    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 11, 2, tzinfo=UTC)
    >>> clean = [Scored(t0 + timedelta(minutes=k), "c", f, "s", str(k))
    ...          for k, f in enumerate([0.9, 0.8, 0.9, 1.0])]
    >>> calibrate_global_threshold([clean], window_minutes=5, min_count=2)
    0.84
    """
    lowest = 1.0
    for stream in streams:
        w = _Window(timedelta(minutes=window_minutes))
        for s in stream:
            w.add(s)
            if len(w.items) >= min_count:
                lowest = min(lowest, w.mean)
    return round(lowest - margin, 4)
