from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.baseline import ClusterBaseline
from pipelines.config import BaselineConfig
from pipelines.histogram import median_mad, weighted_quantile

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def fill(b: ClusterBaseline, values, start=T0, step=timedelta(minutes=1), conf=0.9):
    t = start
    for v in values:
        b.observe(t, v, conf, below=False)
        t += step
    return t


def test_band_is_median_minus_robust_spread_or_tolerance():
    rng = np.random.default_rng(0)
    b = ClusterBaseline(BaselineConfig(holdback=0), tolerance=0.05)
    fill(b, np.clip(rng.normal(0.8, 0.05, 2000), 0, 1))
    band = b.band()
    assert band.median == pytest.approx(0.8, abs=0.01)
    # 3 robust sigmas of N(0.8, 0.05) = 0.15 below the median
    assert band.low == pytest.approx(0.65, abs=0.02)


def test_tolerance_is_the_minimum_width_for_steady_clusters():
    b = ClusterBaseline(BaselineConfig(holdback=0), tolerance=0.2)
    fill(b, [0.9] * 500)
    assert b.band().low == pytest.approx(b.band().median - 0.2)


def test_outliers_do_not_move_the_band():
    b1 = ClusterBaseline(BaselineConfig(holdback=0), tolerance=0.05)
    b2 = ClusterBaseline(BaselineConfig(holdback=0), tolerance=0.05)
    rng = np.random.default_rng(1)
    vals = list(np.clip(rng.normal(0.8, 0.04, 1000), 0, 1))
    fill(b1, vals)
    fill(b2, vals[:970] + [0.0] * 30)  # 3 % absurd values (under the 5 % tail floor)
    assert abs(b1.band().low - b2.band().low) < 0.03


def test_lumpy_scores_do_not_put_healthy_answers_below_the_band():
    b = ClusterBaseline(BaselineConfig(holdback=0), tolerance=0.08)
    fill(b, [1.0] * 650 + [0.86] * 300 + [0.4] * 30 + [0.85] * 20)
    band = b.band()
    assert band.median == pytest.approx(1.0, abs=0.01)
    assert not band.is_below(0.85) and not band.is_below(0.86)
    assert band.is_below(0.4)


def test_nothing_is_below_before_min_count():
    b = ClusterBaseline(BaselineConfig(holdback=0, min_count=20))
    fill(b, [0.9] * 19)
    assert not b.band().is_below(0.0)
    fill(b, [0.9], start=T0 + timedelta(hours=1))
    assert b.band().is_below(0.0)


def test_window_forgets_by_event_time():
    cfg = BaselineConfig(holdback=0, window_hours=24, bucket_minutes=60)
    b = ClusterBaseline(cfg)
    t = fill(b, [0.3] * 200, step=timedelta(minutes=5))  # ~17 hours of 0.3
    fill(b, [0.9] * 400, start=t + timedelta(days=2), step=timedelta(minutes=3))
    assert b.band().median == pytest.approx(0.9, abs=0.01)


def test_cold_cluster_borrows_the_global_baseline():
    glob = ClusterBaseline(BaselineConfig(holdback=0))
    fill(glob, [0.6] * 1000)
    cold = ClusterBaseline(BaselineConfig(holdback=0, prior_strength=30))
    fill(cold, [0.95] * 3)
    assert cold.band(glob.prior()).median == pytest.approx(0.6, abs=0.02)
    fill(cold, [0.95] * 300, start=T0 + timedelta(hours=5))
    assert cold.band(glob.prior()).median == pytest.approx(0.95, abs=0.02)


def test_holdback_keeps_newest_events_out_until_committed_and_discard_takes_them_back():
    b = ClusterBaseline(BaselineConfig(holdback=10, holdback_hours=100))
    fill(b, [0.9] * 20)
    assert b.count == 10
    dropped = b.discard_since(T0 + timedelta(minutes=15))
    assert dropped == 5 and b.count == 10
    b.observe(T0 + timedelta(minutes=30), 0.9, 0.9, False)
    assert b.count == 10  # 6 pending, holdback 10


def test_holdback_hours_bounds_the_wait():
    b = ClusterBaseline(BaselineConfig(holdback=1000, holdback_hours=1))
    fill(b, [0.9] * 5, step=timedelta(minutes=30))
    assert b.count == 3  # events older than an hour relative to the newest are committed


