"""Rolling, robust baselines of faithfulness (and confidence) per cluster.

A :class:`ClusterBaseline` remembers its cluster's faithfulness over an event-time window as a
histogram (median and MAD, so an outlier moves nothing) and the share of answers that fell below
its band. The band's lower edge is ``median - max(band_k * 1.4826 * MAD, tolerance)``: a noisy
cluster gets a wide band, a steady one at least its category's tolerance. The edge never sits
above the ``tail_quantile`` (5 %) of the cluster's own answers either: a scorer's output is often
lumpy (most answers exactly 1.0, the rest around 0.85), the MAD is then 0, and without this floor a
third of a healthy cluster would count as failing. So, by construction, at most about 5 % of a
cluster's normal answers fall below its band; more than that is what a pattern looks like. The
floor stops ``max_width`` (0.35) below the median, though: when a cluster's background errors
reach its 5 % tail, the floor would otherwise sink to them and hide an incident of the same kind.
Until ``min_count`` observations (own plus borrowed) exist, nothing counts as below.

A cold cluster borrows strength from the global baseline: ``prior_strength`` pseudo-observations
shaped like the global histogram are added to its own, so the band starts as the global one and
becomes the cluster's own as evidence arrives. While it borrows, its lower edge sits lower by
``cold_margin`` times the borrowed share of the evidence: a young cluster's normal answers may
sit a little below the global ones, and a band that is mostly someone else's must not call them
failing.

The newest events are held back (``holdback`` events, at most ``holdback_hours``) before they
enter the window, so that when an incident is found its early answers, which arrived before
anyone knew, can be taken back with :meth:`discard_since` instead of poisoning the baseline.
While the cluster is *suspect* (its test's evidence of a pattern is above zero) the holdback
grows to ``suspect_holdback`` events and ``suspect_holdback_hours``: a slow pattern is not
learned as normal before the test decides on it.

>>> from datetime import UTC, datetime, timedelta
>>> from pipelines.config import BaselineConfig
>>> b = ClusterBaseline(BaselineConfig(holdback=0), tolerance=0.1)
>>> t0 = datetime(2026, 11, 2, tzinfo=UTC)
>>> for i in range(200):
...     _ = b.observe(t0 + timedelta(minutes=i), 0.9 + (i % 5) / 100, 0.9, below=False)
>>> band = b.band()
>>> round(band.median, 2), round(band.low, 2), band.below_rate
(0.93, 0.83, 0.0)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from pipelines.config import BaselineConfig
from pipelines.histogram import Cumulative, RollingHistogram, weighted_quantile
from pipelines.state import check_envelope, envelope

_SIGMA_PER_MAD = 1.4826


@dataclass(frozen=True)
class Band:
    """A cluster's faithfulness baseline at one moment."""

    median: float
    low: float
    below_rate: float
    count: int

    def is_below(self, faithfulness: float) -> bool:
        return faithfulness < self.low


