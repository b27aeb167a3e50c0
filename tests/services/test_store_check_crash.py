"""Replays SIGKILLed at several points, then run to the end: interactions complete, each dead
letter stored once, and the rollups match the interactions (a kill between the inserts of
interactions and of their rollups made them drift for good, issue #12): the chDB store finds the
last process did not close it and rebuilds the drifted days when it is next opened, and
``faithwatch store check`` agrees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.store.chdb_store import ChdbStore

T0 = datetime(2026, 11, 2, tzinfo=UTC)
N = 2000
QUERIES = ["How much is a transfer to Spain?", "My card has not arrived yet", "How do I reset my PIN?"]


def lines() -> list[str]:
    out = [json.dumps({"interaction_id": f"k{k}", "session_id": f"s{k % 40}", "query": QUERIES[k % 3],
                       "timestamp": (T0 + timedelta(minutes=1.5 * k)).isoformat(), "response": "It costs £1.",
                       "confidence": 0.9, "contexts": [{"doc_id": "fees", "text": "It costs £1."}]})
           for k in range(N)]
    out.insert(10, "{broken")
    out.insert(1500, json.dumps({"interaction_id": "no-time", "query": "q"}))
    return out


def faithwatch(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from services.cli import main; main()", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])


def test_killed_replays_then_check_repair_leave_everything_consistent(tmp_path):
    stream = tmp_path / "stream.jsonl"
    stream.write_text("\n".join(lines()) + "\n")
    data, scored = tmp_path / "data", tmp_path / "scored.jsonl"
    env = {**os.environ, "FAITHWATCH_EMBEDDING__BACKEND": "hashing", "FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE": "50",
           "FAITHWATCH_REPLAY__BATCH_SIZE": "32", "HF_HUB_OFFLINE": "1"}
    replay = ("replay", str(stream), "--data-dir", str(data), "--scored-out", str(scored), "--no-progress")
    killed_at = []
    for target in (300, 1400):  # scored interactions written before the kill
        scored.unlink(missing_ok=True)
        proc = faithwatch(*replay, env=env)
        done = threading.Event()
        while proc.poll() is None and not done.wait(0.02):
            if scored.exists() and scored.stat().st_size > 0 and sum(1 for _ in scored.open()) >= target:
                proc.send_signal(signal.SIGKILL)
                done.set()
        proc.wait(120)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
        killed_at.append(target)
    final = faithwatch(*replay, env=env)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err[-2000:]
    assert json.loads(out.splitlines()[0])["scored"] == N

    print("final run after the kills:", err[-500:])  # the rebuilt cluster-days, if the kills left any
    check = faithwatch("store", "check", "--data-dir", str(data), env=env)
    out, err = check.communicate(timeout=120)
    assert check.returncode == 0 and out.strip() == "rollups match interactions", out + err
    with ChdbStore(data / "chdb") as store:
        counts = store.counts()
        assert counts["interactions"] == N
        assert counts["dead_letters"] == 2  # four runs, each bad line once
        for tier in ("rollup_minutes", "rollup_hours", "rollup_days"):
            assert store.query(f"SELECT sum(interactions) AS n FROM {tier}")[0]["n"] == N, tier
