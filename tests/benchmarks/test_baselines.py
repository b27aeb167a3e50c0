"""The two baselines behave like the alerting rules they stand for: windowed mean below a fixed
threshold, a minimum count, one alert per episode, per cluster or over everything."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.baselines import (
    FixedThresholdMonitor,
    GlobalMeanMonitor,
    Scored,
    calibrate_global_threshold,
)

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def s(minute: float, cluster: str, f: float, session: str | None = None) -> Scored:
    return Scored(T0 + timedelta(minutes=minute), cluster, f, session or f"s-{cluster}-{minute}",
                  f"i-{cluster}-{minute}")


def test_fires_once_per_episode_and_again_after_recovery():
    m = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=3)
    stream = [s(k, "c1", 0.3) for k in range(6)]                 # an episode
    stream += [s(6 + k, "c1", 0.95) for k in range(20)]           # recovery (mean back above)
    stream += [s(30 + k, "c1", 0.2) for k in range(20)]           # a second episode
    alerts = m.run(stream)
    assert [a.at for a in alerts] == [T0 + timedelta(minutes=2), T0 + timedelta(minutes=33)]
    assert alerts[0].ended_at is not None and alerts[1].ended_at is None
    assert all(a.cluster_id == "c1" for a in alerts)


def test_minimum_count_holds_back_a_sparse_window():
    m = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=3)
    # Two bad answers 20 minutes apart never share a window.
    assert m.run([s(0, "c1", 0.1), s(20, "c1", 0.1), s(40, "c1", 0.1)]) == []
    assert FixedThresholdMonitor(0.7, 15, 1).run([s(0, "c1", 0.1)])


def test_window_is_event_time_and_slides():
    m = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=2)
    # 0.1 at minute 0 has left the window by minute 15, so (0.9, 0.9) never fires.
    assert m.run([s(0, "c1", 0.1), s(15, "c1", 0.9), s(16, "c1", 0.9)]) == []
    # ... while (0.1, 0.9) inside the window averages 0.5 and fires.
    assert FixedThresholdMonitor(0.7, 15, 2).run([s(0, "c1", 0.1), s(14, "c1", 0.9)])


def test_clusters_are_independent_and_named():
    m = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=3)
    stream = []
    for k in range(30):
        stream += [s(k, "good", 0.95), s(k + 0.5, "bad", 0.2 if k >= 10 else 0.95)]
    alerts = m.run(stream)
    assert [a.cluster_id for a in alerts] == ["bad"]
    assert alerts[0].at >= T0 + timedelta(minutes=10)


def test_blast_radius_lists_sessions_below_threshold_during_the_episode():
    m = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=2)
    stream = [s(0, "c1", 0.9, "ok1"), s(1, "c1", 0.2, "a"), s(2, "c1", 0.3, "b"),
              s(3, "c1", 0.95, "ok2"), s(4, "c1", 0.1, "c"), s(5, "c2", 0.1, "other")]
    alerts = m.run(stream)
    assert alerts[0].sessions == {"a", "b", "c"}


def test_quiet_window_ends_an_episode():
    m = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=2)
    alerts = m.run([s(0, "c1", 0.1), s(1, "c1", 0.1), s(60, "c1", 0.1), s(61, "c1", 0.1)])
    assert len(alerts) == 2 and alerts[0].ended_at == T0 + timedelta(minutes=60)


def test_global_monitor_is_diluted_by_healthy_clusters():
    """One failing cluster among many barely moves the global mean: what per-cluster fixes."""
    rng = random.Random(3)
    stream = []
    for k in range(600):
        cluster = f"c{k % 20}"
        bad = cluster == "c7" and k >= 300
        stream.append(s(k * 0.05, cluster, 0.2 if bad else min(1.0, rng.gauss(0.93, 0.04))))
    assert not GlobalMeanMonitor(threshold=0.8, window_minutes=15, min_count=10).run(stream)
    per_cluster = FixedThresholdMonitor(threshold=0.7, window_minutes=15, min_count=3).run(stream)
    assert [a.cluster_id for a in per_cluster] == ["c7"]
    fired = GlobalMeanMonitor(threshold=0.9, window_minutes=15, min_count=10).run(stream)
    assert fired and all(a.cluster_id is None for a in fired)


def test_calibrated_global_threshold_keeps_clean_traffic_quiet():
    rng = random.Random(5)
    clean = [s(k, f"c{k % 5}", min(1.0, rng.gauss(0.92, 0.05))) for k in range(500)]
    threshold = calibrate_global_threshold([clean], window_minutes=15, min_count=5)
    assert 0.8 < threshold < 0.92
    assert GlobalMeanMonitor(threshold, 15, 5).run(clean) == []


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        FixedThresholdMonitor(0.7, 15, 0)
    with pytest.raises(ValueError):
        GlobalMeanMonitor(0.7, 0, 3)


@settings(max_examples=50, deadline=None)
@given(scores=st.lists(st.floats(0, 1), min_size=1, max_size=80), min_count=st.integers(1, 5))
def test_an_alert_only_when_its_window_mean_was_below_the_threshold(scores, min_count):
    stream = [s(k, "c", f) for k, f in enumerate(scores)]
    alerts = FixedThresholdMonitor(0.7, 15, min_count).run(stream)
    for a in alerts:
        window = [x.faithfulness for x in stream if a.at - timedelta(minutes=15) < x.at <= a.at]
        assert len(window) >= min_count and sum(window) / len(window) < 0.7
    # Episodes never overlap: each one ended before the next fired.
    for a, b in zip(alerts, alerts[1:], strict=False):
        assert a.ended_at is not None and a.ended_at <= b.at


def test_a_quick_fragment_never_replaces_the_published_one(tmp_path, monkeypatch):
    from benchmarks import common

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    published = common.write_fragment("x", "X", "python -m benchmarks.bench_x", "full numbers")
    quick = common.write_fragment("x", "X", "python -m benchmarks.bench_x --quick", "smoke", quick=True)
    assert quick == tmp_path / "quick" / "x.md" and published == tmp_path / "x.md"
    assert "full numbers" in published.read_text() and "smoke" in quick.read_text()