def test_below_rate_counts_flags():
    b = ClusterBaseline(BaselineConfig(holdback=0))
    for k in range(100):
        b.observe(T0 + timedelta(minutes=k), 0.9, 0.9, below=(k % 10 == 0))
    assert b.band().below_rate == pytest.approx(0.1)


def test_faithful_share_below_reads_confidence_of_within_band_answers():
    b = ClusterBaseline(BaselineConfig(holdback=0))
    for k, c in enumerate([0.70, 0.75, 0.85, 0.95]):
        b.observe(T0 + timedelta(minutes=k), 0.9, c, below=False)
    b.observe(T0 + timedelta(minutes=9), 0.1, 0.5, below=True)  # not a faithful answer
    assert b.faithful_share_below(0.80) == pytest.approx(0.5)
    assert b.faithful_share_below(0.70) == 0.0


@given(st.lists(st.floats(0, 1), min_size=1, max_size=300), st.floats(0, 1))
@settings(max_examples=60, deadline=None)
def test_histogram_quantiles_are_within_one_bin_of_exact(values, q):
    w = np.zeros(100)
    for v in values:
        w[min(99, int(v * 100))] += 1
    exact = float(np.quantile(values, q, method="inverted_cdf"))
    assert abs(weighted_quantile(w, q) - exact) <= 0.011 + 1e-9


@given(st.lists(st.floats(0, 1), min_size=5, max_size=300))
@settings(max_examples=60, deadline=None)
def test_band_low_never_exceeds_median_and_state_round_trips(values):
    b = ClusterBaseline(BaselineConfig(holdback=3), tolerance=0.05)
    fill(b, values)
    band = b.band()
    if band.count >= b.config.min_count:
        assert band.low <= band.median - 0.05 + 1e-9
    else:  # too little evidence: nothing counts as below yet
        assert not band.is_below(0.0)
    again = ClusterBaseline.from_state(json.loads(json.dumps(b.to_state())), b.config)
    assert repr(again.band()) == repr(band)


def test_median_mad_of_symmetric_histogram():
    w = np.zeros(100)
    w[[40, 50, 60]] = [1, 1, 1]
    med, mad = median_mad(w)
    assert med == pytest.approx(0.505, abs=0.01)
    assert mad == pytest.approx(0.1, abs=0.011)


def test_background_errors_never_widen_the_band_to_include_themselves():
    # 8 % of this cluster's answers state a made-up figure (0.4): the 5 % tail floor alone would
    # sit at 0.4 and hide an incident of the same kind; the band stops max_width below the median.
    b = ClusterBaseline(BaselineConfig(holdback=0), tolerance=0.08)
    fill(b, [1.0] * 600 + [0.86] * 320 + [0.4] * 80)
    band = b.band()
    assert band.low == pytest.approx(band.median - BaselineConfig().max_width, abs=0.01)
    assert band.is_below(0.4) and not band.is_below(0.86)
    wide = ClusterBaseline(BaselineConfig(holdback=0, max_width=1.0), tolerance=0.08)
    fill(wide, [1.0] * 600 + [0.86] * 320 + [0.4] * 80)
    assert not wide.band().is_below(0.4)  # what the floor did without the cap


def test_a_cold_band_is_wider_while_it_is_mostly_borrowed():
    glob = ClusterBaseline(BaselineConfig(holdback=0))
    fill(glob, [1.0] * 900 + [0.85] * 100)
    config = BaselineConfig(holdback=0, prior_strength=30)
    cold = ClusterBaseline(config, tolerance=0.08)
    fill(cold, [1.0] * 3)
    warm = ClusterBaseline(config, tolerance=0.08)
    fill(warm, [1.0] * 900 + [0.85] * 100)
    cold_band, warm_band = cold.band(glob.prior()), warm.band(glob.prior())
    # A young cluster's normal answer a little under the global tail is not failing...
    assert not cold_band.is_below(0.82) and warm_band.is_below(0.82)
    # ...while a clearly wrong answer is, either way; and the margin fades with own evidence.
    assert cold_band.is_below(0.4) and warm_band.is_below(0.4)
    assert warm_band.low - cold_band.low == pytest.approx(0.15 * (30 / 33 - 30 / 1030), abs=0.011)


