"""discover() links component by component with cached similarities: same groups as one full linkage."""

import numpy as np
import pytest
from sklearn.cluster import AgglomerativeClustering

from pipelines.clustering import cosine_similarities, discover, unit
from pipelines.config import ClusterConfig


def stored(x: np.ndarray) -> np.ndarray:
    """Vectors as the clusterer keeps them: unit length, float16."""
    return unit(x).astype(np.float16).astype(np.float64)


def blobs(seed: int, n_centres: int, per: int, noise: float, dim: int = 32, strays: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(n_centres, dim)))
    x = np.repeat(centres, per, axis=0) + rng.normal(0, noise / np.sqrt(dim), (n_centres * per, dim))
    x = np.vstack([x, rng.normal(size=(strays, dim))])
    return stored(x[rng.permutation(len(x))])


def full_linkage_groups(x: np.ndarray, config: ClusterConfig) -> list[list[int]]:
    labels = AgglomerativeClustering(n_clusters=None, distance_threshold=config.distance_threshold,
                                     metric="cosine", linkage=config.linkage).fit_predict(x)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(labels.tolist()):
        groups.setdefault(g, []).append(i)
    return [m for m in groups.values() if len(m) >= config.min_cluster_size]


@pytest.mark.parametrize("linkage", ["average", "complete"])
@pytest.mark.parametrize("seed,cut", [(1, 0.5), (2, 0.3), (3, 0.2), (4, 0.7)])
def test_same_groups_as_one_full_linkage(linkage, seed, cut):
    x = blobs(seed, n_centres=12, per=15, noise=0.6, strays=60)
    cfg = ClusterConfig(linkage=linkage, distance_threshold=cut, min_cluster_size=2)
    got = [g.tolist() for g in discover(x, cfg)]
    assert got == full_linkage_groups(x, cfg)
    assert len(got) > 1  # the data has structure at every cut tried


def test_groups_in_order_of_first_row_and_sorted():
    x = blobs(5, n_centres=6, per=10, noise=0.2)
    groups = discover(x, ClusterConfig(min_cluster_size=2))
    firsts = [int(g[0]) for g in groups]
    assert firsts == sorted(firsts)
    assert all(np.all(np.diff(g) > 0) for g in groups)


def test_rows_of_similarities_equal_a_fresh_computation_bit_for_bit():
    # The pool and the recent window keep rows computed at different times, over different sets
    # of members (_Pool, _WindowLinks): any row of a subset must equal the same entries of one
    # full computation.
    x = blobs(7, n_centres=8, per=40, noise=0.3, dim=384).astype(np.float16)
    full = cosine_similarities(x)
    assert np.array_equal(full, full.T)
    for lo, hi in ((0, 120), (20, 200), (60, 260), (0, 320)):
        picked = np.array([k for k in range(lo, hi) if k % 7 != lo % 7])
        sub = cosine_similarities(x[picked])
        assert np.array_equal(sub, full[np.ix_(picked, picked)])
        some = np.arange(0, len(picked), 3)
        assert np.array_equal(cosine_similarities(x[picked], some), sub[some])


def test_ward_keeps_euclidean_linkage():
    x = blobs(8, n_centres=4, per=10, noise=0.1)
    cfg = ClusterConfig(linkage="ward", distance_threshold=1.0, min_cluster_size=2)
    assert len(discover(x, cfg)) == 4
