"""A histogram over [0, 1] that forgets by event time.

Values fall into ``bins`` equal bins; counts are kept per time bucket so that buckets older than
the window can be dropped exactly. Quantiles, median and MAD read from the summed counts, which
makes the statistics robust (one absurd value moves them by at most one observation) and the
memory bounded (window / bucket buckets of ``bins`` counts).

>>> from datetime import UTC, datetime, timedelta
>>> h = RollingHistogram(bins=100, window=timedelta(hours=2), bucket=timedelta(hours=1))
>>> t0 = datetime(2026, 11, 2, tzinfo=UTC)
>>> for i, v in enumerate([0.9, 0.8, 0.85, 0.95, 0.1]):
...     _ = h.add(v, t0 + timedelta(minutes=i))
>>> h.count, round(h.quantile(0.5), 3)
(5, 0.855)
>>> _ = h.expire(t0 + timedelta(hours=3))
>>> h.count
0
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RollingHistogram:
    def __init__(self, bins: int, window: timedelta, bucket: timedelta):
        self.bins = bins
        self.window = window
        self.bucket = bucket
        self._buckets: dict[int, np.ndarray] = {}
        self._total = np.zeros(bins, dtype=np.int64)

    def _bucket_of(self, at: datetime) -> int:
        return int((at - _EPOCH) / self.bucket)

    def _bin_of(self, value: float) -> int:
        return min(self.bins - 1, max(0, int(value * self.bins)))

    def add(self, value: float, at: datetime) -> RollingHistogram:
        b = self._bucket_of(at)
        counts = self._buckets.get(b)
        if counts is None:
            counts = self._buckets[b] = np.zeros(self.bins, dtype=np.int64)
        i = self._bin_of(value)
        counts[i] += 1
        self._total[i] += 1
        return self

    def expire(self, now: datetime) -> RollingHistogram:
        """Forget buckets that ended more than ``window`` before ``now``."""
        oldest = self._bucket_of(now - self.window)
        for b in [b for b in self._buckets if b < oldest]:
            self._total -= self._buckets.pop(b)
        return self

    @property
    def count(self) -> int:
        return int(self._total.sum())

    @property
    def counts(self) -> np.ndarray:
        return self._total.copy()

    def state(self) -> dict:
        return {str(b): {str(i): int(c) for i, c in enumerate(v) if c} for b, v in sorted(self._buckets.items())}

    def load(self, state: dict) -> RollingHistogram:
        self._buckets = {}
        self._total = np.zeros(self.bins, dtype=np.int64)
        for b, sparse in state.items():
            arr = np.zeros(self.bins, dtype=np.int64)
            for i, c in sparse.items():
                arr[int(i)] = c
            self._buckets[int(b)] = arr
            self._total += arr
        return self

    def quantile(self, q: float) -> float:
        return weighted_quantile(self._total.astype(np.float64), q)


def centers(bins: int) -> np.ndarray:
    return (np.arange(bins) + 0.5) / bins


def quantile_bin(weights: np.ndarray, q: float) -> int:
    """Index of the bin that holds the ``q`` quantile (for q = 0: the first non-empty bin)."""
    target = q * float(weights.sum())
    if target <= 0:
        return int(np.flatnonzero(weights)[0])
    return min(int(np.searchsorted(np.cumsum(weights), target, side="left")), len(weights) - 1)


def weighted_quantile(weights: np.ndarray, q: float) -> float:
    """Quantile of a histogram over [0, 1] (linear within the bin that holds it)."""
    total = float(weights.sum())
    if total <= 0:
        return float("nan")
    bins = len(weights)
    cum = np.cumsum(weights)
    target = q * total
    i = quantile_bin(weights, q)
    before = cum[i - 1] if i > 0 else 0.0
    inside = (target - before) / weights[i] if weights[i] > 0 else 0.5
    return float((i + min(max(inside, 0.0), 1.0)) / bins)


def median_mad(weights: np.ndarray) -> tuple[float, float]:
    """Median and median absolute deviation of a histogram over [0, 1]."""
    med = weighted_quantile(weights, 0.5)
    if np.isnan(med):
        return med, med
    dev = np.abs(centers(len(weights)) - med)
    order = np.argsort(dev, kind="stable")
    cum = np.cumsum(weights[order])
    k = int(np.searchsorted(cum, 0.5 * weights.sum(), side="left"))
    return med, float(dev[order][min(k, len(order) - 1)])
