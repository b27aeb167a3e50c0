"""The chDB store against the real engine.

chDB 4.4 opens ONE data path per process at a time: a session on another path fails until
every session on the first is closed (checked here by ``test_one_path_per_process``). So every
test opens its own store under ``tmp_path`` and closes it (the fixture is a context manager)
before the next test opens another; a test that leaked an open store would fail the rest.

Set ``FAITHWATCH_UPDATE_SNAPSHOTS=1`` to rewrite ``snapshots/schema.sql`` from the migrations.
"""

from __future__ import annotations

import os
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
    ScoredInteraction,
    SharedDocument,
    SuggestedGate,
)
from services.store.base import interaction_from_row, migrations, statements
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
        incident_id=None, intent_hint="pricing", model="gpt-x", action_name="refund",
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


@pytest.fixture
def store(tmp_path: Path):
    with ChdbStore(tmp_path / "store") as opened:
        opened.migrate()
        yield opened


def schema_ddl(store: ChdbStore) -> str:
    tables = store.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                         "ORDER BY name")
    ddl = []
    for table in tables:
        [row] = store.query("SHOW CREATE TABLE {table:Identifier}", {"table": table["name"]})
        ddl.append(row["statement"].replace(f"{store.database}.", "").strip() + ";\n")
    return "\n".join(ddl)


# ---- migrations -------------------------------------------------------------------------


def test_migrate_applies_0001_once_and_matches_the_schema_snapshot(tmp_path: Path):
    with ChdbStore(tmp_path / "store", database="fw_test") as store:
        assert store.migrate() == ["0001_initial"]
        assert store.migrate() == []
        ddl = schema_ddl(store)
        assert store.query("SELECT version, name FROM schema_migrations FINAL") == [
            {"version": 1, "name": "0001_initial"}]
    with ChdbStore(tmp_path / "store", database="fw_test") as reopened:
        assert reopened.migrate() == []
    if os.environ.get("FAITHWATCH_UPDATE_SNAPSHOTS") == "1":
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


def test_interactions_round_trip_and_duplicates_count_once(store: ChdbStore):
    rows = [interaction("i1"),
            interaction("i2", session_id=None, customer_id=None, response=None,
                        faithfulness=None, faithfulness_source="none", confidence=None,
                        below_baseline=False, baseline_low=None, confident_wrong=False,
                        stale_context=False, contexts=(), intent_hint=None, model=None,
                        action_name=None, action_reversible=None, metadata=None,
                        timestamp=datetime(2026, 11, 2, 11, 30, 1, 123000, tzinfo=UTC))]
    store.insert_interactions(rows)
    store.insert_interactions(rows)
    store.insert_interactions([rows[0]])
    stored = store.query("SELECT * FROM interactions FINAL ORDER BY interaction_id")
    assert [interaction_from_row(row) for row in stored] == rows
    assert store.counts()["interactions"] == 2


def test_a_large_batch_is_one_insert(store: ChdbStore):
    rows = [interaction(f"i{n}", session_id=f"s{n % 7}", timestamp=at(n / 60))
            for n in range(12_000)]
    store.insert_interactions(rows)
    assert store.counts()["interactions"] == 12_000
    assert store.query("SELECT count() AS parts FROM system.parts WHERE active "
                       "AND database = currentDatabase() AND table = 'interactions'") == [
        {"parts": 1}]


def test_clusters_upsert_keeps_the_latest(store: ChdbStore):
    store.upsert_clusters([cluster("pricing"), cluster("policy", category="policy")])
    store.upsert_clusters([cluster("pricing", label="pricing: fees", size=50, last_seen=at(9))])
    listed = store.list_clusters()
    assert [ClusterInfo.model_validate({k: v for k, v in row.items() if k != "updated_at"})
            for row in listed] == [
        cluster("policy", category="policy"),
        cluster("pricing", label="pricing: fees", size=50, last_seen=at(9))]
    assert all(row["updated_at"].tzinfo is UTC for row in listed)
    assert store.counts()["clusters"] == 2


def test_incident_events_round_trip_and_a_replay_is_stored_once(store: ChdbStore):
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


def test_dead_letters_round_trip_and_a_retried_batch_is_stored_once(store: ChdbStore):
    rows = [dead_letter("interactions.jsonl:3"), dead_letter("interactions.jsonl:9")]
    store.insert_dead_letters(rows)
    store.insert_dead_letters(rows)
    stored = store.query("SELECT * FROM dead_letters FINAL ORDER BY position")
    assert [DeadLetter.model_validate(row) for row in stored] == rows
    assert store.counts()["dead_letters"] == 2


def test_empty_inserts_do_nothing(store: ChdbStore):
    store.insert_interactions([])
    store.upsert_clusters([])
    store.insert_incident_events([])
    store.insert_dead_letters([])
    assert store.counts() == {"interactions": 0, "clusters": 0, "incident_events": 0,
                              "incidents": 0, "dead_letters": 0, "schema_migrations": 1}


# ---- incidents --------------------------------------------------------------------------


@pytest.fixture
def incidents(store: ChdbStore) -> ChdbStore:
    store.insert_incident_events([
        # pricing: opened at 0, resolved at 120
        event("a", 0, onset_at=at(0), detected_at=at(10)),
        event("a", 1, event="resolved", status="resolved", onset_at=at(0), detected_at=at(10),
              resolved_at=at(120)),
        # policy: open since 200
        event("b", 0, cluster_id="policy", category="policy", severity="warning",
              onset_at=at(200), detected_at=at(210)),
        # pricing again: open since 300
        event("c", 0, onset_at=at(300), detected_at=at(310)),
    ])
    return store


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
def test_list_incidents_filters(incidents: ChdbStore, filters: dict, expected: list[str]):
    assert [row["incident_id"] for row in incidents.list_incidents(**filters)] == expected


def test_list_incidents_refuses_naive_datetimes_and_negative_limits(incidents: ChdbStore):
    with pytest.raises(ValueError, match="naive"):
        incidents.list_incidents(since=datetime(2026, 11, 2, 10))  # noqa: DTZ001
    with pytest.raises(ValueError, match="limit"):
        incidents.list_incidents(limit=-1)


def test_incident_sessions_is_the_blast_radius(incidents: ChdbStore):
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


def test_sessions_for_an_analyst(incidents: ChdbStore):
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


# ---- injection --------------------------------------------------------------------------


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injection_strings_match_nothing_and_drop_nothing(incidents: ChdbStore, evil: str):
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
    assert incidents.counts() == before


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(st.characters(blacklist_categories=["Cs"])))
def test_any_text_binds_as_data(store: ChdbStore, text: str):
    assert store.query("SELECT {text:String} AS text", {"text": text}) == [{"text": text}]


# ---- the process and the session --------------------------------------------------------


def test_one_path_per_process(tmp_path: Path):
    with ChdbStore(tmp_path / "first"):
        with pytest.raises(StoreError, match="one path per"):
            ChdbStore(tmp_path / "second")
    with ChdbStore(tmp_path / "second") as second:
        assert second.migrate() == ["0001_initial"]


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
