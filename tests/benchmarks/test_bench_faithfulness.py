"""Smoke test of the faithfulness benchmark: the quick run writes its fragment with every table row."""

from __future__ import annotations

import os

from benchmarks import bench_faithfulness, common, embedding_cache


def test_quick_run_writes_the_fragment(tmp_path, monkeypatch):
    os.environ["HF_HUB_OFFLINE"] = "1"
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(embedding_cache, "CACHE_DIR", tmp_path / "cache")
    bench_faithfulness.main(["--quick"])
    text = (tmp_path / "results" / "quick" / "faithfulness.md").read_text(encoding="utf-8")
    assert text.startswith("## Faithfulness scorer")
    for task in ("qa", "dialogue"):
        for subset in ("all", "length-controlled"):
            for method in ("scorer", "scorer, word part only", "scorer, embedding part only",
                           "length (characters)", "token overlap"):
                assert f"| {subset} | {method} |" in text and f"| {task} |" in text
    assert "| ChatGPT | 62.59 | 72.40 |" in text
    assert "| changed to a new value |" in text and "| swapped with another figure of the passage |" in text
    assert text.count("length-controlled pairs: scorer AUROC") == 2
    assert text.count("On the held-out odd-indexed items alone") == 2


def test_token_overlap_and_length_controlled_pairs():
    assert bench_faithfulness.token_overlap("Delhi is the city", "The head office is in Delhi.") == 0.75
    assert bench_faithfulness.token_overlap("", "anything") == 1.0
    rows = [{"r": "abcde", "h": "abcd"}, {"r": "ab", "h": "abcdef"}]
    assert bench_faithfulness.length_controlled(rows, "r", "h") == rows[:1]


def test_altered_figure_differs_from_the_original():
    import numpy as np

    rng = np.random.default_rng(0)
    answer = "Cards arrive within 5 working days and cost £4.99."
    for _ in range(20):
        wrong = bench_faithfulness.alter_figure(answer, rng)
        assert wrong is not None and wrong != answer
    assert bench_faithfulness.alter_figure("no figures", rng) is None
    swapped = bench_faithfulness.alter_figure("It takes 5 days.", rng, within=["5", "12"])
    assert swapped == "It takes 12 days."
