"""The store against the real engine, on both backends.

Every test that takes ``store`` (or ``make_store``) runs twice: on chDB in this process, and
through clickhouse-connect against the ClickHouse HTTP test server (chDB in another process,
see conftest.py). chDB 4.4 opens ONE data path per process at a time: a session on another
path fails until every session on the first is closed (checked by ``test_one_path_per_process``).
So every chDB test opens its own store under ``tmp_path`` and closes it before the next test
opens another; every server test gets its own database, dropped afterwards.

Set ``FAITHWATCH_UPDATE_SNAPSHOTS=1`` to rewrite ``snapshots/schema.sql`` from the migrations.
"""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.errors import StoreError
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
from services.store.base import (
    Store,
    incident_event_row,
    interaction_columns,
    interaction_from_row,
    migrations,
    rows_to_columns,
    session_key,
    statements,
)
from services.store.chdb_store import ChdbStore

SNAPSHOT = Path(__file__).parent / "snapshots" / "schema.sql"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
INJECTIONS = ["' OR 1=1 --", "x'); DROP TABLE interactions; --", "\\'; DROP TABLE clusters; --",
              "{cluster_id:String}", "pricing\tpolicy\n"]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def interaction(interaction_id: str, **overrides: Any) -> ScoredInteraction:
    values: dict[str, Any] = dict(
        interaction_id=interaction_id, session_id="s1", customer_id="c1", timestamp=T0,
        query="what is the monthly fee?", response="The fee is $5.", cluster_id="pricing",
        cluster_label="pricing: monthly fee", category="pricing", faithfulness=0.4,
        faithfulness_source="computed", confidence=0.9, below_baseline=True, baseline_low=0.7,
        confident_wrong=True, stale_context=True,
        contexts=(ContextRef(doc_id="pricing-table", doc_version="v3", stale=True),
                  ContextRef(doc_id=None, doc_version=None)),
        incident_id=None, family_id="f001", intent_hint="pricing", model="gpt-x", action_name="refund",
        action_reversible=False, metadata={"channel": "web", "tags": ["a", "b"], "n": 1})
    values.update(overrides)
    return ScoredInteraction(**values)


def event(incident_id: str, sequence: int, **overrides: Any) -> IncidentEvent:
    values: dict[str, Any] = dict(
        event="opened" if sequence == 0 else "updated", incident_id=incident_id,
        sequence=sequence, cluster_id="pricing", cluster_label="pricing: monthly fee",
        category="pricing", severity="critical", status="open", onset_at=at(0),
        detected_at=at(30), event_at=at(30 + sequence), resolved_at=None,
        below_baseline_count=23, affected_sessions=2, affected_customers=1,
        session_ids=("s1", "s2"), customer_ids=("c1",), confident_wrong_count=19,
        outreach_required=True, irreversible_actions=1,
        suggested_gate=SuggestedGate(threshold=0.93, current_gate=0.8, failing_held_back=19,
                                     failing_total=23, faithful_held_back_share=0.05),
        shared_documents=(SharedDocument(doc_id="pricing-table", doc_version="v3", count=19,
                                         share=19 / 23, stale=True, indexed_at=at(-20160),
                                         doc_updated_at=at(-10000)),),
        stale_contexts=19, baseline_faithfulness=0.91, baseline_low=0.7,
        baseline_below_rate=0.05, observed_below_rate=0.6, statistic=12.5, threshold=5.0,
        summary="19 of 23 failing answers cite pricing-table v3",
        examples=(Example(interaction_id="i1", session_id="s1", customer_id="c1", timestamp=at(1),
                          query="fee?", response="$5", faithfulness=0.2, confidence=0.95,
                          doc_refs=(ContextRef(doc_id="pricing-table", doc_version="v3"),)),))
    values.update(overrides)
    return IncidentEvent(**values)


def cluster(cluster_id: str, **overrides: Any) -> ClusterInfo:
    values: dict[str, Any] = dict(
        cluster_id=cluster_id, label=f"{cluster_id}: label", category="pricing",
        terms=("fee", "price"), representative_query="what is the fee?", size=42,
        centroid_version=3, first_seen=at(-60), last_seen=None)
    values.update(overrides)
    return ClusterInfo(**values)


def dead_letter(position: str) -> DeadLetter:
    return DeadLetter(received_at=at(5), source="kafka:interactions", position=position,
                      interaction_id=None, field="timestamp", reason="field required",
                      raw='{"query": "fee?\\t\\n", "x": "\'; DROP TABLE t; --"}')


MIGRATION_NAMES = [name for _, name, _ in migrations()]
ROLLUP_TIERS = ("rollup_minutes", "rollup_hours", "rollup_days")


def schema_ddl(store: Store) -> str:
    tables = store.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                         "ORDER BY name")
    ddl = []
    for table in tables:
        [row] = store.query("SHOW CREATE TABLE {table:Identifier}", {"table": table["name"]})
        ddl.append(row["statement"].replace(f"{store.database}.", "").strip() + ";\n")
    return "\n".join(ddl)


# ---- migrations -------------------------------------------------------------------------


def test_migrate_applies_every_migration_once_and_matches_the_schema_snapshot(make_store, backend: str):
    with make_store() as store:
        assert store.migrate() == MIGRATION_NAMES
        assert MIGRATION_NAMES[:2] == ["0001_initial", "0002_minute_rollups"]
        assert store.migrate() == []
        ddl = schema_ddl(store)
        assert store.query("SELECT version, name FROM schema_migrations FINAL ORDER BY version") == [
            {"version": version, "name": name} for version, name, _ in migrations()]
    with make_store() as reopened:
        assert reopened.migrate() == []
    if os.environ.get("FAITHWATCH_UPDATE_SNAPSHOTS") == "1" and backend == "chdb":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(ddl, encoding="utf-8")
    assert ddl == SNAPSHOT.read_text(encoding="utf-8"), (
        "schema drifted: add a migration, then rerun with FAITHWATCH_UPDATE_SNAPSHOTS=1")


def test_migrations_are_numbered_and_split_into_statements():
    found = migrations()
    assert [(version, name) for version, name, _ in found][0] == (1, "0001_initial")
    assert [version for version, _, _ in found] == sorted({v for v, _, _ in found})
    sql = "-- a comment;\nSELECT 1;\n\n-- only a comment\nSELECT 2\n;\n-- end\n"
    assert list(statements(sql)) == ["-- a comment;\nSELECT 1", "-- only a comment\nSELECT 2"]
    with pytest.raises(ValueError, match="does not end"):
        list(statements("SELECT 1;\nSELECT 2\n"))


# ---- round trips and idempotency --------------------------------------------------------


def test_interactions_round_trip_and_duplicates_count_once(store: Store):
    rows = [interaction("i1"),
            interaction("i2", session_id=None, customer_id=None, response=None,
                        faithfulness=None, faithfulness_source="none", confidence=None,
                        below_baseline=False, baseline_low=None, confident_wrong=False,
                        stale_context=False, contexts=(), family_id=None, intent_hint=None, model=None,
                        action_name=None, action_reversible=None, metadata=None,
                        timestamp=datetime(2026, 11, 2, 11, 30, 1, 123000, tzinfo=UTC))]
    store.insert_interactions(rows)
    store.insert_interactions(rows)
    store.insert_interactions([rows[0]])
    stored = store.query("SELECT * FROM interactions FINAL ORDER BY interaction_id")
    assert [interaction_from_row(row) for row in stored] == rows
    assert store.counts()["interactions"] == 2


