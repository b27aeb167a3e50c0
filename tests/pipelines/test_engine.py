from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from alerts.categories import DEFAULT_CATEGORIES, load_policy
from pipelines.clustering import OnlineClusterer
from pipelines.config import BaselineConfig, ClusterConfig, DetectConfig
from pipelines.embedding import CachedEmbedder, HashingEmbedder
from pipelines.engine import UNASSIGNED, Pipeline
from pipelines.faithfulness import FaithfulnessScorer
from pipelines.interaction import Context, Interaction
from pipelines.labels import CategoryIndex
from pipelines.scenario import ScenarioConfig, generate
from services.datasets import load_banking77

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def pipeline(bootstrap=20) -> Pipeline:
    emb = CachedEmbedder(HashingEmbedder())
    policy = load_policy(DEFAULT_CATEGORIES)
    cfg = ClusterConfig(bootstrap_size=bootstrap)
    return Pipeline(embedder=emb, scorer=FaithfulnessScorer(emb), policy=policy,
                    clusterer=OnlineClusterer(cfg, emb.dim, CategoryIndex.build(policy, emb, 0.5)),
                    cluster_config=cfg, baseline_config=BaselineConfig(), detect_config=DetectConfig())


def inter(k: int, **kw) -> Interaction:
    base = dict(interaction_id=f"i{k}", session_id=f"s{k}", timestamp=T0 + timedelta(minutes=k),
                query=["How much does a transfer cost?", "My card has not arrived yet"][k % 2],
                response="Transfers cost £1.", confidence=0.9,
                contexts=(Context(doc_id="fees", doc_version="v1", text="Transfers cost £1."),))
    base.update(kw)
    return Interaction(**base)


def test_waits_for_the_bootstrap_then_scores_everything_in_order():
    p = pipeline(bootstrap=20)
    assert p.process([inter(k) for k in range(10)]).scored == []
    out = p.process([inter(k) for k in range(10, 25)])
    assert [s.interaction_id for s in out.scored] == [f"i{k}" for k in range(25)]
    assert out.clusters and all(s.cluster_id for s in out.scored)


def test_flush_fits_on_a_short_stream():
    p = pipeline(bootstrap=100)
    assert p.process([inter(k) for k in range(8)]).scored == []
    out = p.flush()
    assert len(out.scored) == 8
    assert p.flush().scored == []


def test_duplicates_are_counted_once_even_across_batches():
    p = pipeline(bootstrap=10)
    out = p.process([inter(k) for k in range(11)] + [inter(2)])
    out2 = p.process([inter(3), inter(11)])
    assert out.duplicates == 1 and out2.duplicates == 1
    assert [s.interaction_id for s in out2.scored] == ["i11"]


@pytest.mark.parametrize("kw,source,value", [
    ({"faithfulness": 0.42}, "producer", 0.42),
    ({"response": None}, "none", None),
    ({"contexts": ()}, "none", None),
    ({}, "computed", None),
])
def test_faithfulness_source(kw, source, value):
    p = pipeline(bootstrap=10)
    out = p.process([inter(0), inter(1, **kw), *(inter(k) for k in range(2, 10))])
    s = out.scored[1]
    assert s.faithfulness_source == source
    if value is not None:
        assert s.faithfulness == value
    if source == "none":
        assert s.faithfulness is None and not s.below_baseline


def test_far_away_query_goes_to_the_unassigned_pool():
    p = pipeline(bootstrap=10)
    p.process([inter(k) for k in range(10)])
    out = p.process([inter(11, query="zzqx wvvt ppqq")])
    assert out.scored[0].cluster_id == UNASSIGNED


def test_same_incidents_whatever_the_batch_size():
    """With a deterministic embedder the pipeline's results do not depend on batching."""
    scenario = generate(load_banking77("train"), ScenarioConfig(days=3, per_day=600, intents=10))
    from pipelines.interaction import parse_record

    items = [parse_record(r) for r in scenario.records]

    def run(batch):
        p = pipeline(bootstrap=200)
        scored, events = [], []
        for k in range(0, len(items), batch):
            out = p.process(items[k:k + batch])
            scored += out.scored
            events += out.events
        out = p.flush()
        return [s.to_json_dict() for s in scored + out.scored], [e.to_json_dict() for e in events + out.events]

    a, b = run(1), run(97)
    assert a == b


