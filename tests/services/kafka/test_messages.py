"""The Kafka driver's row encodings: what the sequence stage publishes, the sinks read back equal.

The scored, incidents and clusters topics carry ``messages.row(record)`` and the sinks decode them
with ``scored_of``/``event_of``/``cluster_of`` before writing the store: every field must survive,
nested models and their datetimes included (families, incident members, the cause).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from pipelines.interaction import DeadLetter
from pipelines.records import (
    ClusterInfo,
    ContextRef,
    Example,
    IncidentEvent,
    IncidentMember,
    ScoredInteraction,
    SharedDocument,
    SuggestedGate,
)
from services.kafka import messages

T0 = datetime(2026, 11, 2, 10, 0, 0, 123000, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


CAUSE = SharedDocument(doc_id="pricing-table", doc_version="v3", count=4, share=0.8, stale=True,
                       indexed_at=at(-20160), doc_updated_at=at(-60))
MEMBERS = (
    IncidentMember(cluster_id="c001", cluster_label="exchange / rate", family_id="f001", category="pricing",
                   joined_at=at(30), since=at(0), joined_by="opened", below_baseline_count=5, affected_sessions=4),
    # A member without a family and with a non-UTC offset: it must come back as the same instant.
    IncidentMember(cluster_id="c014", cluster_label="rate in euros", family_id=None, category="pricing",
                   joined_at=at(45).astimezone(timezone(timedelta(hours=2))), since=at(41),
                   joined_by="document", below_baseline_count=1, affected_sessions=1))


def family_event() -> IncidentEvent:
    return IncidentEvent(
        event="updated", incident_id="inc-c001-20261102T100000Z", sequence=2, cluster_id="c001",
        cluster_label="exchange / rate", category="pricing", severity="critical", status="open", onset_at=at(0),
        detected_at=at(30), event_at=at(45), below_baseline_count=6, affected_sessions=5, affected_customers=5,
        session_ids=("s1", "s2"), customer_ids=("k1",), confident_wrong_count=6, outreach_required=True,
        irreversible_actions=0,
        suggested_gate=SuggestedGate(threshold=0.89, current_gate=0.8, failing_held_back=6, failing_total=6,
                                     faithful_held_back_share=0.86, faithful_held_back=40, faithful_total=47),
        shared_documents=(CAUSE,), stale_contexts=6, baseline_faithfulness=0.991, baseline_low=0.86,
        baseline_below_rate=0.026, observed_below_rate=0.833, statistic=11.7, threshold=11.5, summary="6 of 6 ...",
        examples=(Example(interaction_id="i1", session_id="s1", customer_id="k1", timestamp=at(1), query="rate?",
                          response="1.5 %", faithfulness=0.3, confidence=0.84,
                          doc_refs=(ContextRef(doc_id="pricing-table", doc_version="v3", stale=True),)),),
        level="family", clusters=("c001", "c014"), clusters_added=("c014",), family_ids=("f001",), members=MEMBERS,
        cause=CAUSE)


def test_an_incident_event_with_members_and_cause_round_trips():
    sent = family_event()
    value = messages.row(sent)
    got = messages.event_of(value)
    assert got == sent
    assert got.members[1].joined_at == MEMBERS[1].joined_at and got.members[1].joined_at.utcoffset() is not None
    assert isinstance(got.members, tuple) and isinstance(got.cause, SharedDocument)
    assert messages.row(got) == value  # re-publishing (a replayed changelog) gives the same bytes
    decoded = json.loads(value)
    assert decoded["clusters"] == ["c001", "c014"] and decoded["members"][0]["since"] == "2026-11-02T10:00:00.123000Z"
    # An event of a cluster-level incident without the issue #10 fields reads back with the defaults.
    bare = {k: v for k, v in decoded.items() if k not in ("level", "clusters", "clusters_added", "family_ids",
                                                          "members", "cause")}
    old = messages.event_of(json.dumps(bare).encode())
    assert (old.level, old.clusters, old.members, old.cause) == ("cluster", (), (), None)


def test_a_scored_interaction_and_a_cluster_keep_their_family():
    scored = ScoredInteraction(
        interaction_id="i1", session_id="s1", customer_id="k1", timestamp=at(1), query="rate?", response="1.5 %",
        cluster_id="c014", cluster_label="rate in euros", category="pricing", faithfulness=0.3,
        faithfulness_source="computed", confidence=0.84, below_baseline=True, baseline_low=0.86,
        confident_wrong=True, stale_context=True, contexts=(ContextRef(doc_id="pricing-table", doc_version="v3"),),
        incident_id="inc-c001-20261102T100000Z", family_id="f001", metadata={"channel": "web"})
    assert messages.scored_of(messages.row(scored)) == scored
    cluster = ClusterInfo(cluster_id="c014", label="rate in euros", category="pricing", terms=("rate", "euro"),
                          representative_query="what rate for euros", size=12, centroid_version=3, first_seen=at(0),
                          last_seen=at(50), family_id="f001", family_label="exchange / rate",
                          family_category="pricing")
    assert messages.cluster_of(messages.row(cluster)) == cluster
    lone = cluster.model_copy(update={"family_id": None, "family_label": None, "family_category": None})
    assert messages.cluster_of(messages.row(lone)) == lone
    letter = DeadLetter(received_at=at(2), source="kafka:interactions", position="3:17", interaction_id=None,
                        field="timestamp", reason="field required", raw="{}")
    assert messages.dead_letter_of(messages.row(letter)) == letter
