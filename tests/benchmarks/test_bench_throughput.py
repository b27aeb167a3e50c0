"""Smoke test of the throughput benchmark: --quick writes its fragment with every table row."""

from __future__ import annotations

from pathlib import Path

import pytest

import benchmarks.common
from benchmarks import bench_throughput


def test_quick_run_writes_the_fragment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(benchmarks.common, "RESULTS", tmp_path)
    path = bench_throughput.main(["--quick"])
    assert path == tmp_path / "quick" / "throughput.md"
    text = path.read_text(encoding="utf-8")
    assert "`python -m benchmarks.bench_throughput --quick`" in text
    for label in bench_throughput.LABEL.values():
        assert f"| {label} |" in text
    assert "| 100 intents | producer | torch fp32 (sentence-transformers) | 400 |" in text
    assert "| 100 intents | built-in | ONNX fp32 (onnxruntime) | 400 |" in text
    assert "| ONNX fp32 (onnxruntime) | 64 | 1 |" in text
    for target in ("default embedding ≥ 2.5× torch fp32", "≤ 2 GB RSS", "identical incidents whatever"):
        assert f"| {target}" in text
