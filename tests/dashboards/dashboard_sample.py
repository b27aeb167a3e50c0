"""The dashboard tests' sample data, written through the store API (tests/dashboards/conftest.py).

Three clusters in two families plus one without a family, answers every 10 minutes over three
days (so the minute, hour and day rollups all hold rows), an open two-cluster incident with
shared documents, a suggested gate and deliveries, and a resolved one; the gate's decision log
over the last day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
END = T0 + timedelta(days=3)
STEP = timedelta(minutes=10)
CLUSTERS = (("c-fee", "exchange fee", "pricing", "f-price", "pricing questions"),
            ("c-fee-eur", "euro exchange fee", "pricing", "f-price", "pricing questions"),
            ("c-pin", "card pin reset", "account", None, None))
OPEN_ID, RESOLVED_ID = "inc-c-fee-open", "inc-c-pin-old"


def interactions() -> list[ScoredInteraction]:
    rows, at, n = [], T0, 0
    while at < END:
        for cluster_id, label, category, family_id, _ in CLUSTERS:
            # c-fee and c-fee-eur fail in the last day; c-pin fails on day 1 (resolved incident).
            failing = (cluster_id.startswith("c-fee") and at >= T0 + timedelta(days=2) and (n // 3) % 3 == 0) or \
                      (cluster_id == "c-pin" and T0 + timedelta(hours=10) <= at < T0 + timedelta(hours=14))
            rows.append(ScoredInteraction(
                interaction_id=f"i{n}", session_id=f"s{n % 40}", customer_id=f"k{n % 25}", timestamp=at,
                query=f"{label} question {n}", response=f"answer {n}", cluster_id=cluster_id, cluster_label=label,
                category=category, faithfulness=0.3 if failing else 0.85 + (n % 10) / 100,
                faithfulness_source="producer", confidence=0.9 if failing else 0.7 + (n % 5) / 20,
                below_baseline=failing, baseline_low=0.7, confident_wrong=failing, stale_context=failing,
                contexts=(ContextRef(doc_id="pricing-table" if category == "pricing" else "pin-howto",
                                     doc_version="v3", stale=failing),),
                family_id=family_id))
            n += 1
        at += STEP
    return rows


def clusters() -> list[ClusterInfo]:
    return [ClusterInfo(cluster_id=cid, label=label, category=cat, terms=("a",), representative_query=label,
                        size=432, centroid_version=1, first_seen=T0, last_seen=END, family_id=fid,
                        family_label=flabel, family_category=cat if fid else None)
            for cid, label, cat, fid, flabel in CLUSTERS]


def _event(incident_id: str, sequence: int, cluster_id: str, members: tuple[str, ...], onset: datetime,
           resolved: datetime | None = None) -> IncidentEvent:
    doc = SharedDocument(doc_id="pricing-table", doc_version="v3", count=12, share=0.9, stale=True,
                         indexed_at=T0 - timedelta(days=14), doc_updated_at=T0 - timedelta(days=1))
    label = {cid: lab for cid, lab, *_ in CLUSTERS}
    return IncidentEvent(
        event="resolved" if resolved else ("opened" if sequence == 0 else "updated"), incident_id=incident_id,
        sequence=sequence, cluster_id=cluster_id, cluster_label=label[cluster_id], category="pricing",
        severity="critical", status="resolved" if resolved else "open", onset_at=onset,
        detected_at=onset + timedelta(minutes=40), event_at=onset + timedelta(minutes=40 + 10 * sequence),
        resolved_at=resolved, below_baseline_count=12 + sequence, affected_sessions=9, affected_customers=7,
        session_ids=("s0", "s3", "s6"), customer_ids=("k0", "k3"), confident_wrong_count=12,
        outreach_required=True, irreversible_actions=1,
        suggested_gate=SuggestedGate(threshold=0.93, current_gate=0.8, failing_held_back=11, failing_total=12,
                                     faithful_held_back_share=0.04, faithful_held_back=5, faithful_total=120),
        shared_documents=(doc,), stale_contexts=12, baseline_faithfulness=0.9, baseline_low=0.7,
        baseline_below_rate=0.02, observed_below_rate=0.33, statistic=9.5, threshold=5.0,
        summary=f"{label[cluster_id]}: answers cite pricing-table v3", clusters=members,
        examples=(Example(interaction_id="i1", session_id="s1", customer_id="k1", timestamp=onset, query="q",
                          response="a", faithfulness=0.3, confidence=0.9),),
        members=tuple(IncidentMember(cluster_id=cid, cluster_label=label[cid], family_id="f-price",
                                     category="pricing", joined_at=onset, since=onset,
                                     joined_by="opened" if i == 0 else "family", below_baseline_count=6,
                                     affected_sessions=5) for i, cid in enumerate(members)),
        cause=doc)


def incident_events() -> list[IncidentEvent]:
    onset = T0 + timedelta(days=2)
    pin = T0 + timedelta(hours=10)
    return [_event(OPEN_ID, 0, "c-fee", ("c-fee",), onset),
            _event(OPEN_ID, 1, "c-fee", ("c-fee", "c-fee-eur"), onset),
            _event(RESOLVED_ID, 0, "c-pin", ("c-pin",), pin),
            _event(RESOLVED_ID, 1, "c-pin", ("c-pin",), pin, resolved=pin + timedelta(hours=5))]


def deliveries() -> list[dict]:
    at = T0 + timedelta(days=2, minutes=41)
    return [{"incident_id": OPEN_ID, "sequence": seq, "channel": "oncall-slack", "version": 1,
             "channel_type": "slack", "event": "opened" if seq == 0 else "updated", "status": "sent",
             "attempts": 1, "queued_at": at, "next_attempt_at": at, "updated_at": at, "http_status": 200,
             "error": "", "payload": "{}"} for seq in (0, 1)]


# The gate's decision log over the last day, every 30 minutes: (cluster, category, decision, calls);
# c-fee defers 3 of 4 (its incident is open), c-pin none, queries close to no cluster 1 of 2.
GATE_DECISIONS = (("c-fee", "pricing", "defer", 3), ("c-fee", "pricing", "answer", 1),
                  ("c-pin", "account", "answer", 4), ("unassigned", "other", "answer", 1),
                  ("unassigned", "other", "defer", 1))


def gate_decisions() -> list[dict]:
    return [{"minute": END - timedelta(minutes=30 * k + 1), "cluster_id": cid, "category": cat, "decision": d,
             "calls": n} for k in range(48) for cid, cat, d, n in GATE_DECISIONS]


def populate(store) -> int:
    """Writes everything above to a migrated store; returns the number of interactions."""
    rows = interactions()
    store.upsert_clusters(clusters())
    store.insert_interactions(rows)
    store.insert_incident_events(incident_events())
    store.insert_deliveries(deliveries())
    store.insert_gate_decisions(gate_decisions())
    return len(rows)
