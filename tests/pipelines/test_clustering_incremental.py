"""The clusterer's incremental bookkeeping gives exactly what the straightforward computation gives.

The clusterer keeps derived structures so that a query costs (nearly) the same whatever the number
of clusters: the pool's vectors as rows of a fixed matrix with the pairs closer than the cut, the
recent window's pairs across refits, the centroids changed since the last sweep, and each cluster's
description (recomputed only when it can have changed). Here a real stream (BANKING77 and CLINC150
test queries, hashing embedder, a configuration that creates clusters, evicts from a full pool and
refits often) runs through the clusterer and through a reference subclass that does everything the
plain way (``discover`` on the stacked pool and window, every pooled query against every centroid,
every description from scratch), and both must agree at every step.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipelines.clustering import OnlineClusterer, cosine_similarities, cut, discover, unit
from pipelines.config import ClusterConfig
from pipelines.embedding import HashingEmbedder
from pipelines.labels import CategoryIndex, DistinctiveTerms, TermCounts, distinctive_terms
from pipelines.policy import CategoryPolicy
from services.datasets import load_banking77, load_clinc150

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 5, 1, tzinfo=UTC)
BOOT = 200
# 0.4 / 0.5 on hashing vectors: ~125 clusters from 1,200 queries, a full pool that forgets, refits
CFG = ClusterConfig(distance_threshold=0.4, assign_threshold=0.5, bootstrap_size=BOOT, refit_every=150,
                    recent_capacity=400, pool_capacity=300, pool_recluster_size=20, label_terms=3)


@pytest.fixture(scope="module")
def data():
    queries, hints = [], []
    for load in (load_banking77, load_clinc150):
        for intent, qs in load("test").items():
            queries += qs[:6]
            hints += [intent] * len(qs[:6])
    order = np.random.default_rng(0).permutation(len(queries))[:1200]
    queries = [queries[i] for i in order]
    hints = [hints[i] if i % 3 else None for i in order]  # some queries come without a hint
    embedder = HashingEmbedder()
    policy = CategoryPolicy.model_validate(yaml.safe_load((ROOT / "alerts" / "categories.yaml").read_text()))
    categories = CategoryIndex.build(policy, embedder, threshold=0.2)
    return embedder.encode(queries), queries, hints, categories


class _Discover:
    def groups(self, items, x, config):
        return discover(x, config)


class Reference(OnlineClusterer):
    """The same clusterer computed the plain way."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._links = _Discover()

    def _to_pool(self, it):
        pooled = list(self._pool)
        best = (float((np.stack([p.vector for p in pooled]).astype(np.float64) @ it.vector.astype(np.float64)).max())
                if pooled else -np.inf)
        super()._to_pool(it)
        return best >= self._pair_threshold()

    def _promote(self, items):
        if not items:
            return []
        x = np.stack([it.vector for it in items]).astype(np.float64)
        created = []
        for g in discover(x, self.config):
            c = self._new_cluster(unit(x[g].mean(0)), len(g))
            created.append(c.cid)
            for i in g.tolist():
                self._move(items[i], c)
        if created:
            self._sweep()
        return created

    def _sweep(self):
        self._moved = set()
        if not self._pool or not self._clusters:
            return
        pooled = list(self._pool)
        sims = np.stack([it.vector for it in pooled]).astype(np.float64) @ np.stack(
            [c.centroid for c in self._clusters]).T
        for it, b, s in zip(pooled, sims.argmax(axis=1).tolist(), sims.max(axis=1).tolist(), strict=True):
            if s >= self.config.assign_threshold:
                self._move(it, self._clusters[b])

    @property
    def clusters(self):
        return describe_all(self)


def describe_all(c: OnlineClusterer) -> dict:
    """Every cluster's description computed from scratch (what ``_describe`` keeps up to date)."""
    terms = distinctive_terms({k.cid: k.terms for k in c._clusters}, c.config.label_terms)
    seeds = c.categories.by_seed_many(c._centroids) if c.categories is not None else []
    return {k.cid: c._info_of(k, terms[k.cid], seeds[i] if seeds else None) for i, k in enumerate(c._clusters)}


