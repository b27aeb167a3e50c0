"""A store outage under ``faithwatch serve`` loses nothing it acknowledged (issue #12, item 1).

A real ``faithwatch serve`` (embedded ingest, hashing embedder) writes to the ClickHouse HTTP test
server, which is made to answer 503 to everything for a while (services/testing/clickhouse_http.py,
SIGUSR1/SIGUSR2). The server keeps answering 202 into its spool; the ingest worker retries its
writes (``faithwatch_store_retries_total``); once the store is back, or after a restart of serve
(SIGKILLed, or stopped with SIGTERM while the store was still down), every acknowledged record is
stored exactly once.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from services.store.consistency import rollup_drift
from tests.services.conftest import SERVER_PASSWORD
from tests.services.test_cli_serve import records, stop
from tests.services.test_spool_crash import HEADERS, start
from tests.services.test_store_check import tiers

BOOTSTRAP = 200


@pytest.fixture
def store_env(clickhouse_server) -> Iterator[dict[str, str]]:
    """serve's settings for a fresh database on the session's ClickHouse server (dropped after)."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    yield {"FAITHWATCH_STORE__BACKEND": "clickhouse", "FAITHWATCH_STORE__URL": clickhouse_server.url,
           "FAITHWATCH_STORE__USER": clickhouse_server.user, "FAITHWATCH_STORE__PASSWORD": SERVER_PASSWORD,
           "FAITHWATCH_STORE__DATABASE": database, "FAITHWATCH_STORE__CONNECT_TIMEOUT": "2",
           "FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE": str(BOOTSTRAP), "FAITHWATCH_API__CHECKPOINT_SECONDS": "0.2",
           "FAITHWATCH_API__SPOOL_SEGMENT_BYTES": "20000"}
    clickhouse_server.unavailable(False)  # whatever the test did
    _wait_until(lambda: httpx.get(f"{clickhouse_server.url}/ping").status_code == 200, "the server back")
    with clickhouse_server.store(database) as cleanup:
        cleanup.command(f"DROP DATABASE IF EXISTS {database}")


