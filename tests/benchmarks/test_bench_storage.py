"""Smoke test of the storage benchmark: --quick writes its fragment with every table row."""

from __future__ import annotations

from pathlib import Path

import pytest

import benchmarks.common
from benchmarks import bench_storage


def test_quick_run_writes_the_fragment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(benchmarks.common, "RESULTS", tmp_path)
    path = bench_storage.main(["--quick", "--repeats", "2"])
    assert path == tmp_path / "quick" / "storage.md"
    text = path.read_text(encoding="utf-8")
    assert "`python -m benchmarks.bench_storage --quick`" in text
    assert "| `Store.insert_interactions` (ScoredInteraction rows, rollup view on) | 20,000 | 5,000 |" in text
    assert "| 100k p50 | 100k p95 |" in text
    for name in bench_storage.queries(bench_storage.START):
        assert f"| {name} |" in text
