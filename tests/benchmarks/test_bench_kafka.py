"""Smoke test of the Kafka benchmark: --quick (tansu, the ClickHouse HTTP test server, real worker
processes, hashing embedder) writes its fragment with every table row."""

from __future__ import annotations

from pathlib import Path

import pytest

import benchmarks.common
from benchmarks import bench_kafka


def test_quick_run_writes_the_fragment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(benchmarks.common, "RESULTS", tmp_path)
    path = bench_kafka.main(["--quick"])
    assert path == tmp_path / "quick" / "kafka.md"
    text = path.read_text(encoding="utf-8")
    assert "`python -m benchmarks.bench_kafka --quick`" in text
    assert "load average" in text and "**Contended**" in text
    assert "| workers | interactions | total s | interactions/s (total) |" in text
    # One row per worker count, every interaction stored.
    assert "\n| 1 | 600 | " in text and "\n| 2 | 600 | " in text
    assert "| produce → scored | " in text
    assert "| produce → scored, after the first 400 produced | " in text
    assert "| produce → incident event (" in text
    assert "| event | incident | sequence | produce → incident ms |" in text
    assert "| opened | `inc-" in text
