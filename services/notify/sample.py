"""A sample incident event: what ``faithwatch alerts test CHANNEL`` sends (and the doctests read)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pipelines.records import (
    ContextRef,
    Example,
    IncidentEvent,
    IncidentMember,
    SharedDocument,
    SuggestedGate,
)

ONSET = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def sample_event(incident_id: str = "inc-1", **overrides: Any) -> IncidentEvent:
    """A stale-pricing incident as the detector opens one (``overrides`` replace fields).

    >>> sample_event(event="resolved", status="resolved").status
    'resolved'
    """
    at = ONSET
    values: dict[str, Any] = dict(
        event="opened", incident_id=incident_id, sequence=0, cluster_id="c001", cluster_label="fees / fee",
        category="pricing", severity="critical", status="open", onset_at=at, detected_at=at + timedelta(minutes=30),
        event_at=at + timedelta(minutes=30), below_baseline_count=23, affected_sessions=2, affected_customers=1,
        session_ids=("s1", "s2"), customer_ids=("cus-1",), confident_wrong_count=19, outreach_required=True,
        irreversible_actions=0,
        suggested_gate=SuggestedGate(threshold=0.89, current_gate=0.8, failing_held_back=19, failing_total=23,
                                     faithful_held_back_share=0.05, faithful_held_back=21, faithful_total=420),
        shared_documents=(SharedDocument(doc_id="pricing-table", doc_version="v3", count=19, share=19 / 23,
                                         stale=True, indexed_at=at - timedelta(days=14),
                                         doc_updated_at=at - timedelta(hours=2)),),
        stale_contexts=19, baseline_faithfulness=0.94, baseline_low=0.8, baseline_below_rate=0.03,
        observed_below_rate=0.6, statistic=12.5, threshold=9.9,
        summary="23 failing answers in pricing cluster c001 since 2026-11-02 10:00; 19 of 23 cite pricing-table v3 "
                "(stale).",
        examples=(Example(interaction_id="i1", session_id="s1", customer_id="cus-1", timestamp=at,
                          query="What is the exchange rate markup?", response="The markup is 0.5 %.",
                          faithfulness=0.31, confidence=0.86,
                          doc_refs=(ContextRef(doc_id="pricing-table", doc_version="v3", stale=True),)),),
        clusters=("c001",), clusters_added=("c001",), family_ids=("f001",),
        members=(IncidentMember(cluster_id="c001", cluster_label="fees / fee", family_id="f001", category="pricing",
                                joined_at=at + timedelta(minutes=30), since=at, joined_by="opened",
                                below_baseline_count=23, affected_sessions=2),),
        cause=SharedDocument(doc_id="pricing-table", doc_version="v3", count=19, share=19 / 23, stale=True,
                             indexed_at=at - timedelta(days=14), doc_updated_at=at - timedelta(hours=2)))
    values.update(overrides)
    return IncidentEvent(**values)
