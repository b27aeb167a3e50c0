"""Clustering benchmark: the online clusterer against batch KMeans with the true number of intents.

The test splits of BANKING77, CLINC150 (in-scope) and HWU64 are replayed in a random order (fixed
seed) through :class:`pipelines.clustering.OnlineClusterer` exactly as the engine drives it: the
number of clusters is not given, the first ``bootstrap_size`` queries are fitted, every later
query is assigned when it arrives. Scores (NMI, ARI, Hungarian-matched accuracy, in %) are taken
twice: *as assigned* (the cluster each query got when it arrived, what an incident sees) and
*final* (each query's cluster at the end, after pool promotions and refits moved it). Queries
given no cluster (pooled, and attached to no cluster) count as one extra cluster. Batch KMeans (k = true, n_init=10,
seed 0) runs on the same embeddings.

A skewed stream checks the product constraint: on the demo stream (30 BANKING77 intents, skewed
popularity, ``exchange_rate`` about 13 % of traffic) the share of the most popular intent's
queries that land in its largest cluster must stay high, or one intent's incidents split.

    python -m benchmarks.bench_clustering           # full run, writes benchmarks/results/clustering.md
    python -m benchmarks.bench_clustering --quick   # a sample of each set, for the smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import pdist
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_score

from benchmarks.common import write_fragment
from benchmarks.embedding_cache import DiskCachedEmbedder
from pipelines.clustering import OnlineClusterer, cut, unit
from pipelines.config import ClusterConfig
from pipelines.family import IntentFamilies
from pipelines.scenario import ScenarioConfig, generate
from services.datasets import load_banking77, load_intents

NAME = "clustering"
TITLE = "Intent clustering (issue #3, item 2)"
SEED = 0
POOL = -1  # label of queries waiting in the unassigned pool
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TARGET_GAP = 2.0  # NMI points behind batch KMeans with the true k
SEED_SIZES = (1000, 2000)  # seed-file sizes (training queries) of the seeded rows
POPULAR_INTENT = "exchange_rate"


@dataclass(frozen=True)
class Scores:
    nmi: float
    ari: float
    acc: float

    def row(self) -> str:
        return f"{self.nmi:.1f} | {self.ari:.1f} | {self.acc:.1f}"


def accuracy(gold: Sequence[int], pred: Sequence[int]) -> float:
    """Share of queries whose cluster is matched (Hungarian, one cluster per intent) to their intent."""
    g = np.unique(np.asarray(gold), return_inverse=True)[1]
    p = np.unique(np.asarray(pred), return_inverse=True)[1]
    table = np.zeros((p.max() + 1, g.max() + 1), dtype=np.int64)
    np.add.at(table, (p, g), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum()) / len(g)


def scores(gold: Sequence[int], pred: Sequence[int]) -> Scores:
    return Scores(100 * normalized_mutual_info_score(gold, pred), 100 * adjusted_rand_score(gold, pred),
                  100 * accuracy(gold, pred))


def clustered_nmi(gold: Sequence[int], pred: Sequence[int]) -> float:
    """NMI over the queries that got a cluster (the pool left out)."""
    keep = [i for i, p in enumerate(pred) if p != POOL]
    return 100 * normalized_mutual_info_score([gold[i] for i in keep], [pred[i] for i in keep])


@dataclass
class Replay:
    assigned: list[int]  # cluster index per query when it arrived (POOL if pooled)
    final: list[int]  # cluster index per query at the end of the stream
    families_assigned: list[int]  # intent family index per query when it arrived (POOL if pooled)
    families: int
    clusters: int
    pool_share_assigned: float
    pool_share_final: float
    seconds: float


def _label(cid: str | None) -> int:
    return POOL if cid is None or cid == "-" else int(cid[1:])


def replay(vectors: np.ndarray, queries: Sequence[str], config: ClusterConfig) -> Replay:
    """Run the stream through the clusterer as the engine does (bootstrap, then one by one)."""
    start = time.perf_counter()
    c = OnlineClusterer(config, vectors.shape[1])
    n0 = min(config.bootstrap_size, len(vectors))
    at = [T0 + timedelta(seconds=i) for i in range(len(vectors))]
    out = c.bootstrap(vectors[:n0], queries[:n0], at[:n0])
    # Intent families kept as the pipeline keeps them (pipelines.engine): synced when clusters
    # are created, re-linked every family_refresh_every queries.
    fam = IntentFamilies(config.family_threshold)
    fam.sync(*c.centroid_rows())
    fams = [_label(fam.family_of(a.cluster_id)) if a.cluster_id else POOL for a in out]
    # The benchmark reads each query's attribution at the end: the clusterer keeps it on the item
    # it remembers (an item that left its recent window is never moved again, so its value holds).
    items = list(c._recent)[-n0:]
    for i in range(n0, len(vectors)):
        a = c.assign(vectors[i], queries[i], at[i])
        if (i - n0 + 1) % config.family_refresh_every == 0:
            fam.relink(*c.centroid_rows())
        elif a.created:
            fam.sync(*c.centroid_rows())
        out.append(a)
        fams.append(_label(fam.family_of(a.cluster_id)) if a.cluster_id else POOL)
        items.append(c._recent[-1])
    assigned = [_label(a.cluster_id) for a in out]
    # A query still pooled at the end counts under the cluster it was reported under (attached).
    final = [_label(it.attached if it.cluster in (None, "-") else it.cluster) for it in items]
    return Replay(assigned, final, fams, len(fam.families), len(c.clusters), assigned.count(POOL) / len(assigned),
                  final.count(POOL) / len(final), time.perf_counter() - start)


def seeded(vectors: np.ndarray, queries: Sequence[str], seed: Sequence[str], seed_vectors: np.ndarray,
           config: ClusterConfig) -> tuple[list[str], int]:
    """The stream through a clusterer fitted on ``seed`` first, as ``Pipeline.seed`` does (a seed file
    of past queries, every one stamped with the first answer's time): the stream's assignments and
    the number of clusters."""
    c = OnlineClusterer(config, vectors.shape[1])
    c.bootstrap(seed_vectors, seed, [T0] * len(seed))
    out = [_label(c.assign(vectors[i], queries[i], T0 + timedelta(seconds=i + 1)).cluster_id)
           for i in range(len(vectors))]
    return out, len(c.clusters)


def kmeans(vectors: np.ndarray, k: int) -> list[int]:
    return KMeans(n_clusters=k, n_init=10, random_state=SEED).fit_predict(vectors).tolist()


def shuffled(by_intent: dict[str, list[str]], limit: int | None) -> tuple[list[str], list[int]]:
    pairs = [(q, i) for i, (_, qs) in enumerate(sorted(by_intent.items())) for q in qs]
    order = np.random.default_rng(SEED).permutation(len(pairs))
    pairs = [pairs[j] for j in order][:limit]
    return [q for q, _ in pairs], [i for _, i in pairs]


def demo_stream(limit: int | None) -> tuple[list[str], list[str]]:
    """The demo's skewed stream (queries in event-time order) and each query's gold intent."""
    train = load_banking77("train")
    intent_of = {q: i for i, qs in train.items() for q in qs}
    records = generate(train, ScenarioConfig()).records[:limit]
    return [r["query"] for r in records], [intent_of[r["query"]] for r in records]


def popular_share(labels: Sequence[int], intents: Sequence[str], intent: str) -> tuple[float, int]:
    """Share of ``intent``'s queries in its largest (non-pool) cluster, and how many clusters hold
    at least 5 % of them."""
    mine = Counter(lab for lab, i in zip(labels, intents, strict=True) if i == intent)
    total = sum(mine.values())
    clustered = {k: v for k, v in mine.items() if k != POOL}
    if not clustered:
        return 0.0, 0
    return max(clustered.values()) / total, sum(v >= 0.05 * total for v in clustered.values())


def run(quick: bool) -> str:
    embedder = DiskCachedEmbedder(NAME)
    limit = 600 if quick else None
    config = ClusterConfig()
    lines = [
        "Online clusterer with its defaults (`ClusterConfig()`: average linkage, cosine cut "
        f"{config.distance_threshold}, bootstrap on the first {config.bootstrap_size} queries, assign "
        f"threshold {config.assign_threshold}), number of clusters not given. NMI / ARI / ACC in %, "
        "ACC Hungarian-matched. Pool = share of queries given no cluster (pooled and close to no cluster, "
        "scored as one cluster; a pooled query attached to its nearest cluster counts there). "
        "KMeans: true k, n_init=10, seed 0, same all-MiniLM-L6-v2 embeddings. Stream "
        f"order: a permutation with seed {SEED}." + (" **Quick run: first 600 queries only.**" if quick else ""),
        "",
        "| data set | queries | intents | method | NMI | ARI | ACC | clusters | pool | NMI of the clustered queries |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    seeded_rows: list[str] = []
    seeded_gaps: dict[int, list[tuple[str, float]]] = {}
    for name in ("BANKING77", "CLINC150", "HWU64"):
        queries, gold = shuffled(load_intents(name, "test"), limit)
        vectors = embedder.encode(queries).astype(np.float64)
        embedder.save()
        k = len(set(gold))
        r = replay(vectors, queries, config)
        km = scores(gold, kmeans(vectors, k))
        sizes = SEED_SIZES if not quick else (200,)
        train = [q for _, qs in sorted(load_intents(name, "train").items()) for q in qs]
        # one draw: each seed size is a prefix of the largest
        seed = [train[j] for j in np.random.default_rng(SEED + 1).permutation(len(train))[:max(sizes)]]
        seed_vectors = embedder.encode(seed).astype(np.float64)
        embedder.save()
        for n in sizes:
            out, clusters = seeded(vectors, queries, seed[:n], seed_vectors[:n], config)
            nmi = scores(gold, out).nmi
            seeded_rows.append(f"| {name} | {n} | {nmi:.1f} | {clusters} | {km.nmi:.1f} | {km.nmi - nmi:.1f} |")
            seeded_gaps.setdefault(n, []).append((name, km.nmi - nmi))
        as_assigned, final = scores(gold, r.assigned), scores(gold, r.final)
        lines += [
            f"| {name} | {len(queries)} | {k} | online, as assigned | {as_assigned.row()} | {r.clusters} | "
            f"{100 * r.pool_share_assigned:.1f}% | {clustered_nmi(gold, r.assigned):.1f} |",
            f"| {name} | {len(queries)} | {k} | online, final | {final.row()} | {r.clusters} | "
            f"{100 * r.pool_share_final:.1f}% | {clustered_nmi(gold, r.final):.1f} |",
            f"| {name} | {len(queries)} | {k} | online families, as assigned | "
            f"{scores(gold, r.families_assigned).row()} "
            f"| {r.families} | {100 * r.pool_share_assigned:.1f}% | {clustered_nmi(gold, r.families_assigned):.1f} |",
            f"| {name} | {len(queries)} | {k} | batch KMeans, k={k} | {km.row()} | {k} | 0% | {km.nmi:.1f} |",
        ]
        gap = km.nmi - as_assigned.nmi
        verdicts.append((name, gap, km.nmi - final.nmi))
        print(f"{name}: online {as_assigned} final {final} kmeans {km} clusters {r.clusters} "
              f"({r.seconds:.1f} s)", file=sys.stderr)

    queries, intents = demo_stream(1500 if quick else None)
    vectors = embedder.encode(queries).astype(np.float64)
    embedder.save()
    r = replay(vectors, queries, config)
    share_a, split_a = popular_share(r.assigned, intents, POPULAR_INTENT)
    share_f, split_f = popular_share(r.final, intents, POPULAR_INTENT)
    codes = {i: n for n, i in enumerate(sorted(set(intents)))}
    gold = [codes[i] for i in intents]
    popular = Counter(intents)[POPULAR_INTENT] / len(intents)
    demo_a, demo_f = scores(gold, r.assigned), scores(gold, r.final)
    lines += [
        "",
        f"Skewed stream: the demo stream (`generate(load_banking77(\"train\"), ScenarioConfig())`, "
        f"{len(queries)} queries, {len(codes)} intents, `{POPULAR_INTENT}` {100 * popular:.1f}% of "
        "traffic) in event-time order. *Popular intent kept whole* = share of its queries in its "
        "largest cluster (clusters holding at least 5% of them in brackets).",
        "",
        "| stream | view | NMI | ARI | ACC | clusters | pool | popular intent kept whole |",
        "|---|---|---|---|---|---|---|---|",
        f"| demo (skewed) | as assigned | {demo_a.row()} | {r.clusters} | {100 * r.pool_share_assigned:.1f}% | "
        f"{100 * share_a:.1f}% ({split_a}) |",
        f"| demo (skewed) | final | {demo_f.row()} | {r.clusters} | {100 * r.pool_share_final:.1f}% | "
        f"{100 * share_f:.1f}% ({split_f}) |",
    ]
    lines += ["", "Seeded: the same test-split streams, the clusterer first fitted on a seed file of past "
              "queries (`--seed-file`, `Pipeline.seed`): that many of the set's *training* queries, drawn "
              f"with seed {SEED + 1}, none of them scored; NMI of the stream's queries as assigned, against "
              "KMeans with the true k on the same queries. A deployment with past traffic starts here; the "
              "rows above are a cold start (the first queries of the stream are the bootstrap).", "",
              "| data set | seed queries | NMI, as assigned | clusters | KMeans, true k | behind KMeans |",
              "|---|---|---|---|---|---|", *seeded_rows]
    if not quick:
        lines += ["", *ceilings(embedder, config), "", *variants(embedder)]
    lines += ["", "Targets:", ""]
    for name, gap, gap_final in verdicts:
        met = "met" if gap <= TARGET_GAP else "**not met**"
        lines.append(f"- {name}: online NMI (as assigned) within {TARGET_GAP:.0f} points of KMeans with the "
                     f"true k: {met} ({gap:.1f} points behind as assigned, {gap_final:.1f} final).")
    for n, gaps in seeded_gaps.items():
        behind = [f"{name} {gap:.1f}" for name, gap in gaps]
        met = "met" if all(gap <= TARGET_GAP for _, gap in gaps) else "**not met**"
        lines.append(f"- Seeded with {n} past queries (a seed file), the same target: {met} (points behind: "
                     f"{', '.join(behind)}).")
    kept = "met" if share_a >= 0.9 else "**not met**"
    lines.append(f"- Product constraint, popular intent not split (at least 90% in one cluster): {kept} "
                 f"({100 * share_a:.1f}% as assigned).")
    return "\n".join(lines) + "\n\n" + NOTES


AVERAGE_CUTS = (0.3, 0.4, 0.5, 0.6, 0.7)
WARD_CUTS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5)
SILHOUETTE_KS = (25, 50, 75, 100, 150, 200, 300)  # a fixed grid: k is chosen without the gold labels


def _nmi(gold: Sequence[int], labels: Sequence[int]) -> float:
    return 100 * normalized_mutual_info_score(gold, labels)


def _pooled(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Groups smaller than ``min_size`` merged into one pool group, as the online clusterer scores."""
    sizes = Counter(labels.tolist())
    return np.array([lab if sizes[lab] >= min_size else POOL for lab in labels.tolist()])


def ceilings(embedder: DiskCachedEmbedder, config: ClusterConfig) -> list[str]:
    """What batch clustering of ALL the queries reaches, with and without being told k."""
    out = ["Ceiling: batch clustering of all the queries at once (the online clusterer sees them one at a "
           "time). *Label-free* rows choose everything without the gold intents: the default cosine cut "
           f"{config.distance_threshold}, the clusterer's own ward cut for n queries (1.5 * (n / 400) ** 0.25) "
           "and KMeans with the k of best cosine silhouette over k in "
           f"{{{', '.join(map(str, SILHOUETTE_KS))}}}. *Hindsight* rows pick the best cut using the gold "
           "labels (a reference, not reachable). Average linkage: singletons are their own clusters; in "
           "brackets, scored as the online clusterer is, groups under min_cluster_size "
           f"({config.min_cluster_size}) counted as one pool cluster.", "",
           "| data set | method | chosen without labels | NMI | clusters |", "|---|---|---|---|---|"]
    for name in ("BANKING77", "CLINC150", "HWU64"):
        queries, gold = shuffled(load_intents(name, "test"), None)
        x = unit(embedder.encode(queries).astype(np.float64))
        k = len(set(gold))
        avg = linkage(np.clip(pdist(x, "cosine"), 0, 2), "average")
        by_cut = {t: fcluster(avg, t, "distance") for t in AVERAGE_CUTS}
        t0 = config.distance_threshold
        lab = by_cut[t0] if t0 in by_cut else fcluster(avg, t0, "distance")
        out.append(f"| {name} | average linkage, cosine cut {t0} | yes | {_nmi(gold, lab):.1f} "
                   f"({_nmi(gold, _pooled(lab, config.min_cluster_size)):.1f}) | {lab.max()} |")
        best = max(AVERAGE_CUTS, key=lambda t: _nmi(gold, by_cut[t]))
        out.append(f"| {name} | average linkage, best cut in hindsight ({best}) | no | "
                   f"{_nmi(gold, by_cut[best]):.1f} ({_nmi(gold, _pooled(by_cut[best], config.min_cluster_size)):.1f}) "
                   f"| {by_cut[best].max()} |")
        ward = linkage(x, "ward")
        t1 = cut(len(x), config.model_copy(update={"linkage": "ward", "distance_threshold": 1.5}))
        lab = fcluster(ward, t1, "distance")
        out.append(f"| {name} | ward, scaled cut {t1:.2f} | yes | {_nmi(gold, lab):.1f} | {lab.max()} |")
        wards = {t: fcluster(ward, t, "distance") for t in WARD_CUTS}
        best = max(WARD_CUTS, key=lambda t: _nmi(gold, wards[t]))
        out.append(f"| {name} | ward, best cut in hindsight ({best}) | no | {_nmi(gold, wards[best]):.1f} "
                   f"| {wards[best].max()} |")
        fits = {kk: KMeans(n_clusters=kk, n_init=3, random_state=SEED).fit_predict(x) for kk in SILHOUETTE_KS}
        sil = {kk: silhouette_score(x, lab, metric="cosine") for kk, lab in fits.items()}
        kk = max(SILHOUETTE_KS, key=lambda j: sil[j])
        out.append(f"| {name} | KMeans, k={kk} by silhouette | yes | {_nmi(gold, fits[kk]):.1f} | {kk} |")
        out.append(f"| {name} | KMeans, true k={k} (the target's reference) | no | "
                   f"{_nmi(gold, kmeans(x, k)):.1f} | {k} |")
        print(f"ceiling {name} done", file=sys.stderr)
    return out


# What was tried (each a change from the defaults), measured in the full run.
VARIANTS: tuple[tuple[str, dict], ...] = (
    ("before issue #3 (min_cluster_size 3, pool_recluster_size 60; no attach, no pair trigger)",
     {"min_cluster_size": 3, "pool_recluster_size": 60, "pool_attach_threshold": 1.0, "pool_pair_threshold": 1.0}),
    ("no attach, no pair trigger (issue #3 first round, with the pool sweep)",
     {"pool_attach_threshold": 1.0, "pool_pair_threshold": 1.0}),
    ("no pair trigger (pool_pair_threshold 1.0)", {"pool_pair_threshold": 1.0}),
    ("pool_attach_threshold 0.0 (every pooled query attached)", {"pool_attach_threshold": 0.0}),
    ("pool_attach_threshold 0.4", {"pool_attach_threshold": 0.4}),
    ("defaults", {}),
    ("assign_threshold 0.5", {"assign_threshold": 0.5}),
    ("distance_threshold 0.45", {"distance_threshold": 0.45}),
    ("refit splits: refit_split_size 10", {"refit_split_size": 10}),
    ("bootstrap_size 1000", {"bootstrap_size": 1000}),
    ("distance_threshold 0.4", {"distance_threshold": 0.4}),
    ("assign_threshold 0.35", {"assign_threshold": 0.35}),
    ("ward linkage, cut 1.5", {"linkage": "ward", "distance_threshold": 1.5}),
)


def variants(embedder: DiskCachedEmbedder) -> list[str]:
    sets = []
    for name in ("BANKING77", "CLINC150", "HWU64"):
        queries, gold = shuffled(load_intents(name, "test"), None)
        sets.append((queries, gold, embedder.encode(queries).astype(np.float64)))
    queries, intents = demo_stream(None)
    demo = embedder.encode(queries).astype(np.float64)
    out = ["What was tried: online NMI as assigned (final in brackets), number of clusters, and the "
           "demo's popular intent kept whole, for each change from the defaults.", "",
           "| variant | BANKING77 | CLINC150 | HWU64 | demo: popular intent kept whole |", "|---|---|---|---|---|"]
    for label, change in VARIANTS:
        config = ClusterConfig().model_copy(update=change)
        cells = []
        for q, gold, vectors in sets:
            r = replay(vectors, q, config)
            cells.append(f"{scores(gold, r.assigned).nmi:.1f} ({scores(gold, r.final).nmi:.1f}), {r.clusters} clusters")
        r = replay(demo, queries, config)
        share, parts = popular_share(r.assigned, intents, POPULAR_INTENT)
        out.append(f"| {label} | {' | '.join(cells)} | {100 * share:.1f}% ({parts}) |")
        print(f"variant {label} done", file=sys.stderr)
    return out


NOTES = """What changed in issue #3 (second round), each measured on all three sets and the demo stream
(rows above): a pooled query is reported under its nearest cluster when its cosine is at least
`pool_attach_threshold` (0.3) instead of counting in one mixed "pool" group (it stays pooled, so it
can still seed a new intent, and moves no centroid); a query entering the pool next to a pooled one
(cosine `pool_pair_threshold` 0.5) re-clusters the pool at once; after a pool promotion or a refit,
pooled queries now `assign_threshold` close to a cluster join it; a refit no longer replaces a
matched cluster's centroid with its group's mean (`refit_moves_centroids`, off): that jump left part
of an intent behind, which then formed a second id (CLINC150: 217 -> 179 clusters).

Also tried and dropped (custom variants of the clusterer, measured with the attach, pair and sweep
changes but before `refit_moves_centroids`; NMI as assigned / final): merging clusters whose
centroids converge (cosine >= 0.8 at each refit, the younger id merged into the older):
BANKING77 71.6 / 74.8 (from 73.2 / 76.5), CLINC150 and HWU64 unchanged: neighbouring BANKING77
intents are the ones that converge; centroid updates only from members at cosine >= 0.55-0.7
("keep clusters tight"): +-0.3 everywhere; a pool trigger at cosine 0.6 / 0.7: less than 0.5.

What limits it (see the ceiling table): batch clustering is not the problem, nor is not being told
k: with the cut chosen without labels, ward on all the queries matches or beats KMeans with the
true k on all three sets, and KMeans with k chosen by silhouette is within about 1 point. The loss
is being online: a query is scored when it arrives, against clusters fitted on the queries seen so
far (the first fit sees 400 queries, 5 per BANKING77 intent and 2.7 per CLINC150 intent). NMI as
assigned over the last third of BANKING77 is within about 4 points of KMeans on the same queries,
but neighbouring BANKING77 intents merged early stay merged (a query at cosine 0.45 to a merged
centroid joins it), and a merge can only be undone by splitting an id, which splits its incidents.
A bigger first fit closes much of the rest (`bootstrap_size` 600: 75.9 / 86.6 / 79.1 as assigned)
at the cost of scoring nothing until then; finer cuts help BANKING77 and cost HWU64 and the demo's
popular intent. See `docs/clustering-benchmark.md`.
"""


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a sample of each set (smoke test)")
    args = parser.parse_args(argv)
    body = run(args.quick)
    command = "python -m benchmarks.bench_clustering" + (" --quick" if args.quick else "")
    path = write_fragment(NAME, TITLE, command, body, quick=args.quick)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