def check_derived(c: OnlineClusterer) -> None:
    """The derived structures match what they are derived from."""
    pool = c._pool
    items = list(pool)
    assert [it.seq for it in items] == sorted(it.seq for it in items)
    for it in items:
        assert it.cluster is None
        assert np.array_equal(pool.rows[pool._slot[it.seq]], it.vector.astype(np.float64))
    assert np.array_equal(pool._rows32[:len(items)], pool.rows[:len(items)].astype(np.float32))
    free = pool._seq_at < 0
    assert not pool.rows[free].any() and int((~free).sum()) == len(items)
    # the pairs closer than the cut, by brute force
    if len(items) > 1:
        x = np.stack([it.vector for it in items]).astype(np.float64)
        i, j = np.nonzero(1.0 - cosine_similarities(x) < cut(len(x), c.config))
        want = {(items[a].seq, items[b].seq) for a, b in zip(i.tolist(), j.tolist(), strict=True) if a != b}
        have = {(a, b) for a, peers in pool._edges.items() for b in peers}
        assert have == want
    assert np.array_equal(c._centroids, np.stack([k.centroid for k in c._clusters]).reshape(-1, c.dim))


@pytest.mark.parametrize("moves", [False, True], ids=["default", "refit-moves-centroids"])
def test_incremental_paths_equal_the_plain_computation(data, moves):
    x, queries, hints, categories = data
    cfg = CFG.model_copy(update={"refit_moves_centroids": moves})
    new = OnlineClusterer(cfg, x.shape[1], categories)
    ref = Reference(cfg, x.shape[1], categories)
    at = [T0 + timedelta(seconds=i) for i in range(len(x))]
    assert new.bootstrap(x[:BOOT], queries[:BOOT], at[:BOOT], hints[:BOOT]) == \
        ref.bootstrap(x[:BOOT], queries[:BOOT], at[:BOOT], hints[:BOOT])
    created = forgotten = 0
    for i in range(BOOT, len(x)):
        a = new.assign(x[i], queries[i], at[i], hints[i])
        assert a == ref.assign(x[i], queries[i], at[i], hints[i])
        created += len(a.created)
        if i % 5 == 0 or a.created:  # read descriptions at an irregular cadence, like the engine
            assert new.clusters == ref.clusters
        if i % 50 == 0:
            check_derived(new)
        if i == 700:  # a restored clusterer rebuilds its derived structures and continues exactly
            new = OnlineClusterer.from_state(new.to_state(), cfg, categories)
    forgotten = new.forgotten
    assert new.clusters == ref.clusters == describe_all(new)
    assert new.to_state() == ref.to_state()
    check_derived(new)
    # the stream exercised what the shortcuts shortcut: new clusters, a full pool, refits
    assert created > 50 and forgotten > 0 and new.seen == len(x)
    assert len({info.category for info in new.clusters.values()}) > 1  # seeds and hints decide some


def test_distinctive_terms_kept_up_to_date_equal_a_full_recompute(data):
    """Clusters appended and counts changed at random, vocabulary truncation included."""
    _, queries, _, _ = data
    rng = np.random.default_rng(4)
    docs: list[TermCounts] = []
    keeper = DistinctiveTerms(top=3)
    for step, q in enumerate(queries):
        if not docs or rng.random() < 0.15:
            docs.append(TermCounts(capacity=12))
        i = int(rng.integers(len(docs)))
        docs[i].update(q)
        keeper.touch(i)
        if step % 3 == 0:
            keeper.update(docs)
            full = distinctive_terms({str(k): d for k, d in enumerate(docs)}, 3)
            assert keeper.terms == [full[str(k)] for k in range(len(docs))]
    assert len(docs) > 100