def test_a_large_batch_is_one_insert(store: Store):
    rows = [interaction(f"i{n}", session_id=f"s{n % 7}", timestamp=at(n / 60))
            for n in range(12_000)]
    store.insert_interactions(rows)
    assert store.counts()["interactions"] == 12_000
    assert store.query("SELECT count() AS parts FROM system.parts WHERE active "
                       "AND database = currentDatabase() AND table = 'interactions'") == [
        {"parts": 1}]


def test_clusters_upsert_keeps_the_latest(store: Store):
    store.upsert_clusters([cluster("pricing"), cluster("policy", category="policy")])
    store.upsert_clusters([cluster("pricing", label="pricing: fees", size=50, last_seen=at(9))])
    listed = store.list_clusters()
    assert [ClusterInfo.model_validate({k: v for k, v in row.items() if k != "updated_at"})
            for row in listed] == [
        cluster("policy", category="policy"),
        cluster("pricing", label="pricing: fees", size=50, last_seen=at(9))]
    assert all(row["updated_at"].tzinfo is UTC for row in listed)
    assert store.counts()["clusters"] == 2


def test_incident_events_round_trip_and_a_replay_is_stored_once(store: Store):
    events = [event("inc-1", 0), event("inc-1", 1, below_baseline_count=30),
              event("inc-1", 2, event="resolved", status="resolved", resolved_at=at(120),
                    suggested_gate=None, shared_documents=(), examples=())]
    store.insert_incident_events(events)
    store.insert_incident_events(events[1:])
    incident = store.get_incident("inc-1")
    assert incident is not None
    assert [IncidentEvent.model_validate(row) for row in incident["events"]] == events
    latest = {k: v for k, v in incident.items() if k != "events"}
    assert IncidentEvent.model_validate(latest) == events[-1]
    assert store.list_incidents() == [latest]
    assert store.get_incident("inc-2") is None
    assert {k: store.counts()[k] for k in ("incident_events", "incidents")} == {
        "incident_events": 3, "incidents": 1}


def test_dead_letters_round_trip_and_a_retried_batch_is_stored_once(store: Store):
    rows = [dead_letter("interactions.jsonl:3"), dead_letter("interactions.jsonl:9")]
    store.insert_dead_letters(rows)
    store.insert_dead_letters(rows)
    stored = store.query("SELECT * FROM dead_letters FINAL ORDER BY position")
    assert [DeadLetter.model_validate(row) for row in stored] == rows
    assert store.counts()["dead_letters"] == 2


def test_empty_inserts_do_nothing(store: Store):
    store.insert_interactions([])
    store.upsert_clusters([])
    store.insert_incident_events([])
    store.insert_dead_letters([])
    store.insert_deliveries([])
    assert store.counts() == {"interactions": 0, "clusters": 0, "incident_events": 0,
                              "incidents": 0, "dead_letters": 0, "deliveries": 0,
                              "schema_migrations": len(MIGRATION_NAMES)}


# ---- incidents --------------------------------------------------------------------------


@pytest.fixture
def incidents(store: Store) -> Store:
    store.insert_incident_events([
        # pricing: opened at 0, resolved at 120
        # (its session list: what its tests' answers are; s0 and s5 fail outside its window)
        event("a", 0, onset_at=at(0), detected_at=at(10), session_ids=("s1",)),
        event("a", 1, event="resolved", status="resolved", onset_at=at(0), detected_at=at(10),
              resolved_at=at(120), session_ids=A_SESSIONS),
        # policy: open since 200
        event("b", 0, cluster_id="policy", category="policy", severity="warning",
              onset_at=at(200), detected_at=at(210)),
        # pricing again: open since 300
        event("c", 0, onset_at=at(300), detected_at=at(310), session_ids=("s6",)),
    ])
    return store


A_SESSIONS = ("s0", "s1", "s2", "s5", "interaction:no-session",
              "s-a", "s-b", "interaction:p3", "interaction:p4", "s-c")


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, ["c", "b", "a"]),
    ({"status": "open"}, ["c", "b"]),
    ({"status": "resolved"}, ["a"]),
    ({"cluster_id": "pricing"}, ["c", "a"]),
    ({"category": "policy"}, ["b"]),
    ({"cluster_id": "pricing", "status": "open"}, ["c"]),
    ({"since": at(130)}, ["c", "b"]),
    ({"since": at(100)}, ["c", "b", "a"]),
    ({"until": at(250)}, ["b", "a"]),
    ({"since": at(130), "until": at(250)}, ["b"]),
    ({"limit": 2}, ["c", "b"]),
    ({"limit": 0}, []),
    ({"status": "closed"}, []),
])
def test_list_incidents_filters(incidents: Store, filters: dict, expected: list[str]):
    assert [row["incident_id"] for row in incidents.list_incidents(**filters)] == expected


def test_list_incidents_refuses_naive_datetimes_and_negative_limits(incidents: Store):
    with pytest.raises(ValueError, match="naive"):
        incidents.list_incidents(since=datetime(2026, 11, 2, 10))  # noqa: DTZ001
    with pytest.raises(ValueError, match="limit"):
        incidents.list_incidents(limit=-1)


def test_incident_sessions_is_the_blast_radius(incidents: Store):
    incidents.insert_interactions([
        interaction("before-onset", session_id="s0", timestamp=at(-1)),
        interaction("a1", session_id="s1", timestamp=at(0), faithfulness=0.5),
        interaction("a2", session_id="s1", timestamp=at(60), faithfulness=0.2,
                    query="worst?", response="worst."),
        interaction("a3", session_id="s2", customer_id="c2", timestamp=at(120)),
        interaction("passing", session_id="s3", timestamp=at(30), below_baseline=False),
        interaction("other-cluster", session_id="s4", timestamp=at(30), cluster_id="policy"),
        interaction("after-resolve", session_id="s5", timestamp=at(121)),
        interaction("no-session", session_id=None, customer_id=None, timestamp=at(50)),
        interaction("in-c", session_id="s6", timestamp=at(400)),
        # A failing answer the detector left out (noise after the fix): not in the session list.
        interaction("noise", session_id="s8", timestamp=at(100)),
    ])
    radius = incidents.incident_sessions("a")
    assert [(r["session_id"], r["interactions"]) for r in radius] == [
        ("s1", 2), (None, 1), ("s2", 1)]
    s1 = radius[0]
    assert s1 == {
        "session_id": "s1", "customer_id": "c1", "first_at": at(0), "last_at": at(60),
        "interactions": 2, "below_baseline_count": 2, "confident_wrong_count": 2,
        "worst_faithfulness": 0.2, "example_interaction_id": "a2", "example_query": "worst?",
        "example_response": "worst."}
    # Open incident: unbounded after onset, so it reaches s6 at minute 400.
    assert [r["session_id"] for r in incidents.incident_sessions("c")] == ["s6"]
    assert incidents.incident_sessions("missing") == []