def _wait_until(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _post(url: str, batch: list[dict]) -> int:
    acknowledged = 0
    for k in range(0, len(batch), 100):
        res = httpx.post(f"{url}/v1/interactions", json=batch[k:k + 100], headers=HEADERS, timeout=60)
        assert res.status_code == 202, res.text
        acknowledged += res.json()["accepted"]
    return acknowledged


def _flush(url: str) -> None:
    res = httpx.post(f"{url}/v1/flush", headers=HEADERS, timeout=120)
    assert res.status_code == 200 and res.json()["processed"] is True, res.text


def _metrics(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", headers=HEADERS, timeout=30).text
    return {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln and not ln.startswith("#")}


def _take_down(server) -> None:
    server.unavailable(True)
    _wait_until(lambda: httpx.get(f"{server.url}/ping").status_code == 503, "the server down")


def _stored(server, database: str) -> dict:
    with server.store(database) as st:
        # No FINAL: a row stored twice would count twice here.
        [counts] = st.query("SELECT count() AS rows, uniqExact(interaction_id) AS ids FROM interactions")
    return counts


def _stop(proc) -> str:
    code, err = stop(proc)
    assert code == 0, err[-3000:]
    return err


def test_serve_retries_its_writes_through_a_store_outage_and_stores_each_record_once(clickhouse_server, store_env,
                                                                                     tmp_path):
    """300 records stored, the server down, 300 more posted (202 each, in the spool) while the
    worker's writes fail; /healthz says so and /metrics counts the retries. Back up, the worker
    writes them: 600 rows, 600 ids. Rollups a crash of the server mid-insert left short (made here
    by deleting a cluster-day's hour and day rows) are rebuilt once the store is back."""
    batch = records(600)
    err = ""
    database = store_env["FAITHWATCH_STORE__DATABASE"]
    proc, url = start(tmp_path / "data", **store_env)
    try:
        assert _post(url, batch[:300]) == 300
        _flush(url)
        torn = _tear_rollups(clickhouse_server, database)
        _take_down(clickhouse_server)
        try:
            assert _post(url, batch[300:]) == 300  # acknowledged while the store is down
            _wait_until(lambda: _metrics(url)["faithwatch_store_retries_total"] >= 2, "retried writes")
            seen = _metrics(url)
            assert seen["faithwatch_store_failing"] == 1.0
            assert seen["faithwatch_ingest_errors_total"] == 0.0  # retried, not reported failed
            assert httpx.get(f"{url}/healthz").status_code == 503
            # Not covered yet: an invalid record's dead letter is written by the request itself,
            # so the request fails (its valid record is in the spool already, a re-send a duplicate).
            res = httpx.post(f"{url}/v1/interactions", json=[batch[599], {"interaction_id": "bad"}],
                             headers=HEADERS, timeout=60)
            assert res.status_code == 503 and "store unavailable" in res.text
        finally:
            clickhouse_server.unavailable(False)
        _flush(url)
        after = _metrics(url)
        assert after["faithwatch_store_failing"] == 0.0 and after["faithwatch_interactions_scored_total"] == 600
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        if proc.poll() is None:
            err = _stop(proc)
    assert "to the store failed (StoreError" in err and "retrying in" in err and "the store took it" in err
    assert "rebuilt after the store came back" in err, err[-3000:]
    assert _stored(clickhouse_server, database) == {"rows": 600, "ids": 600}
    assert not list((tmp_path / "data" / "spool").glob("*.jsonl"))
    with clickhouse_server.store(database) as st:
        assert rollup_drift(st) == [], torn
        assert tiers(st) == dict.fromkeys(("rollup_minutes", "rollup_hours", "rollup_days"), 600)


def _tear_rollups(server, database: str) -> list:
    """What a server dying mid-insert leaves: one cluster-day's interactions stored, its hour and
    day rollup rows not. Returns the drift."""
    with server.store(database) as st:
        [row] = st.query("SELECT cluster_id, toStartOfDay(timestamp) AS day FROM interactions "
                         "GROUP BY cluster_id, day ORDER BY count() DESC, cluster_id LIMIT 1")
        where = "cluster_id = {c:String} AND toStartOfDay(bucket) = {d:DateTime64(3, 'UTC')}"
        for table in ("rollup_hours", "rollup_days"):
            st.command(f"ALTER TABLE {table} DELETE WHERE {where} SETTINGS mutations_sync = 2",
                       {"c": row["cluster_id"], "d": row["day"]})
        drift = rollup_drift(st)
    assert drift, "deleting the rollup rows made no drift"
    return drift


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_serve_stopped_during_a_store_outage_replays_the_unwritten_records_at_the_next_start(
        clickhouse_server, store_env, tmp_path, stop):
    """300 records stored and checkpointed, the server down, 300 more acknowledged; serve is
    SIGKILLed, or stopped with SIGTERM (it stops retrying at once and keeps them in the spool, saving
    no state that claims them). Restarted with the store up, it replays them: 600 rows, 600 ids."""
    batch = records(600)
    data = tmp_path / "data"
    proc, url = start(data, **store_env)
    try:
        assert _post(url, batch[:300]) == 300
        _flush(url)
        time.sleep(0.5)  # a checkpoint (every 0.2 s) covers the first 300
        _take_down(clickhouse_server)
        try:
            assert _post(url, batch[300:]) == 300
            _wait_until(lambda: _metrics(url)["faithwatch_store_retries_total"] >= 1, "a failed write")
            if stop == "SIGKILL":
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=60)
                assert proc.returncode == -signal.SIGKILL
            else:
                err = _stop(proc)  # promptly: the store is still down
                assert "not written stay in the spool" in err, err[-3000:]
        finally:
            clickhouse_server.unavailable(False)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert list((data / "spool").glob("*.jsonl"))

    proc, url = start(data, **store_env)
    try:
        _flush(url)
    finally:
        err = _stop(proc)
    assert "replaying" in err
    assert _stored(clickhouse_server, store_env["FAITHWATCH_STORE__DATABASE"]) == {"rows": 600, "ids": 600}
    assert not list((data / "spool").glob("*.jsonl"))
