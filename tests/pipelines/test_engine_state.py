"""Pipeline.to_state / from_state: a restored pipeline continues exactly as the uninterrupted one."""

from __future__ import annotations

import copy
import json

import pytest

from alerts.categories import DEFAULT_CATEGORIES, load_policy
from pipelines.clustering import OnlineClusterer
from pipelines.config import BaselineConfig, ClusterConfig, DetectConfig
from pipelines.embedding import CachedEmbedder, HashingEmbedder
from pipelines.engine import Output, Pipeline
from pipelines.errors import StateError
from pipelines.faithfulness import FaithfulnessScorer
from pipelines.interaction import Interaction
from pipelines.labels import CategoryIndex
from pipelines.scenario import IncidentSpec, ScenarioConfig, generate
from services.datasets import load_banking77

EMB = CachedEmbedder(HashingEmbedder())
POLICY = load_policy(DEFAULT_CATEGORIES)
CATEGORIES = CategoryIndex.build(POLICY, EMB, 0.5)
CLUSTER = ClusterConfig(bootstrap_size=150, refit_every=200)


def build(cluster: ClusterConfig = CLUSTER, detect: DetectConfig | None = None) -> Pipeline:
    return Pipeline(embedder=EMB, scorer=FaithfulnessScorer(EMB), policy=POLICY,
                    clusterer=OnlineClusterer(cluster, EMB.dim, CATEGORIES), cluster_config=cluster,
                    baseline_config=BaselineConfig(), detect_config=detect or DetectConfig())


def restore(state: dict, cluster: ClusterConfig = CLUSTER, detect: DetectConfig | None = None) -> Pipeline:
    return Pipeline.from_state(json.loads(json.dumps(state)), embedder=EMB, scorer=FaithfulnessScorer(EMB),
                               policy=POLICY, categories=CATEGORIES, cluster_config=cluster,
                               baseline_config=BaselineConfig(), detect_config=detect or DetectConfig())


@pytest.fixture(scope="module")
def stream():
    cfg = ScenarioConfig(seed=4, days=2.0, per_day=700, intents=12,
                         incident=IncidentSpec(onset_day=1.2, sessions=10))
    return [Interaction.model_validate(r) for r in generate(load_banking77("train"), cfg).records]


def as_dicts(out: Output) -> tuple[list, list, list]:
    return ([s.to_json_dict() for s in out.scored], [e.to_json_dict() for e in out.events],
            [c.to_json_dict() for c in out.clusters])


def run(p: Pipeline, records, batch: int = 64) -> Output:
    out = Output()
    for k in range(0, len(records), batch):
        out.extend(p.process(records[k:k + batch]))
    return out.extend(p.flush())


@pytest.fixture(scope="module")
def uninterrupted(stream):
    p = build()
    out = run(p, stream)
    assert out.events, "the stream must contain an incident for the restore tests to mean anything"
    return as_dicts(out), p.to_state()


def run_no_flush(p: Pipeline, records, batch: int = 64) -> Output:
    out = Output()
    for k in range(0, len(records), batch):
        out.extend(p.process(records[k:k + batch]))
    return out


@pytest.mark.parametrize("cut", [60, 149, 700, 1000])  # inside the bootstrap, just before it, mid-stream, mid-incident
def test_restore_anywhere_continues_exactly(stream, uninterrupted, cut):
    first = build()
    head = run_no_flush(first, stream[:cut])
    second = restore(first.to_state())
    tail = run(second, stream[cut:])
    assert as_dicts(head.extend(tail)) == uninterrupted[0]
    assert second.to_state() == uninterrupted[1]


def test_state_is_json_safe_and_round_trips(stream):
    p = build()
    run_no_flush(p, stream[:500])
    state = p.to_state()
    assert json.loads(json.dumps(state)) == state
    assert restore(state).to_state() == state


def test_duplicates_are_still_recognised_after_a_restore(stream):
    p = build()
    run_no_flush(p, stream[:300])
    q = restore(p.to_state())
    out = q.process(stream[250:320])
    assert out.duplicates == 50
    assert [s.interaction_id for s in out.scored] == [r.interaction_id for r in stream[300:320]]


def test_a_pending_seed_survives(stream):
    p = build()
    p.seed([r.query for r in stream[:40]])
    q = restore(p.to_state())
    a, b = p.process(stream[:10]), q.process(stream[:10])
    assert as_dicts(a) == as_dicts(b) and a.scored


@pytest.mark.parametrize("other", [
    dict(cluster=ClusterConfig(bootstrap_size=150, refit_every=201)),
    dict(detect=DetectConfig(min_sessions=4)),
])
def test_state_of_another_configuration_is_refused(stream, other):
    p = build()
    run_no_flush(p, stream[:300])
    with pytest.raises(StateError):
        restore(p.to_state(), **other)


def test_state_of_another_embedding_model_is_refused(stream):
    p = build()
    run_no_flush(p, stream[:200])
    state = copy.deepcopy(p.to_state())
    other = CachedEmbedder(HashingEmbedder(dim=EMB.dim * 2))
    with pytest.raises(StateError):
        Pipeline.from_state(state, embedder=other, scorer=FaithfulnessScorer(other), policy=POLICY,
                            categories=CATEGORIES, cluster_config=CLUSTER, baseline_config=BaselineConfig(),
                            detect_config=DetectConfig())
