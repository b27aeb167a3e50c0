"""Bernoulli CUSUM: a sequential test that a rate has risen from ``p0`` to ``p1``.

Each observation adds its log-likelihood ratio, ``log(p1/p0)`` for a hit and
``log((1-p1)/(1-p0))`` for a miss; the statistic never goes below zero and alarms at ``h``.
Between false alarms it runs, on average, at least ``exp(h)`` observations, so
``h = ln(1 / false_alarm_rate)`` bounds the false-alarm rate per observation. The estimated
change point (the incident's onset) is the first hit after the statistic last stood at zero.

``p0`` may change between observations (it is the cluster's current baseline rate), which keeps
the test honest as a cluster's normal noise level drifts.

>>> from datetime import UTC, datetime, timedelta
>>> c = BernoulliCusum(threshold=5.0)
>>> t0 = datetime(2026, 11, 2, tzinfo=UTC)
>>> for i, hit in enumerate([False, True, False, True, True, True]):
...     _ = c.update(hit, p0=0.05, p1=0.5, at=t0 + timedelta(minutes=i))
>>> c.alarm, c.onset == t0 + timedelta(minutes=1), c.hits
(True, True, 4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from pipelines.state import check_envelope, envelope


def llr(hit: bool, p0: float, p1: float) -> float:
    """Log-likelihood ratio of one Bernoulli observation, rate ``p1`` against ``p0``."""
    return math.log(p1 / p0) if hit else math.log((1.0 - p1) / (1.0 - p0))


def step(statistic: float, hit: bool, p0: float, p1: float) -> float:
    """One CUSUM step: ``statistic`` after one more observation, rate ``p1`` against ``p0``,
    floored at 0."""
    return max(0.0, statistic + llr(hit, p0, p1))


def threshold_for(false_alarm_rate: float) -> float:
    return math.log(1.0 / false_alarm_rate)


def extend_back(before: Sequence[bool], p0: float, p1: float, min_gain: float) -> int:
    """How many of the observations ``before`` a change point (oldest first) belong after it.

    The CUSUM's change point is the most likely one for a shift to exactly ``p1``; a rate that
    ramps up stays below ``p1`` at first, so its first hits lie before it. Walking back from the
    change point, each observation adds its log-likelihood ratio for a smaller shift (``p1``
    here is that smaller rate); the earlier change point is where the sum peaks, if the peak
    reaches ``min_gain`` (else none: an isolated hit among misses is the baseline's noise).
    Returns how many of the latest observations to take (0: none).

    >>> extend_back([True] + [False] * 20 + [True, False, True], p0=0.03, p1=0.11, min_gain=2.0)
    3
    >>> extend_back([True] + [False] * 8, p0=0.03, p1=0.11, min_gain=2.0)
    0
    """
    s = best = 0.0
    take = 0
    for n, hit in enumerate(reversed(before), 1):
        s += llr(hit, p0, p1)
        if s > best:
            best, take = s, n
    return take if best >= min_gain else 0


class BernoulliCusum:
    KIND = "bernoulli_cusum"
    STATE_VERSION = 1

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.statistic = 0.0
        self.onset: datetime | None = None
        self.hits = 0
        self.observations = 0

    def update(self, hit: bool, p0: float, p1: float, at: datetime) -> BernoulliCusum:
        s = step(self.statistic, hit, p0, p1)
        if s == 0.0:
            self.onset, self.hits, self.observations = None, 0, 0
        else:
            if self.onset is None:
                self.onset = at
            self.hits += int(hit)
            self.observations += 1
        self.statistic = s
        return self

    @property
    def alarm(self) -> bool:
        return self.statistic >= self.threshold

    def reset(self) -> BernoulliCusum:
        self.statistic, self.onset, self.hits, self.observations = 0.0, None, 0, 0
        return self

    def to_state(self) -> dict:
        payload = {"statistic": self.statistic, "hits": self.hits, "observations": self.observations,
                   "onset": self.onset.isoformat() if self.onset else None}
        return envelope(self.KIND, self.STATE_VERSION, {"threshold": self.threshold}, payload)

    @classmethod
    def from_state(cls, state: dict, threshold: float) -> BernoulliCusum:
        p = check_envelope(state, cls.KIND, cls.STATE_VERSION, {"threshold": threshold})
        c = cls(threshold)
        c.statistic, c.hits, c.observations = p["statistic"], p["hits"], p["observations"]
        c.onset = datetime.fromisoformat(p["onset"]) if p["onset"] else None
        return c
