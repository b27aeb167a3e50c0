"""Dead letters stored once across re-runs, and ``store check [--repair]``: the hour and day
rollups against ``interactions``, on both backends (the chDB store and the ClickHouse test server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipelines.interaction import DeadLetter
from pipelines.records import ScoredInteraction
from services.store.base import Store
from services.store.consistency import repair_rollups, rollup_drift

T0 = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)


def scored(k: int, cluster: str) -> ScoredInteraction:
    return ScoredInteraction(
        interaction_id=f"c{k}", session_id=f"s{k % 5}", customer_id="c", timestamp=T0 + timedelta(minutes=7 * k),
        query="q", response="a", cluster_id=cluster, cluster_label=cluster, category="pricing",
        faithfulness=(k % 10) / 10, faithfulness_source="producer", confidence=0.9, below_baseline=k % 3 == 0,
        baseline_low=0.5, confident_wrong=False, stale_context=False)


def letter(position: str, raw: str, hour: int) -> DeadLetter:
    return DeadLetter(received_at=T0 + timedelta(hours=hour), source="replay.jsonl", position=position,
                      interaction_id=None, field="<record>", reason="malformed JSON", raw=raw)


def test_the_same_dead_letter_from_a_second_run_is_stored_once(store: Store):
    first = [letter("line 3", "{broken", 0), letter("line 9", "[1]", 0)]
    store.insert_dead_letters(first)
    # The same file again, an hour later: line 3 unchanged, line 9 now holds another bad record.
    store.insert_dead_letters([letter("line 3", "{broken", 1), letter("line 9", "[2]", 1),
                               letter("line 3", "{broken", 1)])
    rows = store.query("SELECT position, raw FROM dead_letters ORDER BY position, raw")
    assert [(r["position"], r["raw"]) for r in rows] == [("line 3", "{broken"), ("line 9", "[1]"), ("line 9", "[2]")]
    other = DeadLetter(**{**first[0].model_dump(), "source": "other.jsonl"})
    store.insert_dead_letters([other])
    assert store.counts()["dead_letters"] == 4


def tiers(store: Store) -> dict:
    return {t: store.query(f"SELECT sum(interactions) AS n FROM {t}")[0]["n"]
            for t in ("rollup_minutes", "rollup_hours", "rollup_days")}


def test_check_finds_drifted_days_and_repair_rebuilds_them(store: Store):
    rows = [scored(k, "pricing" if k % 2 else "policy") for k in range(600)]  # 22:00 + 70 h: four UTC days
    store.insert_interactions(rows)
    assert rollup_drift(store) == []
    before = store.rollups(T0, T0 + timedelta(days=4), step_minutes=60)
    # What a crash between the inserts leaves: rollup rows missing for some interactions (and, for
    # good measure, a day counted twice).
    store.command("ALTER TABLE rollup_hours DELETE WHERE cluster_id = 'pricing' AND toDayOfMonth(bucket) = 3 "
                  "AND toHour(bucket) < 5 SETTINGS mutations_sync = 2")
    store.command("ALTER TABLE rollup_days DELETE WHERE cluster_id = 'pricing' AND toDayOfMonth(bucket) = 3 "
                  "SETTINGS mutations_sync = 2")
    store.command("INSERT INTO rollup_days SELECT * FROM rollup_days WHERE cluster_id = 'policy' "
                  "AND toDayOfMonth(bucket) = 4")
    drift = rollup_drift(store)
    assert [(r["cluster_id"], r["day"].day) for r in drift] == [("pricing", 3), ("policy", 4)]
    pricing = drift[0]
    assert pricing["interactions"] > pricing["hour_rollup"] and pricing["day_rollup"] == 0
    assert drift[1]["day_rollup"] == 2 * drift[1]["interactions"] == 2 * drift[1]["hour_rollup"]
    assert repair_rollups(store, drift) == 2
    assert rollup_drift(store) == []
    assert tiers(store) == dict.fromkeys(("rollup_minutes", "rollup_hours", "rollup_days"), 600)
    assert store.rollups(T0, T0 + timedelta(days=4), step_minutes=60) == before


def test_a_chdb_store_left_open_by_a_killed_process_rebuilds_its_rollups_when_next_opened(tmp_path, caplog):
    from services.store.chdb_store import ChdbStore

    path = tmp_path / "chdb"
    with ChdbStore(path) as store:
        store.migrate()
        assert not store.unclean and path.with_name("chdb.open").exists()
        store.insert_interactions([scored(k, "pricing") for k in range(200)])
        # What a kill between the insert of interactions and of their rollups leaves.
        store.command("ALTER TABLE rollup_hours DELETE WHERE toHour(bucket) = 23 SETTINGS mutations_sync = 2")
        assert len(rollup_drift(store)) == 1
    assert not path.with_name("chdb.open").exists()  # closed: a clean stop
    with ChdbStore(path) as store:
        store.migrate()
        assert len(rollup_drift(store)) == 1  # a clean stop repairs nothing on its own
    path.with_name("chdb.open").touch()  # the process holding it was killed
    with ChdbStore(path) as store:
        assert store.unclean
        store.migrate()
        assert rollup_drift(store) == [] and tiers(store)["rollup_hours"] == 200
    assert "rebuilt the rollups of 1 cluster-days" in caplog.text


def test_repair_at_start_rebuilds_steady_drift_and_leaves_a_day_being_written_alone(store: Store):
    from services.store.consistency import repair_steady_drift

    store.insert_interactions([scored(k, "pricing" if k % 2 else "policy") for k in range(600)])
    for cluster, day in (("pricing", 3), ("policy", 4)):  # what two crashes mid-insert leave
        store.command(f"ALTER TABLE rollup_hours DELETE WHERE cluster_id = '{cluster}' "
                      f"AND toDayOfMonth(bucket) = {day} AND toHour(bucket) < 5 SETTINGS mutations_sync = 2")
    # Between the two looks a writer inserts into policy's day 4: its counts move, it is left alone.
    more = [scored(k, "policy").model_copy(update={"timestamp": T0 + timedelta(days=1, hours=3)})  # 11-04 01:00
            for k in range(1000, 1004)]
    assert repair_steady_drift(store, 5, sleep=lambda seconds: store.insert_interactions(more)) == 1
    assert [(r["cluster_id"], r["day"].day) for r in rollup_drift(store)] == [("policy", 4)]
    assert repair_steady_drift(store, 0) == 1  # steady now
    assert rollup_drift(store) == [] and repair_steady_drift(store, 5, sleep=None) == 0  # no drift: no wait