def test_sessions_for_an_analyst(incidents: Store):
    incidents.insert_interactions([
        interaction("x1", session_id="s1", timestamp=at(0)),
        interaction("x2", session_id="s1", timestamp=at(10), below_baseline=False,
                    faithfulness=0.95),
        interaction("x3", session_id="s2", timestamp=at(20), below_baseline=False),
        interaction("x4", session_id="s3", timestamp=at(40)),
    ])
    failing = incidents.sessions("pricing", since=at(0), until=at(40))
    assert [(r["session_id"], r["interactions"]) for r in failing] == [("s1", 1)]
    every = incidents.sessions("pricing", since=at(0), below_baseline=False)
    assert [(r["session_id"], r["interactions"], r["below_baseline_count"]) for r in every] == [
        ("s1", 2, 1), ("s2", 1, 0), ("s3", 1, 1)]
    assert incidents.sessions("policy", since=at(0)) == []


def test_sessions_page_by_keyset_without_repeats_or_gaps(incidents: Store):
    # Ties on first_at (s-b, s-a and the session without an id all start at minute 5), an
    # empty-string session id, and the NULL session: the order is (first_at, id), NULL last.
    incidents.insert_interactions([
        interaction("p1", session_id="s-b", timestamp=at(5)),
        interaction("p2", session_id="s-a", timestamp=at(5)),
        interaction("p3", session_id=None, customer_id=None, timestamp=at(5)),
        interaction("p4", session_id="", timestamp=at(6)),
        interaction("p5", session_id="s-c", timestamp=at(7)),
        interaction("p6", session_id="s-a", timestamp=at(8)),
        interaction("p7", session_id="s-d", timestamp=at(9), cluster_id="policy"),
    ])
    whole = [r["session_id"] for r in incidents.sessions("pricing", since=at(0))]
    assert whole == ["s-a", "s-b", None, "", "s-c"]
    for size in (1, 2, 3, 5, 6):
        for source in (lambda **kw: incidents.sessions("pricing", since=at(0), **kw),
                       lambda **kw: incidents.incident_sessions("a", **kw)):
            pages, after = [], None
            while True:
                page = source(limit=size, after=after)
                pages.append([r["session_id"] for r in page])
                if len(page) < size:
                    break
                after = session_key(page[-1])
            assert [s for p in pages for s in p] == whole, (size, pages)
            assert all(len(p) == size for p in pages[:-1])
    # A page's rows are whole sessions: s-a counts both answers though its second is later.
    first = incidents.sessions("pricing", since=at(0), limit=1)
    assert first[0]["interactions"] == 2 and first[0]["last_at"] == at(8)
    assert incidents.sessions("pricing", since=at(0), limit=0) == []
    assert incidents.sessions("pricing", since=at(0), after=(at(7), "s-c")) == []
    with pytest.raises(ValueError, match="limit"):
        incidents.sessions("pricing", since=at(0), limit=-1)
    with pytest.raises(ValueError, match="naive"):
        incidents.sessions("pricing", since=at(0), after=(datetime(2026, 11, 2, 10), "s-a"))  # noqa: DTZ001


# ---- families and multi-cluster incidents (migration 0004) ----------------------------------


def member(cluster_id: str, since: datetime, joined_by: str = "family", **overrides: Any) -> IncidentMember:
    values: dict[str, Any] = dict(
        cluster_id=cluster_id, cluster_label=f"{cluster_id}: label", family_id="f001", category="pricing",
        joined_at=since + timedelta(minutes=5), since=since, joined_by=joined_by, below_baseline_count=4,
        affected_sessions=2)
    values.update(overrides)
    return IncidentMember(**values)


CAUSE = SharedDocument(doc_id="pricing-table", doc_version="v3", count=9, share=0.75, stale=True,
                       indexed_at=at(-20160), doc_updated_at=at(-10000))


def family_event(incident_id: str, sequence: int, members: tuple[IncidentMember, ...],
                 **overrides: Any) -> IncidentEvent:
    """A family-level incident over ``members`` (the first is cluster_id), caused by CAUSE."""
    values: dict[str, Any] = dict(
        cluster_id=members[0].cluster_id, onset_at=members[0].since, level="family",
        clusters=tuple(m.cluster_id for m in members), clusters_added=tuple(m.cluster_id for m in members),
        family_ids=tuple(dict.fromkeys(m.family_id for m in members if m.family_id)), members=members, cause=CAUSE)
    values.update(overrides)
    return event(incident_id, sequence, **values)


def test_a_multi_cluster_incident_round_trips(store: Store):
    first = (member("c001", at(0), "opened", joined_at=at(30)), member("c010", at(12)))
    grown = (*first, member("c002", at(40), "document", family_id="f002", category="policy"))
    events = [family_event("inc-f", 0, first),
              family_event("inc-f", 1, grown, clusters_added=("c002",), cause=None),
              family_event("inc-f", 2, grown, event="resolved", status="resolved", resolved_at=at(90),
                           clusters_added=())]
    store.insert_incident_events(events)
    incident = store.get_incident("inc-f")
    assert [IncidentEvent.model_validate(row) for row in incident["events"]] == events
    latest = {k: v for k, v in incident.items() if k != "events"}
    assert IncidentEvent.model_validate(latest) == events[-1]
    assert store.list_incidents() == [latest]
    # JSON columns come back as the dicts the API serves, like the older JSON columns.
    assert latest["members"][2] == {**grown[2].to_json_dict()} and latest["cause"]["doc_id"] == "pricing-table"
    assert incident["events"][1]["cause"] is None
    assert (latest["level"], latest["clusters"], latest["family_ids"]) == ("family", ["c001", "c010", "c002"],
                                                                          ["f001", "f002"])
    # The parallel arrays SQL reads: each member's blast-radius start, at millisecond precision.
    assert store.query("SELECT member_clusters, member_since FROM incident_events FINAL "
                       "WHERE incident_id = 'inc-f' ORDER BY sequence") == [
        {"member_clusters": ["c001", "c010"], "member_since": [at(0), at(12)]},
        {"member_clusters": ["c001", "c010", "c002"], "member_since": [at(0), at(12), at(40)]},
        {"member_clusters": ["c001", "c010", "c002"], "member_since": [at(0), at(12), at(40)]}]


