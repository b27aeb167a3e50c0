"""Smoke test of the clustering benchmark: the quick run writes its fragment with every table row."""

from __future__ import annotations

import os

from benchmarks import bench_clustering, common, embedding_cache


def test_quick_run_writes_the_fragment(tmp_path, monkeypatch):
    os.environ["HF_HUB_OFFLINE"] = "1"
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(embedding_cache, "CACHE_DIR", tmp_path / "cache")
    bench_clustering.main(["--quick"])
    text = (tmp_path / "results" / "quick" / "clustering.md").read_text(encoding="utf-8")
    assert text.startswith("## Intent clustering")
    assert "`python -m benchmarks.bench_clustering --quick`" in text
    for name in ("BANKING77", "CLINC150", "HWU64"):
        rows = [line for line in text.splitlines() if line.startswith(f"| {name} | 600 |")]
        assert len(rows) == 4  # as assigned, final, families as assigned, KMeans with the sample's intents
        assert "online, as assigned" in rows[0] and "online, final" in rows[1]
        assert "online families, as assigned" in rows[2] and "batch KMeans, k=" in rows[3]
    assert "| demo (skewed) | as assigned |" in text and "| demo (skewed) | final |" in text
    # Seeded: fitted on 200 training queries first, then the same 600 test queries.
    for name in ("BANKING77", "CLINC150", "HWU64"):
        (row,) = [line for line in text.splitlines() if line.startswith(f"| {name} | 200 |")]
        nmi, clusters, km, behind = (float(cell) for cell in row.strip("|").split("|")[2:])
        assert 0 < nmi <= 100 and clusters >= 2 and abs(km - nmi - behind) < 0.11
    assert "Seeded with 200 past queries (a seed file)" in text
    assert text.count("within 2 points of KMeans") == 3 and "popular intent not split" in text
