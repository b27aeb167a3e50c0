"""The prepare/sequence split: prepared elsewhere (other batches, any order), sequenced in event
time order, the pipeline gives exactly what ``process`` gives."""

from __future__ import annotations

import json
import random

from alerts.categories import DEFAULT_CATEGORIES, load_policy
from pipelines.clustering import OnlineClusterer
from pipelines.config import BaselineConfig, ClusterConfig, DetectConfig, FaithfulnessConfig
from pipelines.embedding import HashingEmbedder
from pipelines.engine import Output, Pipeline
from pipelines.faithfulness import FaithfulnessScorer
from pipelines.labels import CategoryIndex
from pipelines.scenario import IncidentSpec, ScenarioConfig, generate


def _pipeline() -> Pipeline:
    emb = HashingEmbedder()
    policy = load_policy(DEFAULT_CATEGORIES)
    cc = ClusterConfig(bootstrap_size=120)
    return Pipeline(embedder=emb, scorer=FaithfulnessScorer(emb, FaithfulnessConfig()), policy=policy,
                    clusterer=OnlineClusterer(cc, emb.dim, CategoryIndex.build(policy, emb, cc.category_threshold)),
                    cluster_config=cc, baseline_config=BaselineConfig(), detect_config=DetectConfig())


def _dump(out: Output) -> list[str]:
    return ([json.dumps(s.to_json_dict(), sort_keys=True) for s in out.scored]
            + [json.dumps(e.to_json_dict(), sort_keys=True) for e in out.events])


def _records() -> list:
    from pipelines.interaction import parse_record
    from services.datasets import load_banking77

    sc = generate(load_banking77("train"), ScenarioConfig(seed=3, days=2.0, per_day=500,
                                                          incident=IncidentSpec(onset_day=1.0)))
    return [parse_record(r) for r in sc.records]


def test_prepared_anywhere_then_sequenced_equals_process():
    records = _records()
    whole = Output()
    a = _pipeline()
    for k in range(0, len(records), 256):
        whole.extend(a.process(records[k:k + 256]))
    whole.extend(a.flush())
    assert whole.events, "the stream should raise an incident"

    b = _pipeline()
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    prepared = []
    for k in range(0, len(shuffled), 37):
        prepared += b.prepare(shuffled[k:k + 37])
    prepared.sort(key=lambda p: (p.interaction.timestamp, p.interaction.interaction_id))
    prepared += prepared[:10]  # redelivered: dropped as duplicates
    split = Output()
    for k in range(0, len(prepared), 50):
        split.extend(b.sequence(prepared[k:k + 50]))
    split.extend(b.flush())
    assert split.duplicates == 10
    assert _dump(split) == _dump(whole)
    assert b.to_state() == a.to_state()
