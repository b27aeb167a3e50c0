"""One contract for every stateful stage: JSON-safe state, exact round trips, refusal of state
written by another version or configuration, and determinism for the same inputs."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from pipelines.baseline import ClusterBaseline
from pipelines.clustering import OnlineClusterer
from pipelines.config import BaselineConfig, ClusterConfig, DetectConfig
from pipelines.cusum import BernoulliCusum
from pipelines.detector import PatternDetector
from pipelines.errors import StateError
from pipelines.interaction import Context, Interaction
from pipelines.policy import Category

T0 = datetime(2026, 11, 2, tzinfo=UTC)
CAT = Category(name="pricing", tolerance=0.08, gate=0.8)


@dataclass
class Case:
    name: str
    make: Callable[[Any], Any]            # config -> fresh instance
    feed: Callable[[Any, int], None]      # instance, seed -> drive it with seeded inputs
    restore: Callable[[dict, Any], Any]   # state, config -> instance
    config: Any
    other_config: Any


def feed_baseline(b: ClusterBaseline, seed: int) -> None:
    rng = random.Random(seed)
    for k in range(300):
        b.observe(T0 + timedelta(minutes=k), rng.random(), rng.random(), rng.random() < 0.1)


def feed_cusum(c: BernoulliCusum, seed: int) -> None:
    rng = random.Random(seed)
    for k in range(200):
        c.update(rng.random() < 0.2, 0.05, 0.5, T0 + timedelta(minutes=k))


def feed_detector(d: PatternDetector, seed: int) -> None:
    rng = random.Random(seed)
    ctx = Context(doc_id="d", doc_version="v1", text="t")
    for k in range(1500):
        bad = 1000 <= k < 1100 and k % 2 == 0
        i = Interaction(interaction_id=f"i{k}", session_id=f"s{k // 4}", timestamp=T0 + timedelta(minutes=k),
                        query="q", response="a", confidence=rng.random(), contexts=(ctx,))
        f = 0.1 if bad else min(1.0, max(0.0, rng.gauss(0.85, 0.05)))
        d.observe(i, cluster_id=f"c{k % 2}", label="l", category=CAT, faithfulness=f)


def feed_clusterer(c: OnlineClusterer, seed: int) -> None:
    rng = np.random.default_rng(seed)
    centres = np.eye(16)[:4]
    x = np.repeat(centres, 30, axis=0) + rng.normal(0, 0.05, (120, 16))
    c.bootstrap(x[:60], [f"q{k}" for k in range(60)], [T0] * 60)
    for k in range(60, 120):
        c.assign(x[k], f"q{k}", T0 + timedelta(minutes=k))


CASES = [
    Case("ClusterBaseline", lambda cfg: ClusterBaseline(cfg, 0.1), feed_baseline,
         lambda s, cfg: ClusterBaseline.from_state(s, cfg), BaselineConfig(), BaselineConfig(band_k=2.5)),
    Case("BernoulliCusum", lambda h: BernoulliCusum(h), feed_cusum,
         lambda s, h: BernoulliCusum.from_state(s, h), 11.5, 9.0),
    Case("PatternDetector", lambda cfg: PatternDetector(*cfg), feed_detector,
         lambda s, cfg: PatternDetector.from_state(s, *cfg), (BaselineConfig(), DetectConfig()),
         (BaselineConfig(), DetectConfig(min_sessions=4))),
    Case("OnlineClusterer", lambda cfg: OnlineClusterer(cfg, 16), feed_clusterer,
         lambda s, cfg: OnlineClusterer.from_state(s, cfg), ClusterConfig(refit_every=40),
         ClusterConfig(refit_every=41)),
]


@pytest.fixture(params=CASES, ids=lambda c: c.name)
def case(request) -> Case:
    return request.param


def fed(case: Case, seed: int = 0):
    obj = case.make(case.config)
    case.feed(obj, seed)
    return obj


def test_state_is_json_safe_and_carries_its_version(case):
    state = fed(case).to_state()
    assert json.loads(json.dumps(state)) == state
    assert isinstance(state["version"], int) and state["kind"]


def test_round_trip_is_exact(case):
    obj = fed(case)
    state = json.loads(json.dumps(obj.to_state()))
    assert case.restore(state, case.config).to_state() == obj.to_state()


def test_restored_instance_continues_identically(case):
    a = fed(case)
    b = case.restore(json.loads(json.dumps(a.to_state())), case.config)
    if isinstance(a, OnlineClusterer):
        v = np.eye(16)[2]
        assert a.assign(v, "x", T0 + timedelta(days=1)) == b.assign(v, "x", T0 + timedelta(days=1))
    else:
        case.feed(a, 99)
        case.feed(b, 99)
    assert a.to_state() == b.to_state()


def test_other_configuration_is_refused(case):
    with pytest.raises(StateError):
        case.restore(fed(case).to_state(), case.other_config)


def test_other_version_is_refused(case):
    state = copy.deepcopy(fed(case).to_state())
    state["version"] += 1
    with pytest.raises(StateError):
        case.restore(state, case.config)


def test_same_inputs_same_state(case):
    assert fed(case, 3).to_state() == fed(case, 3).to_state()


def test_feeding_does_not_mutate_the_configuration(case):
    before = copy.deepcopy(case.config)
    fed(case)
    assert case.config == before
