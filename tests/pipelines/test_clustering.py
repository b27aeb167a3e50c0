from __future__ import annotations

import csv
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.clustering import OnlineClusterer, discover
from pipelines.config import ClusterConfig
from pipelines.errors import StateError
from pipelines.labels import CategoryIndex
from pipelines.policy import CategoryPolicy

DIM = 32
T0 = datetime(2026, 3, 1, tzinfo=UTC)
# The pool's attach and pair shortcuts off: these tests follow the pool step by step (see the
# pool tests below for both).
CFG = ClusterConfig(refit_every=0, pool_recluster_size=10, min_cluster_size=3,
                    pool_attach_threshold=1.0, pool_pair_threshold=1.0, refit_moves_centroids=True)
ON = CFG.model_copy(update={"pool_attach_threshold": 0.3, "pool_pair_threshold": 0.5})
ROOT = Path(__file__).resolve().parents[2]


def centres(k: int, seed: int = 0) -> np.ndarray:
    c = np.random.default_rng(seed).normal(size=(k, DIM))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def blob(centre: np.ndarray, n: int, rng: np.random.Generator, noise: float = 0.08) -> np.ndarray:
    x = centre + rng.normal(0, noise, size=(n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def stream(k: int, per: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``per`` points from each of ``k`` blobs, shuffled; returns (points, blob of each)."""
    rng = np.random.default_rng(seed)
    c = centres(k)
    x = np.vstack([blob(c[i], per, rng) for i in range(k)])
    y = np.repeat(np.arange(k), per)
    order = rng.permutation(len(x))
    return x[order], y[order]


def times(n: int, start: int = 0) -> list[datetime]:
    return [T0 + timedelta(seconds=start + i) for i in range(n)]


def boot(x, cfg=CFG, categories=None) -> tuple[OnlineClusterer, list]:
    c = OnlineClusterer(cfg, DIM, categories)
    out = c.bootstrap(x, [f"q{i}" for i in range(len(x))], times(len(x)))
    return c, out


def blob_to_id(out, y) -> dict[int, str]:
    m: dict[int, str] = {}
    for a, b in zip(out, y, strict=True):
        assert a.cluster_id is not None
        assert m.setdefault(int(b), a.cluster_id) == a.cluster_id  # each blob maps to one id
    return m


@pytest.mark.parametrize("k", [2, 5, 9])
def test_bootstrap_discovers_the_number_of_blobs(k):
    x, y = stream(k, 20)
    c, out = boot(x)
    assert c.fitted
    assert len(c.clusters) == k
    assert len(set(blob_to_id(out, y).values())) == k
    assert sum(info.size for info in c.clusters.values()) == len(x)


def test_new_points_join_their_blob_cluster():
    x, y = stream(5, 20)
    c, out = boot(x)
    ids = blob_to_id(out, y)
    rng = np.random.default_rng(7)
    for b, centre in enumerate(centres(5)):
        for p in blob(centre, 5, rng):
            a = c.assign(p, "q", T0)
            assert a.cluster_id == ids[b]
            assert a.similarity > 0.8 and a.created == ()


def test_far_points_pool_then_become_a_new_cluster():
    x, _ = stream(4, 20)
    c, _ = boot(x)
    far = blob(centres(5, seed=99)[0], CFG.pool_recluster_size + 3, np.random.default_rng(3))
    outs = [c.assign(p, "far", t) for p, t in zip(far, times(len(far), 100), strict=True)]
    first = outs[: CFG.pool_recluster_size - 1]
    assert all(a.cluster_id is None and a.created == () for a in first)
    trigger = outs[CFG.pool_recluster_size - 1]
    assert trigger.created == ("c005",) and trigger.cluster_id == "c005"
    assert all(a.cluster_id == "c005" for a in outs[CFG.pool_recluster_size:])
    assert c.pool_size == 0 and c.clusters["c005"].size == len(far)


def test_refit_keeps_matched_ids_and_gives_new_blob_a_new_id():
    x, y = stream(4, 20)
    cfg = CFG.model_copy(update={"pool_recluster_size": 1000})
    c, out = boot(x, cfg)
    ids = blob_to_id(out, y)
    rng = np.random.default_rng(5)
    new_centre = centres(6, seed=42)[0]
    pts = np.vstack([*(blob(centres(4)[b], 10, rng) for b in range(4)), blob(new_centre, 12, rng)])
    for p in pts:
        c.assign(p, "q", T0)
    assert c.pool_size == 12  # the new blob waits: pool re-clustering is off
    created = c.refit()
    assert created == ["c005"]
    assert set(c.clusters) == {*ids.values(), "c005"}
    assert all(c.clusters[i].centroid_version == 2 for i in ids.values())
    assert c.assign(new_centre, "q", T0).cluster_id == "c005"
    assert c.pool_size == 0


def test_periodic_refit_runs_every_n_assignments():
    x, _ = stream(3, 20)
    for moves, top in ((True, 3), (False, 1)):
        c, _ = boot(x, ClusterConfig(refit_every=25, min_cluster_size=3, refit_moves_centroids=moves))
        rng = np.random.default_rng(0)
        for p in blob(centres(3)[0], 50, rng):
            c.assign(p, "q", T0)
        versions = sorted(info.centroid_version for info in c.clusters.values())
        assert versions[-1] == top  # two refits moved the cluster that got the points (if they move any)


def test_refit_without_moving_centroids_still_reattributes_queries():
    # A pooled query that a refit's group takes in is given to the cluster the group matched;
    # the centroid itself only follows the running mean.
    x, y = stream(2, 20)
    cfg = CFG.model_copy(update={"pool_recluster_size": 1000, "refit_moves_centroids": False})
    c, out = boot(x, cfg)
    ids = blob_to_id(out, y)
    centroid = c.centroids[ids[0]]
    loose = at_cosine(centroid, 0.42, 6)  # below assign_threshold: pooled, but inside the blob's cut
    assert c.assign(loose, "loose", T0).cluster_id is None and c.pool_size == 1
    c.config = cfg.model_copy(update={"distance_threshold": 0.7})  # a coarser cut takes it in
    assert c.refit() == []
    assert c.pool_size == 0 and c.clusters[ids[0]].size == 21
    assert np.array_equal(c.centroids[ids[0]], centroid) and c.clusters[ids[0]].centroid_version == 1


def run(cfg=CFG, seed=1):
    x, _ = stream(4, 15, seed)
    c, out = boot(x, cfg)
    rng = np.random.default_rng(seed)
    extra = np.vstack([blob(centres(6)[b % 6], 1, rng) for b in range(60)])
    out += [c.assign(p, f"e{i}", t) for i, (p, t) in enumerate(zip(extra, times(60), strict=True))]
    return c, out


def test_same_input_same_ids_and_assignments():
    c1, out1 = run()
    c2, out2 = run()
    assert out1 == out2
    assert c1.clusters == c2.clusters
    assert json.dumps(c1.to_state(), sort_keys=True) == json.dumps(c2.to_state(), sort_keys=True)


@pytest.mark.parametrize("shortcuts", [0.3, 1.0])
def test_state_round_trip_continues_identically(shortcuts):
    cfg = ClusterConfig(refit_every=17, pool_recluster_size=6, min_cluster_size=3,
                        recent_capacity=50, pool_capacity=20, pool_attach_threshold=shortcuts,
                        pool_pair_threshold=shortcuts)
    c, _ = run(cfg)
    restored = OnlineClusterer.from_state(json.loads(json.dumps(c.to_state())), cfg)
    assert restored.clusters == c.clusters
    rng = np.random.default_rng(11)
    more = np.vstack([blob(centres(8)[b % 8], 1, rng) for b in range(80)])
    for i, p in enumerate(more):
        assert c.assign(p, f"m{i}", T0) == restored.assign(p, f"m{i}", T0)
    assert c.clusters == restored.clusters
    assert c.to_state() == restored.to_state()


def at_cosine(centre: np.ndarray, cos: float, seed: int) -> np.ndarray:
    """A unit vector at exactly ``cos`` to ``centre``."""
    other = np.random.default_rng(seed).normal(size=DIM)
    other -= (other @ centre) * centre
    return cos * centre + np.sqrt(1 - cos**2) * other / np.linalg.norm(other)


def test_pooled_query_is_reported_under_its_nearest_cluster_without_becoming_a_member():
    x, y = stream(4, 20)
    c, out = boot(x, ON)
    ids = blob_to_id(out, y)
    before = {cid: (info.size, c.centroids[cid]) for cid, info in c.clusters.items()}
    centre = c.centroids[ids[0]]
    near = c.assign(at_cosine(centre, 0.4, 1), "loose", T0)  # below assign 0.45, above attach 0.3
    assert near.cluster_id == ids[0] and near.similarity == pytest.approx(0.4, abs=0.01)
    assert c.pool_size == 1
    for cid, (size, centroid) in before.items():  # no member, no centroid move
        assert c.clusters[cid].size == size and np.array_equal(c.centroids[cid], centroid)
    far = c.assign(at_cosine(centre, -0.9, 2), "far", T0)
    assert far.cluster_id is None and c.pool_size == 2
    off, _ = boot(x, CFG)
    assert off.assign(at_cosine(centre, 0.4, 1), "loose", T0).cluster_id is None


def test_tight_pair_in_the_pool_becomes_a_cluster_at_once():
    x, _ = stream(4, 20)
    rng = np.random.default_rng(3)
    far = blob(centres(5, seed=99)[0], 3, rng)
    for cfg, created in ((ON.model_copy(update={"min_cluster_size": 2}), ("c005",)),
                         (CFG.model_copy(update={"min_cluster_size": 2}), ())):
        c, _ = boot(x, cfg)
        first = c.assign(far[0], "far", T0)
        assert first.cluster_id is None or first.cluster_id != "c005"
        second = c.assign(far[1], "far", T0)  # the pool has 2 entries: far below pool_recluster_size
        assert second.created == created
        if created:
            assert second.cluster_id == "c005" and c.clusters["c005"].size == 2 and c.pool_size == 0
            assert c.assign(far[2], "far", T0).cluster_id == "c005"


def test_pooled_query_joins_a_cluster_formed_after_it():
    # A tight cut keeps the loose query out of the new group; once the group is a cluster, the
    # query is assign_threshold close to it and joins, as it would if it arrived now.
    cfg = CFG.model_copy(update={"pool_recluster_size": 1000})
    x, _ = stream(3, 20)
    c, _ = boot(x, cfg)
    centre = centres(5, seed=99)[0]
    loose = c.assign(at_cosine(centre, 0.7, 4), "loose", T0)
    assert loose.cluster_id is None and c.pool_size == 1
    tight = blob(centre, 6, np.random.default_rng(5), noise=0.01)
    for p in tight:
        c.assign(p, "tight", T0)
    assert c.pool_size == 7
    c.config = cfg.model_copy(update={"distance_threshold": 0.1})
    created = c.refit()
    assert created == ["c004"]
    assert c.pool_size == 0 and c.clusters["c004"].size == 7


def test_state_without_attachments_still_loads():
    c, _ = run(ON)
    state = json.loads(json.dumps(c.to_state()))
    state["payload"]["items"] = [item[:5] for item in state["payload"]["items"]]
    restored = OnlineClusterer.from_state(state, ON)
    assert restored.clusters == c.clusters and restored.pool_size == c.pool_size


def test_from_state_refuses_another_config_or_version():
    c, _ = run()
    state = json.loads(json.dumps(c.to_state()))
    with pytest.raises(StateError):
        OnlineClusterer.from_state(state, CFG.model_copy(update={"assign_threshold": 0.6}))
    with pytest.raises(StateError):
        OnlineClusterer.from_state({**state, "version": 0}, CFG)


def test_discover_orders_groups_by_first_member_and_drops_small_ones():
    x = np.array([[0, 1], [1, 0], [0.99, 0.05], [0.05, 0.99], [-1, 0]], dtype=float)
    groups = discover(x, ClusterConfig(min_cluster_size=2))
    assert [g.tolist() for g in groups] == [[0, 3], [1, 2]]


points = st.lists(
    st.tuples(st.integers(0, 7), st.floats(0.0, 0.6), st.integers(0, 2**16)),
    min_size=1, max_size=120,
)


@settings(max_examples=40, deadline=None)
@given(points)
def test_ids_exist_and_sizes_add_up(spec):
    cfg = ClusterConfig(refit_every=13, pool_recluster_size=5, min_cluster_size=2,
                        recent_capacity=40, pool_capacity=15)
    x, _ = stream(3, 6)
    c, out = boot(x, cfg)
    cs = centres(8)
    for i, (b, noise, seed) in enumerate(spec):
        p = blob(cs[b], 1, np.random.default_rng(seed), noise=noise)[0]
        out.append(c.assign(p, f"q{i}", T0))
    clusters = c.clusters
    for a in out:
        assert a.cluster_id is None or a.cluster_id in clusters
        assert all(i in clusters for i in a.created)
    assert sum(info.size for info in clusters.values()) == c.seen - c.pool_size - c.forgotten
    assert list(clusters) == [f"c{i:03d}" for i in range(1, len(clusters) + 1)]


def test_popular_wide_intent_stays_in_one_cluster_with_the_defaults():
    """Production traffic is skewed: the most asked intent is also the most varied. Splitting it
    would split its incidents, so with the default settings (bootstrap, pool re-clustering,
    refits) at least 90 % of its queries must land in one cluster while rare intents still get
    clusters of their own."""
    rng = np.random.default_rng(4)
    cs = centres(9, seed=3)
    n = 3000
    popular = rng.random(n) < 0.4
    rare = rng.integers(1, 9, size=n)
    which = np.where(popular, 0, rare)
    x = np.vstack([blob(cs[b], 1, rng, noise=0.14 if b == 0 else 0.08) for b in which])
    cfg = ClusterConfig(bootstrap_size=400, refit_every=500)
    c = OnlineClusterer(cfg, DIM)
    at = times(n)
    out = c.bootstrap(x[:400], [f"q{i}" for i in range(400)], at[:400])
    out += [c.assign(x[i], f"q{i}", at[i]) for i in range(400, n)]
    got = Counter(a.cluster_id for a, b in zip(out, which, strict=True) if b == 0)
    assert got.most_common(1)[0][1] >= 0.9 * popular.sum()
    rare_ids = {Counter(a.cluster_id for a, b in zip(out, which, strict=True) if b == k).most_common(1)[0][0]
                for k in range(1, 9)}
    assert len(rare_ids) == 8 and None not in rare_ids


def test_refit_split_size_turns_a_merged_neighbour_into_its_own_cluster():
    # Two close blobs merged by a coarse first cut; a refit at a finer cut finds them apart.
    rng = np.random.default_rng(2)
    a, other = centres(2, seed=5)
    other -= (other @ a) * a
    b = 0.5 * a + np.sqrt(0.75) * other / np.linalg.norm(other)  # cosine 0.5 to a
    x = np.vstack([blob(a, 40, rng, 0.03), blob(b, 20, rng, 0.03)])  # the centroid leans to a
    coarse = dict(refit_every=0, pool_recluster_size=1000, distance_threshold=0.9)
    for split, expected in ((0, 1), (10, 2)):
        cfg = ClusterConfig(**coarse, refit_split_size=split)
        c, out = boot(x, cfg)
        assert len(c.clusters) == 1
        c.config = cfg.model_copy(update={"distance_threshold": 0.2})
        c.refit()
        assert len(c.clusters) == expected


# -- real model, real queries ------------------------------------------------------------------

DATA = ROOT / "data" / "banking77"
FEE = "card_payment_fee_charged"


def banking_sample(n_intents: int = 20, n: int = 1500) -> tuple[list[str], list[str]]:
    rows = []
    for name in ("test.csv", "train.csv"):
        with open(DATA / name, newline="") as f:
            rows += [(r["text"], r["category"]) for r in csv.DictReader(f)]
    others = sorted({c for _, c in rows} - {FEE})
    chosen = {FEE, *others[:: len(others) // (n_intents - 1)][: n_intents - 1]}
    picked = [r for r in rows if r[1] in chosen]
    order = np.random.default_rng(0).permutation(len(picked))[:n]
    return [picked[i][0] for i in order], [picked[i][1] for i in order]


@pytest.mark.slow
def test_banking77_online_clusters_match_intents_and_fees_are_pricing():
    from sklearn.metrics import normalized_mutual_info_score

    os.environ["HF_HUB_OFFLINE"] = "1"
    from pipelines.embedding import SentenceTransformerEmbedder

    texts, gold = banking_sample()
    assert len(set(gold)) == 20 and len(texts) == 1500
    embedder = SentenceTransformerEmbedder()
    x = embedder.encode(texts)
    cfg = ClusterConfig()
    policy = CategoryPolicy.model_validate(
        yaml.safe_load((ROOT / "alerts" / "categories.yaml").read_text()))
    c = OnlineClusterer(cfg, embedder.dim, CategoryIndex.build(policy, embedder,
                                                               cfg.category_threshold))
    at = times(len(texts))
    out = c.bootstrap(x[:500], texts[:500], at[:500])
    out += [c.assign(x[i], texts[i], at[i]) for i in range(500, len(texts))]
    labels = [a.cluster_id or "pool" for a in out]
    score = normalized_mutual_info_score(gold, labels)
    assert score >= 0.75
    fee_cluster, _ = Counter(lab for lab, g in zip(labels, gold, strict=True)
                             if g == FEE).most_common(1)[0]
    assert c.clusters[fee_cluster].category == "pricing"
