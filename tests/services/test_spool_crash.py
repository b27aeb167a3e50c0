"""Issue #12, item 1: a 202 is durable. A real ``faithwatch serve`` is SIGKILLed right after it
acknowledged records; restarted on the same data dir, it stores every acknowledged one exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from services.store.chdb_store import ChdbStore
from tests.services.test_cli_serve import REPO, TOKEN, free_port, records

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def start(data: Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from services.cli import main; main()", "serve", "--port",
                             str(port), "--data-dir", str(data)], cwd=REPO,
                            env={**os.environ, "FAITHWATCH_EMBEDDING__BACKEND": "hashing", "PYTHONUNBUFFERED": "1",
                                 "FAITHWATCH_API__TOKENS": json.dumps([TOKEN]), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"faithwatch serve did not come up: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)


def crash_then_recover(data: Path, n: int, per_request: int, **env: str) -> tuple[int, str, dict]:
    """Post ``n`` records, SIGKILL the server after the last 202, restart it, flush, stop it;
    (records acknowledged, the second run's stderr, the store's counts by interaction_id)."""
    proc, url = start(data, **env)
    acknowledged = 0
    try:
        body = records(n)
        for k in range(0, n, per_request):
            res = httpx.post(f"{url}/v1/interactions", json=body[k:k + per_request], headers=HEADERS, timeout=60)
            assert res.status_code == 202, res.text
            acknowledged += res.json()["accepted"]
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == -signal.SIGKILL

    proc, url = start(data, **env)
    try:
        res = httpx.post(f"{url}/v1/flush", headers=HEADERS, timeout=120)
        assert res.status_code == 200 and res.json()["processed"] is True, res.text
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    with ChdbStore(data / "chdb") as store:
        # No FINAL: a row stored twice would count twice here.
        [counts] = store.query("SELECT count() AS rows, uniqExact(interaction_id) AS ids FROM interactions")
    return acknowledged, err, counts


def test_records_waiting_for_the_bootstrap_survive_a_sigkill(tmp_path):
    """500 records, fewer than the bootstrap size (1,000): before the spool they lived only in
    the worker's memory and all 500 were lost."""
    acknowledged, err, counts = crash_then_recover(tmp_path / "data", 500, 100,
                                                   FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE="1000")
    assert acknowledged == 500
    # (with api.spool=false this fails: nothing is replayed and the store holds no row)
    assert "replaying 500 interactions" in err
    assert counts == {"rows": 500, "ids": 500}
    assert not list((tmp_path / "data" / "spool").glob("*.jsonl"))  # a clean stop leaves nothing to replay


def test_records_being_processed_and_checkpointed_survive_a_sigkill_exactly_once(tmp_path):
    """1,200 records past a bootstrap of 200, checkpoints every 0.2 s, spool segments of about 60
    records: when the kill comes some are
    stored and checkpointed (their segments trimmed), some stored but not checkpointed, some
    queued. Replayed, the stored ones are dropped (the restored pipeline's seen ids, or the
    store), the rest go in: every acknowledged record once."""
    data = tmp_path / "data"
    acknowledged, err, counts = crash_then_recover(data, 1200, 100, FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE="200",
                                                   FAITHWATCH_API__CHECKPOINT_SECONDS="0.2",
                                                   FAITHWATCH_API__SPOOL_SEGMENT_BYTES="20000")
    assert acknowledged == 1200
    assert "replaying" in err
    assert counts == {"rows": 1200, "ids": 1200}