@pytest.fixture
def family_incidents(store: Store) -> Store:
    """inc-f: c001 since 0, c010 since 20, c002 since 50, resolved at 100. inc-s: a
    single-cluster event without members (policy, open since 10)."""
    members = (member("c001", at(0), "opened"), member("c010", at(20)), member("c002", at(50), "document"))
    store.insert_incident_events([
        family_event("inc-f", 0, members[:2], detected_at=at(25), session_ids=("s1", "s2")),
        family_event("inc-f", 1, members, clusters_added=("c002",), detected_at=at(25),
                     session_ids=("s1", "s2", "s4")),
        family_event("inc-f", 2, members, event="resolved", status="resolved", resolved_at=at(100),
                     clusters_added=(), detected_at=at(25), session_ids=("s1", "p2", "s2", "s3", "s4", "s7", "s9")),
        event("inc-s", 0, cluster_id="policy", category="policy", onset_at=at(10), detected_at=at(40),
              session_ids=("p1", "p2")),
    ])
    store.insert_interactions([
        interaction("f-0", session_id="s1", cluster_id="c001", timestamp=at(0)),
        interaction("f-1", session_id="s2", cluster_id="c010", timestamp=at(19)),  # before c010's since
        interaction("f-2", session_id="s2", cluster_id="c010", timestamp=at(20), faithfulness=0.1),
        interaction("f-3", session_id="s3", customer_id="c3", cluster_id="c002", timestamp=at(49)),  # too early
        interaction("f-4", session_id="s4", customer_id="c4", cluster_id="c002", timestamp=at(60)),
        interaction("f-5", session_id="s5", cluster_id="c002", timestamp=at(70), below_baseline=False),
        interaction("f-6", session_id="s6", cluster_id="c003", timestamp=at(30)),  # not a member
        interaction("f-7", session_id="s7", cluster_id="c001", timestamp=at(101)),  # after resolution
        interaction("f-8", session_id="s1", cluster_id="c001", timestamp=at(100)),
        # A reader of the cause in a cluster that did not join (inc-f's failing answers outnumber its
        # members'): its session is listed, its answer counts; one a day before the start does not.
        interaction("f-9", session_id="s9", customer_id="c9", cluster_id="c003", timestamp=at(60)),
        interaction("f-10", session_id="s9", customer_id="c9", cluster_id="c003", timestamp=at(-1441)),
        interaction("p-0", session_id="p1", cluster_id="policy", timestamp=at(9)),
        # p2 is in both incidents' session lists: each answer counts in the incident that held it.
        interaction("p-1", session_id="p2", cluster_id="policy", timestamp=at(10), incident_id="inc-s"),
        interaction("p-2", session_id="p2", cluster_id="c001", timestamp=at(11), incident_id="inc-f"),
    ])
    return store


def test_the_blast_radius_spans_every_member_from_its_own_since(family_incidents: Store):
    radius = family_incidents.incident_sessions("inc-f")
    assert [(r["session_id"], r["customer_id"], r["interactions"], r["example_interaction_id"]) for r in radius] == [
        ("s1", "c1", 2, "f-0"), ("p2", "c1", 1, "p-2"), ("s2", "c1", 1, "f-2"), ("s4", "c4", 1, "f-4"),
        ("s9", "c9", 1, "f-9")]
    assert (radius[0]["first_at"], radius[0]["last_at"]) == (at(0), at(100))
    # Paged like every session list.
    assert [r["session_id"] for r in family_incidents.incident_sessions("inc-f", limit=2)] == ["s1", "p2"]
    assert [r["session_id"] for r in family_incidents.incident_sessions(
        "inc-f", limit=2, after=session_key(radius[1]))] == ["s2", "s4"]
    # Without members: its one cluster since onset, as before 0004.
    assert [(r["session_id"], r["example_interaction_id"])
            for r in family_incidents.incident_sessions("inc-s")] == [("p2", "p-1")]


@pytest.mark.parametrize(("cluster_id", "expected"), [
    ("c001", ["inc-f"]),
    ("c010", ["inc-f"]),
    ("c002", ["inc-f"]),  # joined with the second event: the latest state has it
    ("policy", ["inc-s"]),
    ("c003", []),
])
def test_list_incidents_matches_any_member_cluster(family_incidents: Store, cluster_id: str, expected: list[str]):
    assert [row["incident_id"] for row in family_incidents.list_incidents(cluster_id=cluster_id)] == expected
    assert [row["incident_id"] for row in family_incidents.list_incidents(cluster_id=cluster_id, status="open")] == [
        i for i in expected if i == "inc-s"]


def cluster_in(family: str | None, cluster_id: str, **overrides: Any) -> ClusterInfo:
    values: dict[str, Any] = dict(family_id=family, family_label=None if family is None else f"{family} label",
                                  family_category=None if family is None else "pricing")
    values.update(overrides)
    return cluster(cluster_id, **values)


def test_clusters_carry_their_family_and_families_are_built_from_them(store: Store):
    store.upsert_clusters([cluster_in("f002", "c002", size=5, last_seen=at(3)),
                           cluster_in("f002", "c010", size=7, first_seen=at(-90), last_seen=at(8)),
                           cluster_in("f002", "c003", size=1),
                           cluster_in("f001", "c001", size=30, family_category="policy"),
                           cluster_in(None, "c004", size=2)])
    listed = store.list_clusters()
    assert [ClusterInfo.model_validate({k: v for k, v in row.items() if k != "updated_at"}) for row in listed] == [
        cluster_in("f001", "c001", size=30, family_category="policy"),
        cluster_in("f002", "c002", size=5, last_seen=at(3)), cluster_in("f002", "c003", size=1),
        cluster_in(None, "c004", size=2),
        cluster_in("f002", "c010", size=7, first_seen=at(-90), last_seen=at(8))]
    assert [row["cluster_id"] for row in store.list_clusters(family_id="f002")] == ["c002", "c003", "c010"]
    assert store.list_families() == [
        {"family_id": "f001", "label": "f001 label", "category": "policy", "aliases": [], "clusters": ["c001"],
         "n_clusters": 1, "size": 30, "first_seen": at(-60), "last_seen": None},
        {"family_id": "f002", "label": "f002 label", "category": "pricing", "aliases": [],
         "clusters": ["c002", "c003", "c010"], "n_clusters": 3, "size": 13, "first_seen": at(-90), "last_seen": at(8)}]
    # A refit moves c003 into f001 and relabels the family: the clusters' latest rows decide.
    store.upsert_clusters([cluster_in("f001", "c003", size=2, family_label="f001 relabelled")])
    assert [(f["family_id"], f["label"], f["clusters"], f["size"]) for f in store.list_families()] == [
        ("f001", "f001 relabelled", ["c001", "c003"], 32), ("f002", "f002 label", ["c002", "c010"], 12)]
    assert [f["family_id"] for f in store.list_families(family_id="f002")] == ["f002"]
    assert store.list_families(family_id="f999") == [] and store.list_clusters(family_id="f999") == []


def test_a_merged_familys_old_id_finds_the_family_it_merged_into(store: Store):
    # f010 merged into f002 (migration 0005): the surviving family lists it as an alias, and a
    # lookup by the old id (interactions scored before the merge carry it) finds f002.
    store.upsert_clusters([cluster_in("f002", "c002", size=5), cluster_in("f010", "c010", size=3)])
    assert [f["aliases"] for f in store.list_families()] == [[], []]
    store.upsert_clusters([cluster_in("f002", "c010", size=4, family_aliases=("f010",))])
    [merged] = store.list_families()
    assert (merged["family_id"], merged["clusters"], merged["aliases"]) == ("f002", ["c002", "c010"], ["f010"])
    assert [f["family_id"] for f in store.list_families(family_id="f010")] == ["f002"]
    assert [f["family_id"] for f in store.list_families(family_id="f002")] == ["f002"]
    assert store.list_clusters(family_id="f010") == []
    store.upsert_clusters([cluster_in("f001", "c001", size=1, family_aliases=("f011", "f007"))])
    assert {f["family_id"]: f["aliases"] for f in store.list_families()} == {"f001": ["f007", "f011"],
                                                                           "f002": ["f010"]}


