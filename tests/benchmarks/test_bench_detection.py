"""Smoke test of the detection benchmark: the quick run writes its fragment with every table row."""

from __future__ import annotations

import os

from benchmarks import bench_detection, common, embedding_cache
from pipelines.scenario import INCIDENT_KINDS


def test_quick_run_writes_the_fragment(tmp_path, monkeypatch):
    os.environ["HF_HUB_OFFLINE"] = "1"
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    # The benchmark's own on-disk embedding cache (git-ignored), not a fresh one: cold, the quick
    # run embeds a few thousand texts (about 3 minutes on a busy 2-core machine); warm, seconds.
    assert embedding_cache.CACHE_DIR.name == "bench-cache"
    bench_detection.main(["--quick"])
    text = (tmp_path / "results" / "quick" / "detection.md").read_text(encoding="utf-8")
    assert text.startswith("## Detection: faithwatch against fixed-threshold and global monitors")
    assert "`python -m benchmarks.bench_detection --quick`" in text
    for kind in INCIDENT_KINDS:
        for monitor in bench_detection.MONITORS:
            assert f"| {kind} | {monitor} | " in text
    for mode in bench_detection.MODES:
        for monitor in bench_detection.MONITORS:
            assert f"\n| {mode} | {monitor} | " in text  # the false-alarm table
    assert "median delay <= 6 failing sessions" in text and "per 1,000 cluster-days" in text
    assert text.count("-> **") >= 3  # every target stated with met / not met
