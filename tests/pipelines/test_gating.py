"""The confidence gate's decision: every threshold source, precedence, irreversible actions,
on_incident while open and after resolve; placement read-only and equal to the clusterer's."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.engine import UNASSIGNED
from pipelines.gating import ClusterModel, OpenIncident, Override, Placement, decide, gate_many
from pipelines.interaction import parse_record
from pipelines.policy import Category, CategoryPolicy, RaiseTo
from pipelines.scenario import ScenarioConfig, generate
from services.datasets import load_banking77
from tests.pipelines.test_engine import inter, pipeline

PRICING = Category(name="pricing", gate=0.80, irreversible_gate=0.90, on_incident="defer")
POLICY = Category(name="policy", gate=0.80, irreversible_gate=0.90, on_incident=RaiseTo(raise_to=0.95))
OTHER = Category(name="other", gate=0.80, on_incident="none")
PLACE = Placement("c003", "f002", "pricing", 0.9)


def ov(scope: str, t: float) -> Override:
    return Override(scope, t, reason="stale table", actor="ana", at="2026-11-02T10:00:00+00:00", version=2)


ON_CLUSTER = OpenIncident("inc-c003-x", frozenset({"c003"}), frozenset({"f002"}))
ON_FAMILY = OpenIncident("inc-c009-x", frozenset({"c009"}), frozenset({"f002"}))
ELSEWHERE = OpenIncident("inc-c050-x", frozenset({"c050"}), frozenset({"f050"}))

CASES = [
    # id, category, confidence, reversible, overrides, incidents -> threshold, source, decision, incident, reason
    ("category gate, answer", PRICING, 0.84, True, {}, [], 0.80, "category gate", "answer", None,
     "from category pricing's gate"),
    ("category gate, at the gate answers", PRICING, 0.80, True, {}, [], 0.80, "category gate", "answer", None,
     ">= threshold"),
    ("category gate, defer", PRICING, 0.79, True, {}, [], 0.80, "category gate", "defer", None, "< threshold"),
    ("cluster override beats category", PRICING, 0.84, True, {"c003": ov("c003", 0.92)}, [], 0.92,
     "cluster override", "defer", None, "override on cluster c003 (v2 by ana"),
    ("family override beats category", PRICING, 0.84, True, {"f002": ov("f002", 0.86)}, [], 0.86,
     "family override", "defer", None, "override on family f002"),
    ("cluster override beats family override", PRICING, 0.84, True,
     {"c003": ov("c003", 0.83), "f002": ov("f002", 0.95)}, [], 0.83, "cluster override", "answer", None,
     "override on cluster c003"),
    ("an override may lower the gate", PRICING, 0.75, True, {"c003": ov("c003", 0.70)}, [], 0.70,
     "cluster override", "answer", None, "override on cluster c003"),
    ("another cluster's override does not apply", PRICING, 0.84, True, {"c004": ov("c004", 0.99)}, [], 0.80,
     "category gate", "answer", None, "category pricing's gate"),
    ("irreversible uses irreversible_gate", PRICING, 0.84, False, {}, [], 0.90, "category gate", "defer", None,
     "irreversible_gate 0.90"),
    ("irreversible above a lowered override", PRICING, 0.84, False, {"c003": ov("c003", 0.70)}, [], 0.90,
     "cluster override", "defer", None, "irreversible_gate 0.90"),
    ("irreversible below a stricter override", PRICING, 0.93, False, {"c003": ov("c003", 0.92)}, [], 0.92,
     "cluster override", "answer", None, "already at least"),
    ("irreversible without irreversible_gate uses gate", OTHER, 0.81, False, {}, [], 0.80, "category gate",
     "answer", None, "already at least"),
    ("on_incident defer on the cluster", PRICING, 0.99, True, {}, [ON_CLUSTER], 0.80, "category gate", "defer",
     "inc-c003-x", "on_incident is defer"),
    ("on_incident defer on the family", PRICING, 0.99, True, {}, [ON_FAMILY], 0.80, "category gate", "defer",
     "inc-c009-x", "open on family f002"),
    ("the cluster's incident before the family's", PRICING, 0.99, True, {}, [ON_FAMILY, ON_CLUSTER], 0.80,
     "category gate", "defer", "inc-c003-x", "open on cluster c003"),
    ("an incident elsewhere changes nothing", PRICING, 0.84, True, {}, [ELSEWHERE], 0.80, "category gate",
     "answer", None, ">= threshold"),
    ("after resolve: answered again", PRICING, 0.84, True, {}, [], 0.80, "category gate", "answer", None,
     ">= threshold"),
    ("on_incident raise_to", POLICY, 0.90, True, {}, [ON_CLUSTER], 0.95, "category gate", "defer",
     "inc-c003-x", "raised to 0.95"),
    ("raise_to above the threshold answers", POLICY, 0.96, True, {}, [ON_CLUSTER], 0.95, "category gate",
     "answer", "inc-c003-x", "raised to 0.95"),
    ("raise_to below an override keeps the override", POLICY, 0.96, True, {"c003": ov("c003", 0.97)},
     [ON_CLUSTER], 0.97, "cluster override", "defer", "inc-c003-x", "already at least on_incident raise_to"),
    ("raise_to after resolve", POLICY, 0.90, True, {}, [], 0.80, "category gate", "answer", None, ">= threshold"),
    ("on_incident none", OTHER, 0.84, True, {}, [ON_CLUSTER], 0.80, "category gate", "answer", "inc-c003-x",
     "on_incident is none"),
    ("irreversible during raise_to", POLICY, 0.93, False, {}, [ON_CLUSTER], 0.95, "category gate", "defer",
     "inc-c003-x", "irreversible_gate 0.90"),
]


@pytest.mark.parametrize("name,cat,conf,reversible,overrides,incidents,threshold,source,decision,incident,reason",
                         CASES, ids=[c[0] for c in CASES])
def test_decision_table(name, cat, conf, reversible, overrides, incidents, threshold, source, decision,
                        incident, reason):
    d = decide(PLACE, conf, cat, reversible=reversible, overrides=overrides, incidents=incidents)
    assert (d.threshold, d.source, d.decision, d.incident_id) == (threshold, source, decision, incident)
    assert any(reason in r for r in d.reasons), d.reasons
    assert d.as_dict()["reasons"] == list(d.reasons)


def test_no_cluster_uses_the_default_category_and_no_override_or_incident():
    d = decide(Placement(None, None, "other", 0.1), 0.84, OTHER, overrides={"c003": ov("c003", 0.99)},
               incidents=[ON_CLUSTER])
    assert (d.cluster_id, d.threshold, d.decision, d.incident_id) == (None, 0.80, "answer", None)
    assert "close to no cluster" in d.reasons[0]


@pytest.mark.parametrize("fields,match", [
    ({"gate": 0.9, "irreversible_gate": 0.8}, "at least gate"),
    ({"on_incident": "panic"}, "on_incident"),
    ({"on_incident": {"raise_to": 1.5}}, "raise_to"),
])
def test_bad_category_gates_are_refused(fields, match):
    with pytest.raises(ValueError, match=match):
        Category(name="x", **fields)


def test_placement_agrees_with_the_stream_and_changes_nothing():
    p = pipeline(bootstrap=10)
    p.process([inter(k) for k in range(10)])
    queries = ["How much does a transfer cost?", "My card has not arrived yet", "zzqx wvvt ppqq",
               "how much is a transfer", "card not arrived"]
    for k, q in enumerate(queries, start=20):
        model = p.cluster_model()
        before = p.to_state()
        (place,) = model.place(p.embedder.encode([q]), p.policy.default)
        assert p.to_state() == before  # placing is read-only
        (scored,) = p.process([inter(k, query=q)]).scored
        assert place.cluster_id == (None if scored.cluster_id == UNASSIGNED else scored.cluster_id), q
        if place.cluster_id is not None:
            assert (place.family_id, place.category) == (scored.family_id, scored.category)
    with pytest.raises(ValueError):
        model.centroids[0, 0] = 1.0  # published models are immutable


def test_an_unfitted_pipeline_places_nowhere():
    p = pipeline(bootstrap=10)
    model = p.cluster_model()
    assert model.place(np.ones((2, p.embedder.dim)), "other") == [Placement(None, None, "other", -1.0)] * 2


def test_the_model_lists_exactly_the_open_incidents_while_they_are_open():
    scenario = generate(load_banking77("train"), ScenarioConfig(days=3, per_day=600, intents=10))
    items = [parse_record(r) for r in scenario.records]
    p = pipeline(bootstrap=200)
    seen_open, seen_resolved = False, False
    for k in range(0, len(items), 100):
        out = p.process(items[k:k + 100])
        model = p.cluster_model()
        assert {i.incident_id for i in model.incidents} == set(p.detector.open_incidents)
        for inc in model.incidents:
            assert p.detector.open_incidents[inc.incident_id].cluster_id in inc.clusters
        seen_open |= bool(model.incidents)
        seen_resolved |= any(e.event == "resolved" for e in out.events)
    assert seen_open and seen_resolved


def test_gate_many_places_and_decides_a_batch():
    policy = CategoryPolicy(default="other", categories=(PRICING, OTHER))
    model = ClusterModel(cluster_ids=("c001", "c002"), centroids=np.eye(3)[:2], family_ids=("f001", "f002"),
                         categories=("pricing", "other"), assign_threshold=0.45, attach_threshold=0.3,
                         incidents=(OpenIncident("inc-c001-x", frozenset({"c001"}), frozenset({"f001"})),))
    got = gate_many(model, np.array([[1.0, 0.1, 0], [0, 1, 0.1], [0, 0, 1]]), [0.99, 0.84, 0.84],
                    [True, True, True], policy, {})
    assert [(d.cluster_id, d.category, d.decision, d.incident_id) for d in got] == [
        ("c001", "pricing", "defer", "inc-c001-x"), ("c002", "other", "answer", None), (None, "other", "answer", None)]