def test_a_store_from_before_0004_reads_back_with_defaults(make_store):
    """Rows written by a release before 0004 (no family, incidents without members) read back as
    records with the defaults, and their blast radius is what it was."""
    old = event("inc-old", 0, onset_at=at(0), detected_at=at(5))
    answers = [interaction("o-1", session_id="s1", timestamp=at(1)),
               interaction("o-2", session_id="s2", timestamp=at(-1)),
               interaction("o-3", session_id="s3", timestamp=at(2), cluster_id="policy")]
    with make_store() as store:
        migrate_to(store, 3)
        store._insert("interactions_in", before_0004("interactions", interaction_columns(answers)))
        store._insert("clusters", before_0004("clusters", rows_to_columns([cluster("pricing").model_dump()])))
        insert_old_events(store, [old])
        assert store.migrate() == MIGRATION_NAMES[3:]
        assert [interaction_from_row(row) for row in store.query(
            "SELECT * FROM interactions ORDER BY interaction_id")] == [
            a.model_copy(update={"family_id": None}) for a in answers]
        [stored_cluster] = store.list_clusters()
        assert (stored_cluster["family_id"], stored_cluster["family_label"], stored_cluster["family_category"]) == (
            None, None, None)
        assert store.list_families() == []
        incident = store.get_incident("inc-old")
        assert IncidentEvent.model_validate(incident["events"][0]) == old
        assert (incident["level"], incident["clusters"], incident["members"], incident["cause"]) == (
            "cluster", [], [], None)
        assert [(r["session_id"], r["interactions"]) for r in store.incident_sessions("inc-old")] == [("s1", 1)]
        assert [i["incident_id"] for i in store.list_incidents(cluster_id="pricing")] == ["inc-old"]
        # New rows go through the recreated views: family_id reaches interactions, the incidents
        # view carries the new columns.
        store.insert_interactions([interaction("n-1", family_id="f009", timestamp=at(3))])
        assert store.query("SELECT family_id FROM interactions WHERE interaction_id = 'n-1'") == [{"family_id": "f009"}]
        store.insert_incident_events([family_event("inc-new", 0, (member("c001", at(0)),))])
        assert store.list_incidents(cluster_id="c001")[0]["members"][0]["cluster_id"] == "c001"


def test_the_0004_migration_can_be_run_again_after_stopping_half_way(make_store):
    [(_, _, sql)] = [m for m in migrations() if m[0] == 4]
    steps = list(statements(sql))
    halfway = next(k for k, text in enumerate(steps) if "DROP VIEW IF EXISTS incidents" in text) + 2
    answers = scored_stream(60)
    with make_store() as store:
        migrate_to(store, 3)
        store._insert("interactions_in", before_0004("interactions", interaction_columns(answers)))
        insert_old_events(store, [event("inc-old", 0)])
        for statement in steps[:halfway]:
            store.command(statement)
        assert store.migrate() == MIGRATION_NAMES[3:]
        for statement in steps:  # and once more from the top
            store.command(statement)
        store.insert_interactions(answers + [interaction("n-1", timestamp=at(3))])
        assert store.counts()["interactions"] == 61 and store.counts()["incidents"] == 1
        assert IncidentEvent.model_validate(store.list_incidents()[0]) == event("inc-old", 0)
        assert sum(r["interactions"] for r in store.rollups(at(-10), at(60))) == 61


# ---- injection --------------------------------------------------------------------------


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injection_strings_match_nothing_and_drop_nothing(incidents: Store, evil: str):
    incidents.insert_interactions([interaction("i1")])
    incidents.upsert_clusters([cluster("pricing")])
    before = incidents.counts()
    assert incidents.list_incidents(status=evil) == []
    assert incidents.list_incidents(cluster_id=evil) == []
    assert incidents.list_incidents(category=evil) == []
    assert incidents.get_incident(evil) is None
    assert incidents.incident_sessions(evil) == []
    assert incidents.sessions(evil, since=at(-10)) == []
    assert incidents.sessions(evil, since=at(-10), below_baseline=False) == []
    # The cursor's session id is bound too: "after (t, evil)" orders evil against "s1", nothing more.
    assert [r["session_id"] for r in incidents.sessions("pricing", since=at(-10), after=(at(-10), evil))] == ["s1"]
    assert incidents.rollups(at(-10), at(10), cluster_id=evil) == []
    assert len(incidents.rollups(at(-10), at(10))) == 1  # the real row is still there
    assert incidents.run_recipe("sessions_hit_in_cluster", {"cluster_id": evil, "as_of": at(60)}) == []
    # Text for a typed parameter (what `faithwatch recipes run -p` passes) is parsed, never spliced.
    for recipe, names in (("sessions_hit_in_cluster", ("as_of",)), ("incidents_by_category_this_quarter", ("as_of",)),
                          ("faithfulness_by_cluster_by_day", ("since", "until")),
                          ("confident_wrong_rate_by_cluster", ("since", "until"))):
        for name in names:
            values = {"cluster_id": "pricing", "as_of": at(60), "since": at(-10), "until": at(60), name: evil}
            with pytest.raises(StoreError):
                incidents.run_recipe(recipe, values)
    assert incidents.counts() == before
    assert [r["cluster_id"] for r in incidents.rollups(at(-10), at(10))] == ["pricing"]


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_categories=["Cs"])))
def test_any_text_binds_as_data(store: Store, text: str):
    assert store.query("SELECT {text:String} AS text", {"text": text}) == [{"text": text}]


# ---- the process and the session --------------------------------------------------------


def test_one_path_per_process(tmp_path: Path):
    with ChdbStore(tmp_path / "first"):
        with pytest.raises(StoreError, match="one path per"):
            ChdbStore(tmp_path / "second")
    with ChdbStore(tmp_path / "second") as second:
        assert second.migrate() == MIGRATION_NAMES


def test_errors_are_store_errors(tmp_path: Path):
    store = ChdbStore(tmp_path / "store")
    with pytest.raises(StoreError):
        store.query("SELECT * FROM no_such_table")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.counts()
    with pytest.raises(ValueError):
        ChdbStore(tmp_path / "store", database="x; DROP")
    with pytest.raises(ValueError):
        ChdbStore(Path(f"{tmp_path}/store?readonly=1"))


def test_errors_are_store_errors_on_both_backends(make_store):
    store = make_store()
    with pytest.raises(StoreError):
        store.query("SELECT * FROM no_such_table")
    with pytest.raises(StoreError):
        store.command("CREATE TABLE broken (")
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.counts()


def test_a_wrong_password_is_a_store_error(clickhouse_server):
    from pydantic import SecretStr

    from services.store.clickhouse_store import ClickHouseStore

    with pytest.raises(StoreError, match="Authentication failed"):
        ClickHouseStore(clickhouse_server.url, password=SecretStr("wrong"))
    with pytest.raises(ValueError):
        ClickHouseStore("ftp://127.0.0.1:1")
    with pytest.raises(ValueError):
        ClickHouseStore(clickhouse_server.url, database="x; DROP")