@pytest.mark.parametrize("method", ["average", "complete"])
def test_cut_tree_equals_scipy_fcluster_of_linkage(method):
    """The clusterer's unchecked cut gives scipy's public labels (ties included: distances rounded)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    from pipelines.clustering import _cut_tree

    rng = np.random.default_rng(3)
    for trial in range(300):
        n = int(rng.integers(3, 40))
        x = unit(rng.normal(size=(n, 8)) + (rng.normal(size=(1, 8)) if trial % 2 else 0))
        condensed = np.clip(1.0 - (x @ x.T)[np.triu_indices(n, 1)], 0.0, 2.0)
        if trial % 3 == 0:
            condensed = np.round(condensed, 1)  # many ties
        t = float(rng.uniform(0.05, 1.0))
        want = fcluster(linkage(condensed, method=method), t, criterion="distance")
        assert np.array_equal(_cut_tree(condensed, n, method, t), want)


@pytest.mark.parametrize("quantile", [0.002, 0.3], ids=["fine-cut", "coarse-cut"])
@pytest.mark.parametrize("modes", ["sparse", "dense", "alternating", "chosen"])
def test_window_links_equal_discover_on_the_window(data, quantile, modes):
    """The refit's pairs and groups, found either way (sparse: the float32 pre-filter and blocks
    computed when linked; dense: full rows read from the matrix), switching between them at every
    refit or as the cost says (chosen), are the pairs closer than the cut by brute force and
    ``discover``'s groups on the whole window, with cuts exactly at pairs' distances (those pairs
    are not closer than the cut) and an ulp above them (they are)."""
    from pipelines.clustering import _Seen, _WindowLinks

    x = unit(data[0]).astype(np.float16)
    exact = cosine_similarities(x.astype(np.float64))
    i, j = np.triu_indices(1100, 1)
    together = j - i < 200  # pairs that share a window below
    dist = np.unique((1.0 - exact[:1100, :1100])[i[together], j[together]])
    at = dist[int(quantile * len(dist)):][:3]  # three pairs' exact distances
    items = [_Seen(k, x[k], "q", T0, None) for k in range(len(x))]
    for t in [*at.tolist(), *np.nextafter(at, np.inf).tolist()]:
        cfg = ClusterConfig(distance_threshold=t, recent_capacity=400, min_cluster_size=2)
        links = _WindowLinks(cfg.recent_capacity)
        used = []
        for k, end in enumerate(range(200, len(x) + 1, 150)):
            window = items[max(0, end - cfg.recent_capacity):end]
            w = np.stack([it.vector for it in window]).astype(np.float64)
            if modes != "chosen":
                links._dense = modes == "dense" or (modes == "alternating" and k % 2 == 1)
            used.append(links._dense)
            got = links.groups(window, w, cfg)
            lo = window[0].seq
            a, b = np.nonzero(np.triu(1.0 - exact[lo:end, lo:end] < t, 1))
            assert set(zip(links._a.tolist(), links._b.tolist(), strict=True)) == \
                set(zip((a + lo).tolist(), (b + lo).tolist(), strict=True)), (t, k)
            assert [g.tolist() for g in got] == [g.tolist() for g in discover(w, cfg)], (t, k)
        if modes == "chosen":  # a fine cut turns sparse after the first refit, a coarse one stays dense
            assert used == [True] + [quantile > 0.01] * (len(used) - 1), used


def test_nearest_decides_as_the_product_with_every_centroid(data):
    """The float32 pre-filter of ``_nearest`` picks the centroid the full float64 product picks (the
    first of equals) and compares with the thresholds as that product's value does, with near
    ties: a centroid a hair closer than the nearest one, an exact duplicate of it, and thresholds
    at (and an ulp either side of) the full product's value. ``exact`` gives that value itself."""
    from pipelines.clustering import _Seen

    x, queries, hints, _ = data
    at = [T0 + timedelta(seconds=i) for i in range(len(x))]
    c = OnlineClusterer(CFG, x.shape[1])
    c.bootstrap(x[:BOOT], queries[:BOOT], at[:BOOT], hints[:BOOT])
    for i in range(BOOT, 600):
        c.assign(x[i], queries[i], at[i], hints[i])
    probes = [_Seen(10**6 + k, unit(x[k]).astype(np.float16), queries[k], at[k], None) for k in range(600, 800)]
    hairs = (1e-7, 1e-9, 1e-12, 1e-14, 1e-15, 0.0)  # float32 tells apart the first only; 0: a duplicate
    for k, it in enumerate(probes[::2]):
        b = int(np.argmax(c._centroids @ it.v64))
        c._new_cluster(unit(c._centroids[b] + hairs[k % len(hairs)] * it.v64), 1)  # a hair closer to the probe
    assert len(c._clusters) > 150
    base = c.config
    for it in probes:
        full = c._centroids @ it.v64
        b = int(np.argmax(full))
        value = float(full[b])
        for threshold in (base.assign_threshold, value, np.nextafter(value, np.inf), np.nextafter(value, -np.inf)):
            for name in ("assign_threshold", "pool_attach_threshold"):
                c.config = base.model_copy(update={name: float(threshold)})
                c._near = None
                best, sim = c._nearest(it)
                assert best == b
                assert (sim >= threshold) == (value >= threshold)
                assert abs(sim - value) < 1e-12
        c._near = None
        assert c._nearest(it, exact=True) == (b, value)
    c.config = base