@dataclass(frozen=True)
class Prior:
    """What a cold cluster borrows: the global faithfulness histogram (normalised) and below rate."""

    weights: np.ndarray
    below_rate: float
    # Derived once: one prior serves every cluster's band until the global baseline changes.
    total: float = field(init=False, repr=False, compare=False)
    _scaled: dict[float, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total", float(self.weights.sum()))

    def scaled(self, strength: float) -> np.ndarray:
        """``strength * weights`` (the pseudo-observations a cold cluster borrows)."""
        w = self._scaled.get(strength)
        if w is None:
            w = self._scaled[strength] = strength * self.weights
        return w


class ClusterBaseline:
    KIND = "cluster_baseline"
    STATE_VERSION = 1

    def __init__(self, config: BaselineConfig, tolerance: float = 0.0):
        self.config = config
        self.tolerance = tolerance
        window = timedelta(hours=config.window_hours)
        bucket = timedelta(minutes=config.bucket_minutes)
        self.faithfulness = RollingHistogram(config.bins, window, bucket)
        self.confidence_ok = RollingHistogram(config.bins, window, bucket)
        self.flags = RollingHistogram(2, window, bucket)  # bin 0: within band, bin 1: below
        # How long and how many answers are held back: usually, and while the cluster is suspect.
        self._holdback = (timedelta(hours=config.holdback_hours), config.holdback)
        self._suspect_holdback = (timedelta(hours=max(config.holdback_hours, config.suspect_holdback_hours)),
                                  max(config.holdback, config.suspect_holdback))
        self._pending: deque[tuple[datetime, float, float | None, bool]] = deque()
        # What the last observe() moved from the holdback into the window (the global
        # baseline is fed from this, so it never sees what a cluster later takes back).
        self.committed: list[tuple[datetime, float, float | None, bool]] = []
        # What band() and prior() last returned, with the histogram versions (and prior and
        # tolerance) they were computed from: recomputed only when one of those changed.
        self._band: tuple[tuple, Prior | None, Band] | None = None
        self._prior: tuple[tuple, Prior] | None = None

    # -- updates -----------------------------------------------------------------------------
    def observe(self, at: datetime, faithfulness: float, confidence: float | None,
                below: bool, suspect: bool = False) -> ClusterBaseline:
        """Add one scored answer (held back first, longer while ``suspect``, then committed to
        the window)."""
        self._pending.append((at, faithfulness, confidence, below))
        self._commit(at, suspect)
        return self

    def _commit(self, now: datetime, suspect: bool = False) -> None:
        hours, holdback = self._suspect_holdback if suspect else self._holdback
        horizon = now - hours
        self.committed = committed = []
        pending = self._pending
        while pending and (len(pending) > holdback or pending[0][0] <= horizon):
            at, f, c, below = event = pending.popleft()
            committed.append(event)
            bucket = self.faithfulness.bucket_of(at)  # the three histograms share their buckets
            self.faithfulness.add(f, at, bucket)
            self.flags.add(1.0 if below else 0.0, at, bucket)
            if c is not None and not below:
                self.confidence_ok.add(c, at, bucket)
        self.expire(now)

    def discard_since(self, at: datetime) -> int:
        """Take back held events at or after ``at`` (they belong to an incident); return how many."""
        kept = deque(e for e in self._pending if e[0] < at)
        dropped = len(self._pending) - len(kept)
        self._pending = kept
        return dropped

    def held_since(self) -> datetime | None:
        """When the oldest answer still held back came (None: none held)."""
        return self._pending[0][0] if self._pending else None

    def held_flags(self) -> list[tuple[datetime, bool]]:
        """The answers still held back, oldest first: when, and whether below the band."""
        return [(at, below) for at, _f, _c, below in self._pending]

    def expire(self, now: datetime) -> ClusterBaseline:
        for h in (self.faithfulness, self.confidence_ok, self.flags):
            h.expire(now)
        return self

    # -- results -----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self.faithfulness.count

    def prior(self) -> Prior:
        key = (self.faithfulness.version, self.flags.version)
        if self._prior is None or self._prior[0] != key:
            counts = self.faithfulness.weights()
            total = counts.sum()
            weights = counts / total if total else counts
            self._prior = (key, Prior(weights=weights, below_rate=self.own_below_rate()))
        return self._prior[1]

    def own_below_rate(self) -> float:
        n = self.flags.count
        return float(self.flags.count_in(1) / n) if n else 0.0

    def band(self, prior: Prior | None = None) -> Band:
        key = (self.faithfulness.version, self.flags.version, self.tolerance)
        cached = self._band
        if cached is not None and cached[1] is prior and cached[0] == key:
            return cached[2]
        band = self._compute_band(prior)
        self._band = (key, prior, band)
        return band

    def _compute_band(self, prior: Prior | None) -> Band:
        own = self.faithfulness.weights()
        count = self.faithfulness.count
        n, below = float(self.flags.count), float(self.flags.count_in(1))
        strength = self.config.prior_strength
        borrowed = 0.0  # share of the evidence that is the global baseline's, not the cluster's
        weights = own
        if prior is not None and prior.total > 0 and strength > 0:
            borrowed = strength / (strength + float(count))
            weights = own + prior.scaled(strength)
            below += strength * prior.below_rate
            n += strength
        total = float(weights.sum())
        if total <= 0:
            return Band(median=float("nan"), low=float("-inf"), below_rate=0.0, count=0)
        if total < max(self.config.min_count, 1e-9):
            return Band(median=float("nan"), low=float("-inf"), below_rate=0.0, count=count)
        cum = Cumulative(weights, total)
        med, mad = cum.median_mad()
        half_width = max(self.config.band_k * _SIGMA_PER_MAD * mad, self.tolerance)
        # The lower edge of the bin holding the tail quantile: answers in that bin are normal.
        tail_edge = cum.bin_of(self.config.tail_quantile) / self.config.bins
        # ...but a cluster's own background errors never widen the band to include themselves.
        deepest = med - max(half_width, self.config.max_width)
        low = min(med - half_width, tail_edge) - self.config.cold_margin * borrowed
        return Band(median=med, low=float(max(low, deepest)),
                    below_rate=below / n if n else 0.0, count=count)

    def confidence_quantile(self, q: float) -> float:
        return self.confidence_ok.quantile(q)

    def faithful_below(self, threshold: float) -> tuple[int, int]:
        """Within-band answers in the window whose confidence is below ``threshold``, and all of them."""
        counts = self.confidence_ok.counts
        edges = np.arange(1, len(counts) + 1) / len(counts)  # upper edge of each bin
        return int(counts[edges <= threshold + 1e-9].sum()), int(counts.sum())

    def faithful_share_below(self, threshold: float) -> float:
        """Share of this cluster's within-band answers whose confidence is below ``threshold``."""
        below, total = self.faithful_below(threshold)
        return below / total if total else 0.0

    # -- state -------------------------------------------------------------------------------
    def to_state(self) -> dict:
        payload = {
            "tolerance": self.tolerance,
            "faithfulness": self.faithfulness.state(),
            "confidence_ok": self.confidence_ok.state(),
            "flags": self.flags.state(),
            "pending": [[at.isoformat(), f, c, b] for at, f, c, b in self._pending],
        }
        return envelope(self.KIND, self.STATE_VERSION, self.config, payload)

    @classmethod
    def from_state(cls, state: dict, config: BaselineConfig) -> ClusterBaseline:
        p = check_envelope(state, cls.KIND, cls.STATE_VERSION, config)
        b = cls(config, tolerance=p["tolerance"])
        b.faithfulness.load(p["faithfulness"])
        b.confidence_ok.load(p["confidence_ok"])
        b.flags.load(p["flags"])
        b._pending = deque((datetime.fromisoformat(at), f, c, bool(x)) for at, f, c, x in p["pending"])
        return b


__all__ = ["Band", "ClusterBaseline", "Prior", "weighted_quantile"]