def test_concurrent_threads_share_one_store(store: Store):
    """The API calls the store from several threads. On the server backend each thread gets its
    own client (and HTTP session): the test server, like ClickHouse, refuses a second concurrent
    query in one session, so a shared client would fail here."""
    store.insert_interactions([interaction(f"i{n}", timestamp=at(n)) for n in range(50)])
    errors: list[BaseException] = []
    results: list[int] = []

    def work(worker: int) -> None:
        try:
            for _ in range(15):
                [row] = store.query("SELECT count() AS n, sleep(0.001) AS s FROM interactions FINAL "
                                    "WHERE interaction_id != {w:String}", {"w": str(worker)})
                results.append(row["n"])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results == [50] * 90


# ---- rollups ----------------------------------------------------------------------------


def scored_stream(n: int, seed: int = 3) -> list[ScoredInteraction]:
    """A deterministic stream of scored answers over 3 clusters and ~40 minutes."""
    import random

    rng = random.Random(seed)
    rows = []
    for k in range(n):
        faithfulness = None if k % 11 == 0 else round(rng.random(), 3)
        below = faithfulness is not None and faithfulness < 0.3
        confidence = None if k % 13 == 0 else round(rng.random(), 3)
        rows.append(interaction(
            f"s-{k}", session_id=f"sess-{k % 17}", customer_id=f"cust-{k % 9}",
            timestamp=at(rng.random() * 40), cluster_id=("pricing", "policy", "refunds")[k % 3],
            faithfulness=faithfulness, confidence=confidence, below_baseline=below,
            confident_wrong=below and confidence is not None and confidence >= 0.8))
    return rows


def rollup_snapshot(store: Store) -> dict:
    return {step: store.rollups(at(-10), at(60), step_minutes=step) for step in (1, 15, 1440)}