# -- the fast statistics give exactly what the plain numpy formulas give -----------------------
def _reference_median_mad(weights):
    """The straightforward numpy version (sort every bin by its distance from the median)."""
    total = float(weights.sum())
    cum = np.cumsum(weights)
    i = min(int(np.searchsorted(cum, 0.5 * total, side="left")), len(weights) - 1)
    before = cum[i - 1] if i > 0 else 0.0
    inside = (0.5 * total - before) / weights[i] if weights[i] > 0 else 0.5
    med = float((i + min(max(inside, 0.0), 1.0)) / len(weights))
    dev = np.abs((np.arange(len(weights)) + 0.5) / len(weights) - med)
    order = np.argsort(dev, kind="stable")
    k = int(np.searchsorted(np.cumsum(weights[order]), 0.5 * weights.sum(), side="left"))
    return med, float(dev[order][min(k, len(order) - 1)])


@given(st.lists(st.integers(0, 99), min_size=1, max_size=200), st.floats(0, 60), st.integers(0, 2**31))
@settings(max_examples=150, deadline=None)
def test_median_mad_is_bit_identical_to_the_numpy_formula(bins, borrowed, seed):
    w = np.zeros(100)
    np.add.at(w, bins, 1.0)
    if borrowed:  # a cold cluster's weights: counts plus a scaled, normalised global histogram
        g = np.random.default_rng(seed).random(100)
        w = w + borrowed * (g / g.sum())
    assert median_mad(w) == _reference_median_mad(w)


def test_median_mad_on_a_bin_edge_takes_the_lower_bin_first():
    w = np.zeros(100)
    w[[49, 50]] = [1, 1]  # median exactly 0.5: bins 49 and 50 are equally far
    assert median_mad(w) == _reference_median_mad(w)


def test_cached_band_and_prior_follow_every_change():
    """band() and prior() are cached until the histograms change: at every step of a stream
    (commits, expiry, a tolerance change, a new prior) they equal a freshly restored baseline's."""
    rng = np.random.default_rng(3)
    cfg = BaselineConfig(window_hours=2, bucket_minutes=10, holdback=5, holdback_hours=0.5)
    b, glob = ClusterBaseline(cfg, tolerance=0.05), ClusterBaseline(cfg)
    t = T0
    for k in range(400):
        t += timedelta(minutes=float(rng.choice([1, 1, 7, 45])))
        f = float(np.clip(rng.normal(0.85, 0.1), 0, 1))
        (b if k % 3 else glob).observe(t, f, 0.9, below=f < 0.6)
        if k % 50 == 0:
            b.tolerance = float(rng.choice([0.05, 0.1]))
        prior = glob.prior()
        fresh = ClusterBaseline.from_state(b.to_state(), cfg)
        fresh.tolerance = b.tolerance
        assert repr(b.band(prior)) == repr(fresh.band(prior)) and repr(b.band()) == repr(fresh.band())
        fresh_glob = ClusterBaseline.from_state(glob.to_state(), cfg).prior()
        assert np.array_equal(prior.weights, fresh_glob.weights) and prior.below_rate == fresh_glob.below_rate
        assert b.count == int(b.faithfulness.counts.sum())


@pytest.mark.parametrize("bucket_minutes", [60.0, 7.0, 0.00001])
def test_histogram_forgets_exactly_the_buckets_before_the_window(bucket_minutes):
    """expire() skips its date arithmetic until the oldest bucket can go: after every call what
    stays is exactly the events whose bucket is not before the window's first."""
    from pipelines.histogram import RollingHistogram
    rng = np.random.default_rng(5)
    window, bucket = timedelta(hours=3), timedelta(minutes=bucket_minutes)
    h, buckets, t = RollingHistogram(10, window, bucket), [], T0
    for _ in range(1500):
        t += timedelta(seconds=float(rng.exponential(300)))
        at = t - timedelta(seconds=float(rng.integers(0, 600)))  # a little out of order
        h.add(0.55, at)
        buckets.append(h.bucket_of(at))
        h.expire(t)
        first = h.bucket_of(t - window)
        assert h.count == sum(1 for b in buckets if b >= first) == int(h.counts.sum())
