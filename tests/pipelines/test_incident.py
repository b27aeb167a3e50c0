from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipelines.baseline import ClusterBaseline
from pipelines.config import BaselineConfig
from pipelines.gate import suggest_gate
from pipelines.incident import DocSeen, Failure, Incident, shared_documents

T0 = datetime(2026, 11, 2, tzinfo=UTC)
STALE = DocSeen("pricing-table", "v3", True, T0 - timedelta(days=14), T0)
FRESH = DocSeen("fees-faq", "v2", False, T0 - timedelta(days=30), T0 - timedelta(days=40))


def failure(k: int, docs=(STALE,), conf=0.84, session=None, customer=None) -> Failure:
    return Failure(interaction_id=f"i{k}", session_key=session or f"s{k}", session_id=session or f"s{k}",
                   customer_id=customer, at=T0 + timedelta(minutes=k), query="q", response="a",
                   faithfulness=0.2, confidence=conf, docs=tuple(docs), confident_wrong=conf >= 0.8,
                   irreversible=False)


@pytest.mark.parametrize("docs_per_failure,expected", [
    ([[STALE]] * 19 + [[FRESH]] * 4, [("pricing-table", "v3", 19, True)]),
    ([[STALE, FRESH]] * 10, [("fees-faq", "v2", 10, False), ("pricing-table", "v3", 10, True)]),
    ([[FRESH]] * 2 + [[]] * 8, []),   # 20 % is not "shared"
    ([], []),
])
def test_shared_documents(docs_per_failure, expected):
    fs = [failure(k, docs) for k, docs in enumerate(docs_per_failure)]
    got = [(d.doc_id, d.doc_version, d.count, d.stale) for d in shared_documents(fs)]
    assert got == expected


def test_repeated_doc_in_one_answer_counts_once():
    fs = [failure(0, [STALE, STALE]), failure(1, [STALE])]
    assert shared_documents(fs)[0].count == 2


def baseline_with(confidences) -> ClusterBaseline:
    b = ClusterBaseline(BaselineConfig(holdback=0))
    for k, c in enumerate(confidences):
        b.observe(T0 + timedelta(minutes=k), 0.9, c, below=False)
    return b


@pytest.mark.parametrize("failing,target,threshold,held", [
    ([0.84] * 10, 0.9, 0.85, 10),
    ([0.80, 0.82, 0.84, 0.86, 0.95], 0.8, 0.87, 4),
    ([0.5], 0.9, 0.51, 1),
    ([0.999], 0.9, 1.0, 1),
])
def test_gate_is_the_lowest_grid_value_holding_back_the_target(failing, target, threshold, held):
    g = suggest_gate(failing, baseline_with([0.9] * 10), current_gate=0.8, target=target)
    assert g.threshold == threshold and g.failing_held_back == held
    assert g.failing_total == len(failing)


def test_gate_reports_what_it_costs_in_faithful_answers():
    b = baseline_with([0.82, 0.83, 0.86, 0.90, 0.95])
    g = suggest_gate([0.84, 0.84], b, current_gate=0.8)
    assert g.threshold == 0.85 and g.faithful_held_back_share == pytest.approx(0.4)
    assert (g.faithful_held_back, g.faithful_total) == (2, 5)


def test_no_confidence_no_gate():
    assert suggest_gate([], baseline_with([0.9]), current_gate=0.8) is None


def test_incident_id_is_derived_from_cluster_and_onset():
    assert Incident.make_id("c007", T0 + timedelta(hours=7, minutes=12)) == "inc-c007-20261102T071200Z"


def test_blast_radius_counts_sessions_and_customers_once():
    inc = Incident("x", "c1", T0, T0, [failure(0, session="a", customer="u1"), failure(1, session="a", customer="u1"),
                                       failure(2, session="b", customer="u1"), failure(3, session="c")])
    assert inc.sessions == ["a", "b", "c"] and inc.customers == ["u1"]
