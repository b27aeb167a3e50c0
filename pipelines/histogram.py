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

from bisect import bisect_left
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import accumulate

import numpy as np

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ALWAYS, _NEVER = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


class RollingHistogram:
    """``version`` changes whenever the counts do (readers cache what they derive from them);
    ``count`` is kept as a number. :meth:`expire` does no date arithmetic until the oldest bucket
    can go: it remembers a time before which that cannot happen (see :meth:`_due`)."""

    def __init__(self, bins: int, window: timedelta, bucket: timedelta):
        self.bins = bins
        self.window = window
        self.bucket = bucket
        self._buckets: dict[int, list[int]] = {}
        self._total = np.zeros(bins, dtype=np.int64)
        self._count = 0
        self._oldest: int | None = None  # the smallest key of _buckets
        self._expiry: datetime | None = None  # before this time, expire() has nothing to forget
        self.version = 0

    def bucket_of(self, at: datetime) -> int:
        """The time bucket ``at`` falls in (several histograms that share ``bucket`` can compute
        it once and pass it to :meth:`add`)."""
        return int((at - _EPOCH) / self.bucket)

    def add(self, value: float, at: datetime, bucket: int | None = None) -> RollingHistogram:
        b = self.bucket_of(at) if bucket is None else bucket
        counts = self._buckets.get(b)
        if counts is None:
            counts = self._buckets[b] = [0] * self.bins
            if self._oldest is None or b < self._oldest:
                self._oldest, self._expiry = b, None
        i = min(self.bins - 1, max(0, int(value * self.bins)))
        counts[i] += 1
        self._total[i] += 1
        self._count += 1
        self.version += 1
        return self

    def expire(self, now: datetime) -> RollingHistogram:
        """Forget buckets that ended more than ``window`` before ``now``."""
        if self._oldest is None:
            return self
        if self._expiry is None:
            self._expiry = self._due(self._oldest)
        if now < self._expiry:
            return self
        return self.expire_before(self.bucket_of(now - self.window))

    def _due(self, oldest: int) -> datetime:
        """A time before which bucket ``oldest`` cannot expire: ``bucket_of(now - window)`` is at
        most ``oldest`` while ``now - window`` lies half a bucket before the next bucket starts
        (the float rounding in :meth:`bucket_of` and of this product is far below half a bucket).
        With buckets under a millisecond, or before 1970, no shortcut."""
        if oldest < 0 or self.bucket < timedelta(milliseconds=1):
            return _ALWAYS
        try:
            return _EPOCH + self.window + (oldest + 0.5) * self.bucket
        except OverflowError:  # not before the end of the calendar
            return _NEVER

    def expire_before(self, oldest: int) -> RollingHistogram:
        """Forget the buckets before bucket ``oldest``."""
        if self._oldest is None or self._oldest >= oldest:
            return self
        for b in [b for b in self._buckets if b < oldest]:
            self._total -= np.asarray(self._buckets.pop(b), dtype=np.int64)
        self._settle()
        return self

    def _settle(self) -> None:
        self._count = int(self._total.sum())
        self._oldest = min(self._buckets, default=None)
        self._expiry = None
        self.version += 1

    @property
    def count(self) -> int:
        return self._count

    @property
    def counts(self) -> np.ndarray:
        return self._total.copy()

    def state(self) -> dict:
        return {str(b): {str(i): int(c) for i, c in enumerate(v) if c} for b, v in sorted(self._buckets.items())}

    def load(self, state: dict) -> RollingHistogram:
        self._buckets = {}
        self._total = np.zeros(self.bins, dtype=np.int64)
        for b, sparse in state.items():
            counts = [0] * self.bins
            for i, c in sparse.items():
                counts[int(i)] = int(c)
            self._buckets[int(b)] = counts
            self._total += np.asarray(counts, dtype=np.int64)
        self._settle()
        return self

    def weights(self) -> np.ndarray:
        """The summed counts as floats (a new array)."""
        return self._total.astype(np.float64)

    def count_in(self, i: int) -> int:
        return int(self._total[i])

    def quantile(self, q: float) -> float:
        return weighted_quantile(self.weights(), q)


def centers(bins: int) -> np.ndarray:
    return (np.arange(bins) + 0.5) / bins


@cache
def _centers(bins: int) -> tuple[float, ...]:
    return tuple(centers(bins).tolist())


class Cumulative:
    """A histogram's weights with their sum and running sums, computed once for every statistic
    read from them (the same numbers numpy's ``sum`` and ``cumsum`` give: the running sums are
    sequential additions either way)."""

    __slots__ = ("cum", "total", "weights")

    def __init__(self, weights: np.ndarray, total: float | None = None):
        self.total = float(weights.sum()) if total is None else total
        self.weights: list[float] = weights.tolist()
        self.cum: list[float] = list(accumulate(self.weights))

    def bin_of(self, q: float) -> int:
        """Index of the bin that holds the ``q`` quantile (for q = 0: the first non-empty bin)."""
        target = q * self.total
        if target <= 0:
            return next(i for i, w in enumerate(self.weights) if w)
        return min(bisect_left(self.cum, target), len(self.cum) - 1)

    def quantile(self, q: float) -> float:
        """Linear within the bin that holds it."""
        if self.total <= 0:
            return float("nan")
        w, target = self.weights, q * self.total
        i = self.bin_of(q)
        before = self.cum[i - 1] if i > 0 else 0.0
        inside = (target - before) / w[i] if w[i] > 0 else 0.5
        return float((i + min(max(inside, 0.0), 1.0)) / len(w))

    def median_mad(self) -> tuple[float, float]:
        med = self.quantile(0.5)
        if med != med:  # nan
            return med, med
        # The bins in order of their centre's distance from the median (ties: the lower bin
        # first, as a stable sort gives): those at or below it downwards, merged with those
        # above it upwards; the MAD is the distance at which half the weight is reached.
        c, w = _centers(len(self.weights)), self.weights
        target = 0.5 * self.total
        lo = bisect_left(c, med)  # c[:lo] < med <= c[lo:]
        if lo < len(c) and c[lo] == med:
            lo += 1
        lo -= 1
        hi = lo + 1
        acc, dev = 0.0, 0.0
        while lo >= 0 or hi < len(c):
            if hi >= len(c) or (lo >= 0 and med - c[lo] <= c[hi] - med):
                dev, k = med - c[lo], lo
                lo -= 1
            else:
                dev, k = c[hi] - med, hi
                hi += 1
            acc += w[k]
            if acc >= target:
                break
        return med, dev


def quantile_bin(weights: np.ndarray, q: float) -> int:
    """Index of the bin that holds the ``q`` quantile (for q = 0: the first non-empty bin)."""
    return Cumulative(weights).bin_of(q)


def weighted_quantile(weights: np.ndarray, q: float) -> float:
    """Quantile of a histogram over [0, 1] (linear within the bin that holds it)."""
    return Cumulative(weights).quantile(q)


def median_mad(weights: np.ndarray) -> tuple[float, float]:
    """Median and median absolute deviation of a histogram over [0, 1]."""
    return Cumulative(weights).median_mad()
