"""``faithwatch store check [--repair]``: do the hour and day rollups hold what ``interactions``
holds, and rebuild the days where they do not.

The rollups are filled by materialized views as interactions are inserted (minute rows from
``interactions``, hour rows from minute rows, day rows from hour rows). Those inserts are not one
transaction: a process killed between them leaves interactions stored whose rollup rows never
arrived, and a re-run skips them (the store drops an id it already holds before any view sees it),
so the rollups stay short for good. :func:`rollup_drift` compares, per cluster and UTC day, the
count of stored interactions with the hour and day tiers; :func:`repair_rollups` deletes those
days from all three tiers and inserts their minute rows again from ``interactions``, which the
views carry on to hours and days.

Run it with writers stopped (the chDB store is held by one process anyway; with a ClickHouse
server, stop `serve` and the workers first): an insert racing the repair of its day would count
twice or not at all. Days older than the raw retention (``store.ttl_days``) are not compared.

Automatically: the chDB store repairs at the open after an unclean stop (its open marker); on a
ClickHouse server a Kafka worker and an embedded ``faithwatch serve`` check at start, and again
whenever a store write succeeds after failed ones (the server may have died mid-insert), and
repair what :func:`repair_steady_drift` finds drifting twice alike, ``SETTLE_SECONDS`` apart (a
day another worker is inserting into moves between the two looks and is left alone):
:func:`repair_drifted_rollups`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.store.base import Row, Store

SETTLE_SECONDS = 2.0  # between the two looks of repair_drifted_rollups

_DRIFT = """
    SELECT cluster_id, day, r.n AS interactions, h.n AS hour_rollup, d.n AS day_rollup
    FROM (SELECT cluster_id, toStartOfDay(timestamp) AS day, count() AS n FROM interactions FINAL
          GROUP BY cluster_id, day) AS r
    FULL OUTER JOIN (SELECT cluster_id, toStartOfDay(bucket) AS day, sum(interactions) AS n FROM rollup_hours
                     GROUP BY cluster_id, day) AS h USING (cluster_id, day)
    FULL OUTER JOIN (SELECT cluster_id, bucket AS day, sum(interactions) AS n FROM rollup_days
                     GROUP BY cluster_id, day) AS d USING (cluster_id, day)
    WHERE NOT (r.n = h.n AND r.n = d.n) AND day >= {first_day:DateTime64(3, 'UTC')}
    ORDER BY day, cluster_id
    SETTINGS join_use_nulls = 0"""

# The minute rows of one cluster-day, as migration 0003 back-fills them.
_MINUTES_OF_DAY = """
    INSERT INTO rollup_minutes
    SELECT
        cluster_id,
        toStartOfMinute(timestamp) AS bucket,
        count(), countIf(below_baseline), countIf(confident_wrong),
        count(faithfulness), sum(ifNull(faithfulness, 0)), count(confidence), sum(ifNull(confidence, 0)),
        min(timestamp), max(timestamp),
        quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(faithfulness, 2), toUInt8(1)),
        quantilesExactWeightedInterpolatedState(0.05, 0.25, 0.5, 0.75, 0.95)(round(confidence, 2), toUInt8(1))
    FROM interactions FINAL
    WHERE cluster_id = {cluster_id:String} AND timestamp >= {day:DateTime64(3, 'UTC')}
      AND timestamp < {next_day:DateTime64(3, 'UTC')}
    GROUP BY cluster_id, bucket"""


def rollup_drift(store: Store) -> list[Row]:
    """One row per (cluster, UTC day) whose hour or day rollup does not count what interactions
    holds: ``cluster_id, day, interactions, hour_rollup, day_rollup``."""
    first_day = datetime(1970, 1, 1, tzinfo=UTC)
    if store.ttl_days().get("interactions") is not None:
        # The oldest raw day may be cut by the retention while its rollups are kept.
        oldest = store.query("SELECT toStartOfDay(min(timestamp)) AS day, count() AS n FROM interactions")[0]
        if oldest["n"]:
            first_day = oldest["day"] + timedelta(days=1)
    return store.query(_DRIFT, {"first_day": first_day})


def repair_rollups(store: Store, drift: list[Row]) -> int:
    """Rebuild the rollups of each (cluster, day) in ``drift``; the number of days rebuilt."""
    for row in drift:
        day = row["day"]
        params = {"cluster_id": row["cluster_id"], "day": day, "next_day": day + timedelta(days=1)}
        for table in ("rollup_days", "rollup_hours", "rollup_minutes"):
            store.command(f"ALTER TABLE {table} DELETE WHERE cluster_id = {{cluster_id:String}} "  # fixed names
                          "AND bucket >= {day:DateTime64(3, 'UTC')} AND bucket < {next_day:DateTime64(3, 'UTC')} "
                          "SETTINGS mutations_sync = 2", params)
        store.command(_MINUTES_OF_DAY, params)
    return len(drift)


def repair_steady_drift(store: Store, settle_seconds: float, sleep: Callable[[float], None] = time.sleep) -> int:
    """Rebuild the (cluster, day)s whose drift :func:`rollup_drift` finds twice with the same counts,
    ``settle_seconds`` apart; the number rebuilt. A day whose counts move between the two looks is
    being written by a running process (its inserts carry their rollups along) and is left alone:
    with writers running the repair of a day could still race an insert into it that starts after
    the second look (docs/storage.md)."""
    first = rollup_drift(store)
    if not first:
        return 0
    sleep(settle_seconds)
    seen = {_drift_key(row) for row in first}
    return repair_rollups(store, [row for row in rollup_drift(store) if _drift_key(row) in seen])


def _drift_key(row: Row) -> tuple:
    return row["cluster_id"], row["day"], row["interactions"], row["hour_rollup"], row["day_rollup"]


def repair_drifted_rollups(store: Store, log: logging.Logger, when: str) -> int:
    """:func:`repair_steady_drift` with :data:`SETTLE_SECONDS`, logged; the number of days rebuilt.
    ``when``: "at start" or "after the store came back" (the writers on a ClickHouse server call it
    then: no open marker tells that the last writer or the server died mid-insert)."""
    repaired = repair_steady_drift(store, settle_seconds=SETTLE_SECONDS)
    if repaired:
        log.warning("the store's rollups of %d cluster-days did not match the stored interactions (a crash "
                    "mid-insert): rebuilt %s", repaired, when)
    return repaired