def test_rollups_match_the_raw_rows(store: Store):
    rows = scored_stream(300)
    store.insert_interactions(rows)
    by_minute = store.rollups(at(-10), at(60))
    assert sum(r["interactions"] for r in by_minute) == 300
    assert sum(r["below_baseline"] for r in by_minute) == sum(r.below_baseline for r in rows)
    assert sum(r["confident_wrong"] for r in by_minute) == sum(r.confident_wrong for r in rows)
    [pricing] = store.rollups(at(-10), at(60), cluster_id="pricing", step_minutes=1440)
    mine = sorted(r.faithfulness for r in rows if r.cluster_id == "pricing" and r.faithfulness is not None)
    assert pricing["interactions"] == sum(r.cluster_id == "pricing" for r in rows)
    # Quantiles are over scores rounded to 0.01 (migration 0003): within 0.005 of the exact ones.
    assert pricing["faithfulness_p50"] == pytest.approx(
        (mine[len(mine) // 2 - 1] + mine[len(mine) // 2]) / 2 if len(mine) % 2 == 0 else mine[len(mine) // 2],
        abs=0.005 + 1e-9)
    assert pricing["faithfulness_p05"] <= pricing["faithfulness_p25"] <= pricing["faithfulness_p50"] \
        <= pricing["faithfulness_p75"] <= pricing["faithfulness_p95"]
    # A minute whose answers all lack a score has no quantiles, not NaN.
    store.insert_interactions([interaction("unscored", timestamp=at(-5), faithfulness=None, confidence=None)])
    [unscored] = store.rollups(at(-5), at(-4))
    assert (unscored["interactions"], unscored["faithfulness_p50"], unscored["confidence_p95"]) == (1, None, None)
    assert store.rollups(at(100), at(200)) == []
    with pytest.raises(ValueError):
        store.rollups(at(0), at(1), step_minutes=0)


def test_replaying_a_file_in_other_batch_sizes_leaves_rollups_and_counts_unchanged(store: Store, tmp_path: Path):
    """Retry, replay and restart: the same file inserted again, in batches of other sizes and
    another order, changes neither the counts nor any rollup value, before or after merges."""
    stream = tmp_path / "scored.jsonl"
    stream.write_text("".join(row.model_dump_json() + "\n" for row in scored_stream(400)), encoding="utf-8")

    def replay(batch_size: int, reverse: bool = False) -> None:
        rows = [ScoredInteraction.model_validate_json(line) for line in stream.read_text().splitlines()]
        rows = rows[::-1] if reverse else rows
        for start in range(0, len(rows), batch_size):
            store.insert_interactions(rows[start:start + batch_size])

    replay(400)
    expected = rollup_snapshot(store)
    counts = store.counts()
    events = [event("inc-r", 0), event("inc-r", 1)]
    store.insert_incident_events(events)
    incidents_before = (store.counts()["incidents"], store.list_incidents())
    for batch_size, reverse in ((1, False), (7, True), (64, False), (400, True)):
        replay(batch_size, reverse)
        store.insert_incident_events(events[::-1])
        assert rollup_snapshot(store) == expected, f"batch size {batch_size}"
        assert {k: v for k, v in store.counts().items() if k not in ("incident_events", "incidents")} == {
            k: v for k, v in counts.items() if k not in ("incident_events", "incidents")}
        assert (store.counts()["incidents"], store.list_incidents()) == incidents_before
    for table in ROLLUP_TIERS:
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    store.command("OPTIMIZE TABLE interactions FINAL")
    assert rollup_snapshot(store) == expected
    assert store.counts()["interactions"] == 400


def interpolated(values: list[float], q: float) -> float:
    ordered = sorted(values)
    h = (len(ordered) - 1) * q
    low = int(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


@pytest.mark.parametrize(("since", "until"), [
    (at(-600.5), at(60 * 50 + 7.25)),  # odd minutes and seconds at both ends: all three tiers
    (at(-600), at(-600)),  # empty
    (at(60 * 14), at(60 * 38)),  # whole hours, whole day in between
    (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 5, tzinfo=UTC)),  # whole days only
])
def test_rollups_tile_days_hours_and_minutes_exactly(store: Store, since: datetime, until: datetime):
    """Whatever the range, reading whole days, whole hours and edge minutes from three tiers
    gives the counts and quantiles of the raw rows in it (a minute is in when it starts at or
    after since's minute and before until), for every step."""
    import random

    rng = random.Random(7)
    rows = [interaction(f"t-{k}", timestamp=at(rng.uniform(-60 * 12, 60 * 60)),
                        cluster_id=("pricing", "policy")[k % 2], faithfulness=round(rng.random(), 3),
                        below_baseline=k % 5 == 0, confident_wrong=k % 10 == 0) for k in range(1500)]
    store.insert_interactions(rows)
    first_minute = since.replace(second=0, microsecond=0)
    inside = [r for r in rows if first_minute <= r.timestamp.replace(second=0, microsecond=0) < until]
    for step in (1, 15, 60, 120, 1440):
        expected: dict[tuple[str, datetime], list[ScoredInteraction]] = {}
        for r in inside:
            minutes = int(r.timestamp.timestamp() // 60)
            bucket = datetime.fromtimestamp(minutes // step * step * 60, UTC)
            expected.setdefault((r.cluster_id, bucket), []).append(r)
        got = store.rollups(since, until, step_minutes=step)
        assert [(g["cluster_id"], g["bucket"]) for g in got] == sorted(expected), step
        for g in got:
            members = expected[(g["cluster_id"], g["bucket"])]
            assert (g["interactions"], g["below_baseline"], g["confident_wrong"]) == (
                len(members), sum(r.below_baseline for r in members), sum(r.confident_wrong for r in members))
            scores = [r.faithfulness for r in members]
            # Over scores rounded to 0.01: each order statistic moves by at most 0.005.
            assert (g["faithfulness_p05"], g["faithfulness_p50"], g["faithfulness_p95"]) == (
                pytest.approx(interpolated(scores, 0.05), abs=0.005 + 1e-9),
                pytest.approx(interpolated(scores, 0.5), abs=0.005 + 1e-9),
                pytest.approx(interpolated(scores, 0.95), abs=0.005 + 1e-9))
    days = store.run_recipe("faithfulness_by_cluster_by_day", {"since": since, "until": until})
    assert [(str(d["day"]), d["cluster_id"], d["interactions"]) for d in days] == [
        (str(g["bucket"].date()), g["cluster_id"], g["interactions"])
        for g in sorted(store.rollups(since, until, step_minutes=1440), key=lambda g: (g["bucket"], g["cluster_id"]))]
    rates = store.run_recipe("confident_wrong_rate_by_cluster", {"since": since, "until": until})
    assert sorted((r["cluster_id"], r["interactions"], r["confident_wrong"]) for r in rates) == sorted(
        (c, sum(r.cluster_id == c for r in inside), sum(r.cluster_id == c and r.confident_wrong for r in inside))
        for c in {r.cluster_id for r in inside})


def migrate_to(store: Store, last_version: int) -> None:
    """Apply the migrations up to ``last_version`` only: a store as an older release left it."""
    for version, name, sql in migrations():
        if version <= last_version:
            for statement in statements(sql):
                store.command(statement)
            store.command("INSERT INTO schema_migrations (version, name, applied_at) "
                          "SELECT {v:UInt32}, {n:String}, now64(3)", {"v": version, "n": name})


# The columns each migration after 0003 added: a release before it wrote none of them.
ADDED_IN_0004 = {"interactions": {"family_id"},
                 "clusters": {"family_id", "family_label", "family_category"},
                 "incident_events": {"level", "clusters", "clusters_added", "family_ids", "members", "cause",
                                     "member_clusters", "member_since"}}


ADDED_IN_0005 = {"clusters": {"family_aliases"}}


def before_0004(table: str, columns: dict[str, Any]) -> dict[str, Any]:
    added = ADDED_IN_0004[table] | ADDED_IN_0005.get(table, set())
    return {name: values for name, values in columns.items() if name not in added}


def insert_directly(store: Store, rows: list[ScoredInteraction]) -> None:
    """What releases before 0003 did: write to interactions itself (without 0004's columns)."""
    store._insert("interactions", before_0004("interactions", interaction_columns(rows)))


def insert_old_events(store: Store, rows: list[IncidentEvent]) -> None:
    """What releases before 0004 wrote to incident_events."""
    store._insert("incident_events", before_0004("incident_events",
                                                 rows_to_columns([incident_event_row(row) for row in rows])))


def test_the_rollup_migrations_backfill_what_interactions_already_held(make_store):
    with make_store() as store:
        migrate_to(store, 1)
        insert_directly(store, scored_stream(120))
        assert store.migrate() == MIGRATION_NAMES[1:]
        assert sum(r["interactions"] for r in store.rollups(at(-10), at(60))) == 120


def test_a_store_filled_before_0003_answers_the_same_after_it(make_store):
    """A store created and filled with 0001+0002 (rows written straight to interactions, a
    replayed batch among them), then migrated: the tiers are back-filled from the deduplicated
    rows, the recipes and reads answer as on a fresh store, and re-sending the old ids through
    the new ingest path changes nothing."""
    rows = scored_stream(300)
    listed = sorted({r.session_id for r in rows if r.below_baseline and r.cluster_id == "pricing"})[::2]
    with make_store() as store:
        migrate_to(store, 2)
        insert_directly(store, rows)
        insert_directly(store, rows[:100])  # a replay before 0003: collapsed by FINAL
        insert_old_events(store, [event("inc-m", 0, onset_at=at(0), detected_at=at(5), session_ids=tuple(listed))])
        assert store.migrate() == MIGRATION_NAMES[2:]
        migrated = (rollup_snapshot(store), store.run_recipe("confident_wrong_rate_by_cluster",
                                                             {"since": at(-10), "until": at(60)}),
                    store.incident_sessions("inc-m"), store.counts()["interactions"])
        store.insert_interactions(rows[::-1])
        assert (rollup_snapshot(store), store.run_recipe("confident_wrong_rate_by_cluster",
                                                         {"since": at(-10), "until": at(60)}),
                store.incident_sessions("inc-m"), store.counts()["interactions"]) == migrated
        # The old per-minute sets are no longer written.
        assert store.query("SELECT count() AS n FROM system.tables WHERE database = currentDatabase() "
                           "AND name = 'interaction_minutes_mv'") == [{"n": 0}]
    assert migrated[3] == 300
    assert sum(r["interactions"] for r in migrated[0][1440]) == 300
    assert sum(r["below_baseline"] for r in migrated[0][1]) == sum(r.below_baseline for r in rows)
    assert [r["cluster_id"] for r in migrated[1]] and sum(r["interactions"] for r in migrated[1]) == 300
    # Its listed sessions' failing answers in its cluster since onset (stored without members: no others).
    assert [r["session_id"] for r in migrated[2]] != [] and {r["session_id"] for r in migrated[2]} == set(listed)
    assert sum(r["interactions"] for r in migrated[2]) == sum(
        r.below_baseline and r.session_id in listed and r.cluster_id == "pricing" and r.timestamp >= at(0)
        for r in rows)


def test_the_0003_migration_can_be_run_again_after_stopping_half_way(make_store):
    """ClickHouse DDL is not transactional: re-running 0003 from the top (as after a crash)
    leaves the tiers equal to one clean back-fill, not doubled."""
    rows = scored_stream(200)
    with make_store() as store:
        migrate_to(store, 2)
        insert_directly(store, rows)
        assert store.migrate() == MIGRATION_NAMES[2:]
        once = rollup_snapshot(store)
        [(_, _, sql)] = [m for m in migrations() if m[0] == 3]
        for statement in statements(sql):
            store.command(statement)
        assert rollup_snapshot(store) == once
        store.insert_interactions(rows)
        assert rollup_snapshot(store) == once


# ---- retention --------------------------------------------------------------------------


def test_ttl_is_applied_only_when_it_changes_and_expires_old_rows(store: Store):
    rollups = ("interaction_minutes", *ROLLUP_TIERS)
    assert store.ttl_days() == dict.fromkeys(("interactions", *rollups))
    assert store.apply_ttl(30, 400) == ["interactions: TTL 30 days"] + [f"{t}: TTL 400 days" for t in rollups]
    assert store.apply_ttl(30, 400) == []
    assert store.ttl_days() == {"interactions": 30, **dict.fromkeys(rollups, 400)}
    old = datetime(2020, 1, 1, tzinfo=UTC)
    store.insert_interactions([interaction("old", timestamp=old), interaction("new", timestamp=datetime.now(UTC))])
    store.command("OPTIMIZE TABLE interactions FINAL")
    assert [r["interaction_id"] for r in store.query("SELECT interaction_id FROM interactions")] == ["new"]
    # The rollup keeps 400 days: the old minute is gone from it too (2020 is older), the new one stays.
    for table in rollups:
        store.command(f"OPTIMIZE TABLE {table} FINAL")
    assert store.rollups(old, old + timedelta(minutes=1)) == []
    assert store.rollups(old, old + timedelta(days=1), step_minutes=1440) == []
    assert len(store.rollups(datetime.now(UTC) - timedelta(days=2), datetime.now(UTC) + timedelta(days=2),
                             step_minutes=1440)) == 1
    assert store.apply_ttl(None, None) == ["interactions: TTL none"] + [f"{t}: TTL none" for t in rollups]
    assert store.ttl_days() == dict.fromkeys(("interactions", *rollups))
    with pytest.raises(ValueError):
        store.apply_ttl(0, None)


def test_faithwatch_migrate_applies_migrations_and_ttl_once(backend: str, tmp_path: Path, request):
    from click.testing import CliRunner

    from services.cli import main

    env = {"FAITHWATCH_STORE__TTL_DAYS": "90", "FAITHWATCH_DATA_DIR": str(tmp_path / "data")}
    database = f"t_{uuid.uuid4().hex[:12]}"
    if backend == "clickhouse":
        server = request.getfixturevalue("clickhouse_server")
        env.update(FAITHWATCH_STORE__BACKEND="clickhouse", FAITHWATCH_STORE__URL=server.url,
                   FAITHWATCH_STORE__PASSWORD=server.password.get_secret_value(),
                   FAITHWATCH_STORE__DATABASE=database)
    runner = CliRunner()
    first = runner.invoke(main, ["migrate"], env=env)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [f"applied {name}" for name in MIGRATION_NAMES] + [
        "retention interactions: TTL 90 days"]
    again = runner.invoke(main, ["migrate"], env=env)
    assert (again.exit_code, again.output) == (0, "schema is current\n")
    listed = runner.invoke(main, ["recipes", "list"], env=env)
    assert "sessions_hit_in_cluster(cluster_id:String, as_of:DateTime64(3, 'UTC'))" in listed.output
    ran = runner.invoke(main, ["recipes", "run", "sessions_hit_in_cluster", "-p", "cluster_id=pricing",
                               "-p", "as_of=2026-11-02 12:00:00", "--format", "json"], env=env)
    assert (ran.exit_code, ran.output) == (0, "[]\n")
    missing = runner.invoke(main, ["recipes", "run", "sessions_hit_in_cluster"], env=env)
    assert missing.exit_code == 2 and "needs parameters ['as_of', 'cluster_id']" in missing.output
    if backend == "clickhouse":
        with server.store(database) as cleanup:
            cleanup.command(f"DROP DATABASE {database}")


# ---- analyst recipes --------------------------------------------------------------------


@pytest.fixture
def analyst_data(incidents: Store) -> Store:
    incidents.upsert_clusters([cluster("pricing", label="pricing: fees"),
                               cluster("policy", label="policy: returns", category="policy")])
    incidents.insert_interactions([
        interaction("h1", session_id="s1", customer_id="c1", timestamp=at(60 * 24), faithfulness=0.2),
        interaction("h2", session_id="s1", customer_id="c1", timestamp=at(60 * 30), faithfulness=0.1,
                    confident_wrong=False),
        interaction("h3", session_id="s2", customer_id="c2", timestamp=at(60 * 40)),
        interaction("too-old", session_id="s3", timestamp=at(60 * 23)),  # 49 h before as_of
        interaction("passing", session_id="s4", timestamp=at(60 * 40), below_baseline=False,
                    confident_wrong=False, faithfulness=0.95),
        interaction("p1", session_id="s5", cluster_id="policy", category="policy", timestamp=at(60 * 40),
                    below_baseline=False, confident_wrong=False, faithfulness=0.9, confidence=0.5),
    ])
    return incidents


def test_recipe_sessions_hit_in_cluster_in_the_last_48h(analyst_data: Store):
    rows = analyst_data.run_recipe("sessions_hit_in_cluster", {"cluster_id": "pricing", "as_of": at(60 * 72)})
    assert [(r["session_id"], r["customer_id"], r["failing_answers"], r["confident_wrong"],
             r["worst_interaction_id"]) for r in rows] == [("s2", "c2", 1, 1, "h3"), ("s1", "c1", 2, 1, "h2")]
    assert analyst_data.run_recipe("sessions_hit_in_cluster", {"cluster_id": "policy", "as_of": at(60 * 72)}) == []


def test_recipe_incidents_by_category_this_quarter(analyst_data: Store):
    analyst_data.insert_incident_events([  # last quarter: not counted
        event("old", 0, onset_at=datetime(2026, 9, 30, tzinfo=UTC), detected_at=datetime(2026, 9, 30, tzinfo=UTC))])
    rows = analyst_data.run_recipe("incidents_by_category_this_quarter", {"as_of": at(60 * 24)})
    assert [(r["category"], r["incidents"], r["open"], r["resolved"], r["affected_sessions"]) for r in rows] == [
        ("pricing", 2, 1, 1, 4), ("policy", 1, 1, 0, 2)]


def test_recipe_faithfulness_by_cluster_by_day(analyst_data: Store):
    rows = analyst_data.run_recipe("faithfulness_by_cluster_by_day", {"since": at(0), "until": at(60 * 72)})
    assert [(str(r["day"]), r["cluster_id"], r["cluster_label"], r["interactions"], r["below_baseline"])
            for r in rows] == [
        ("2026-11-03", "pricing", "pricing: fees", 3, 3),  # h1 and h2, and too-old at 09:00
        ("2026-11-04", "policy", "policy: returns", 1, 0),
        ("2026-11-04", "pricing", "pricing: fees", 2, 1)]
    assert (rows[0]["faithfulness_p05"], rows[0]["faithfulness_p50"]) == (pytest.approx(0.11), pytest.approx(0.2))
    assert rows[1]["faithfulness_p50"] == pytest.approx(0.9) and rows[1]["confidence_p50"] == pytest.approx(0.5)


def test_recipe_confident_wrong_rate_by_cluster(analyst_data: Store):
    rows = analyst_data.run_recipe("confident_wrong_rate_by_cluster", {"since": at(0), "until": at(60 * 72)})
    assert [(r["cluster_id"], r["category"], r["interactions"], r["confident_wrong"]) for r in rows] == [
        ("pricing", "pricing", 5, 3), ("policy", "policy", 1, 0)]
    assert rows[0]["confident_wrong_rate"] == pytest.approx(0.6)


def test_recipes_are_known_and_each_is_tested():
    from services.store.base import recipe_names

    tested = {name.removeprefix("test_recipe_") for name in globals() if name.startswith("test_recipe_")}
    assert set(recipe_names()) == {"sessions_hit_in_cluster", "incidents_by_category_this_quarter",
                                   "faithfulness_by_cluster_by_day", "confident_wrong_rate_by_cluster"}
    assert {name.removesuffix("_in_the_last_48h") for name in tested} >= {
        "sessions_hit_in_cluster", "incidents_by_category_this_quarter", "faithfulness_by_cluster_by_day",
        "confident_wrong_rate_by_cluster"}