def test_seed_fits_the_clusters_before_the_stream():
    p = pipeline(bootstrap=400)
    p.seed(["How much does a transfer cost?", "How much does a transfer cost today?",
            "How much does a bank transfer cost?", "My card has not arrived yet",
            "My card has not arrived yet, why?", "My new card has not arrived yet"])
    out = p.process([inter(0)])
    assert [s.interaction_id for s in out.scored] == ["i0"]   # nothing waits for a bootstrap
    assert out.clusters


def test_seed_refuses_too_few_queries_or_a_running_pipeline():
    from pipelines.errors import FaithwatchError

    with pytest.raises(FaithwatchError, match="at least"):
        pipeline().seed(["one", "one", " one "])
    p = pipeline(bootstrap=10)
    p.process([inter(0)])
    with pytest.raises(FaithwatchError, match="before"):
        p.seed(["a b c"] * 10)


def test_cluster_and_family_descriptions_equal_a_description_from_scratch():
    """The pipeline describes again only what changed (clusters placed or moved, families whose
    members, label, category or aliases changed): after every batch, what it reports equals
    describing every cluster and family from the clusterer's descriptions and the families."""
    from pipelines.incident import strictest
    from pipelines.interaction import parse_record

    emb = CachedEmbedder(HashingEmbedder())
    policy = load_policy(DEFAULT_CATEGORIES)
    cfg = ClusterConfig(bootstrap_size=150, family_refresh_every=250, family_threshold=0.8)
    p = Pipeline(embedder=emb, scorer=FaithfulnessScorer(emb), policy=policy,
                 clusterer=OnlineClusterer(cfg, emb.dim, CategoryIndex.build(policy, emb, 0.5)),
                 cluster_config=cfg, baseline_config=BaselineConfig(), detect_config=DetectConfig())
    scenario = generate(load_banking77("train"), ScenarioConfig(days=3, per_day=500, intents=25))
    items = [parse_record(r) for r in scenario.records]
    versions, multi = set(), 0
    # Placing a new cluster keeps the centroids' norms between placements and computes again only
    # those of clusters the pipeline reports moved: each placement's norms equal norms from scratch.
    kept, placements = p.intent_families._row_norms, []

    def from_scratch(ids, x):
        norms = kept(ids, x)
        assert np.array_equal(norms, np.linalg.norm(x, axis=1))  # bit for bit
        placements.append(len(ids))
        return norms

    p.intent_families._row_norms = from_scratch
    for k in range(0, len(items), 60):
        p.process(items[k:k + 60])
        raw, fam = p._raw, p.intent_families  # the clusterer's descriptions as of the last refresh
        versions.add(fam.version)
        families = {}
        for fid, members in fam.families.items():
            infos = [raw[c] for c in members if c in raw]
            if infos:
                families[fid] = (max(infos, key=lambda i: i.size).label,
                                 strictest([policy.get(i.category) for i in infos]).name,
                                 members, fam.aliases(fid), sum(i.size for i in infos))
        assert {f.family_id: (f.label, f.category, f.clusters, f.aliases, f.size)
                for f in p.families.values()} == families
        assert list(p.families) == sorted(families, key=lambda f: (len(f), f))
        for cid, info in p.clusters.items():
            fid = fam.family_of(cid)
            assert info.model_copy(update={"family_id": None, "family_label": None, "family_category": None,
                                           "family_aliases": ()}) == \
                raw[cid].model_copy(update={"family_id": None, "family_label": None, "family_category": None,
                                            "family_aliases": ()})
            assert (info.family_id, info.family_label, info.family_category, info.family_aliases) == \
                (fid, families[fid][0], families[fid][1], fam.aliases(fid))
        multi = max(multi, sum(len(m) > 1 for m in fam.families.values()))
    assert len(p.clusters) > 20 and multi > 3 and len(versions) > 10  # families moved many times
    assert len(placements) > 10


def test_scored_rows_equal_validated_rows():
    """Scored rows are built without validating again (pipelines.records.trusted): each equals,
    and dumps exactly as, the row validation makes of the same values."""
    from pipelines.interaction import Action
    from pipelines.records import ScoredInteraction
    p = pipeline(bootstrap=10)
    out = p.process([inter(k, metadata={"k": k}, faithfulness=[None, 0.9, 1, 0.1234567][k % 4],
                           action=Action(name="refund", reversible=k % 2 == 0) if k % 3 else None,
                           **({"contexts": ()} if k % 5 == 0 else {})) for k in range(30)])
    assert len(out.scored) == 30
    for row in out.scored:
        again = ScoredInteraction.model_validate(row.model_dump())
        assert again == row and again.model_dump_json() == row.model_dump_json()
        assert list(row.__dict__) == list(ScoredInteraction.model_fields)
