"""``faithwatch serve`` as a real process, stopped with SIGTERM; then ``faithwatch clusters`` reads its store.

The server runs in its own process (chDB: one process per data path), so the store it wrote is
read here only after it exited, as an operator would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from services.cli import main
from services.store.chdb_store import ChdbStore
from services.testing import wait_until_serving

REPO = Path(__file__).resolve().parents[2]
TOKEN = "serve-t0ken"
QUERIES = ["what is the exchange rate fee for euros", "how do I reset the pin of my card",
           "where is the refund for my cancelled order"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(n: int) -> list[dict]:
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    return [{"interaction_id": f"s{k}", "session_id": f"ss{k % 6}", "customer_id": f"sc{k % 4}",
             "timestamp": (t0 + timedelta(minutes=k)).isoformat(), "query": f"{QUERIES[k % 3]} {k % 5}",
             "response": "The fee is 2%.", "confidence": 0.9,
             "contexts": [{"doc_id": "pricing-table", "doc_version": "v3", "text": "The fee is 2%."}]}
            for k in range(n)]


def serve_once(data: Path, post) -> tuple[int, str]:
    """Start ``faithwatch serve`` on ``data``, call ``post(url, headers)``, SIGTERM it; (exit code, stderr)."""
    port = free_port()
    env = {**os.environ, "FAITHWATCH_EMBEDDING__BACKEND": "hashing", "FAITHWATCH_API__TOKENS": json.dumps([TOKEN]),
           "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", "from services.cli import main; main()", "serve", "--port",
                             str(port), "--data-dir", str(data)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, url)
        post(url, {"Authorization": f"Bearer {TOKEN}"})
    finally:
        code, err = stop(proc)
    return code, err


def stop(proc: subprocess.Popen) -> tuple[int, str]:
    """SIGTERM ``faithwatch serve`` (stderr piped as text) and wait for it (SIGKILL if that fails);
    (exit code, stderr)."""
    err = ""
    try:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


@pytest.fixture(scope="module")
def served_and_stopped(tmp_path_factory):
    data = tmp_path_factory.mktemp("serve")
    responses = []

    # First run: fewer than bootstrap_size (400) records, accepted without waiting, so the pipeline
    # still holds them when SIGTERM arrives: they are saved in the pipeline's state, not fitted early.
    def first(url, headers):
        responses.append(httpx.post(f"{url}/v1/interactions", json=records(40), headers=headers))

    # Second run continues from that state: 400 more complete the bootstrap, and 10 of the first 40
    # sent again are recognised as duplicates (the seen ids were saved too).
    def second(url, headers):
        body = records(440)[40:] + records(10)
        responses.append(httpx.post(f"{url}/v1/interactions?wait=true", json=body, headers=headers, timeout=120))

    runs = [serve_once(data, first)]
    checkpoint = (data / "state" / "pipeline.json.gz").is_file()
    runs.append(serve_once(data, second))
    return data, responses, runs, checkpoint


def test_sigterm_saves_what_waits_then_a_restart_continues(served_and_stopped):
    data, (res1, res2), ((code1, err1), (code2, err2)), checkpoint = served_and_stopped
    assert res1.status_code == 202 and res1.json()["accepted"] == 40
    assert code1 == 0, err1[-2000:]
    assert "stopped; 0 interactions scored" in err1 and checkpoint
    assert code2 == 0, err2[-2000:]
    assert "continuing from" in err2 and "(0 interactions, 0 clusters, 0 open incidents)" in err2
    assert res2.status_code == 202 and res2.json()["processed"] is True, res2.text
    assert "stopped; 440 interactions scored, 10 duplicates" in err2
    with ChdbStore(data / "chdb") as store:
        assert store.counts()["interactions"] == 440


def test_clusters_list_reads_what_the_server_stored(served_and_stopped):
    data = served_and_stopped[0]
    res = CliRunner().invoke(main, ["clusters", "list", "--data-dir", str(data), "--format", "json"])
    assert res.exit_code == 0, res.output
    clusters = json.loads(res.output)
    assert clusters and sum(c["size"] for c in clusters) <= 440
    table = CliRunner().invoke(main, ["clusters", "list", "--data-dir", str(data)])
    # Grouped by family: every cluster appears indented under its family (or under "(no family)").
    assert table.exit_code == 0 and table.output.startswith("family/cluster")
    assert clusters[0]["label"][:20] in table.output
    indented = [line.split()[0] for line in table.output.splitlines()[2:] if line.startswith("  ")]
    assert sorted(indented) == sorted(c["cluster_id"] for c in clusters)
    csv_out = CliRunner().invoke(main, ["clusters", "list", "--data-dir", str(data), "--format", "csv"])
    assert csv_out.output.splitlines()[0].startswith("cluster_id,label,category")
    assert len(csv_out.output.splitlines()) == len(clusters) + 1


def test_clusters_show(served_and_stopped):
    data = served_and_stopped[0]
    clusters = json.loads(CliRunner().invoke(main, ["clusters", "list", "--data-dir", str(data),
                                                    "--format", "json"]).output)
    with ChdbStore(data / "chdb") as store:
        clustered = store.query("SELECT count() AS n FROM interactions FINAL WHERE cluster_id != 'unassigned'")[0]["n"]
    stored = 0
    for c in clusters:
        res = CliRunner().invoke(main, ["clusters", "show", c["cluster_id"], "--data-dir", str(data),
                                        "--format", "json"])
        assert res.exit_code == 0, res.output
        detail = json.loads(res.output)
        assert detail["label"] == c["label"] and detail["open_incidents"] == []
        stored += detail["recent_rates"][-1]["interactions"]
    assert stored == clustered > 0
    text = CliRunner().invoke(main, ["clusters", "show", clusters[0]["cluster_id"], "--data-dir", str(data)])
    assert text.exit_code == 0 and "recent rates" in text.output and clusters[0]["cluster_id"] in text.output
    rates = CliRunner().invoke(main, ["clusters", "show", clusters[0]["cluster_id"], "--data-dir", str(data),
                                      "--format", "csv"])
    assert [line.split(",")[0] for line in rates.output.splitlines()] == ["window", "1h", "24h", "7d", "all"]
    missing = CliRunner().invoke(main, ["clusters", "show", "nope", "--data-dir", str(data)])
    assert missing.exit_code == 2 and "no cluster nope" in missing.output


def test_serve_refuses_to_start_without_a_token(tmp_path, monkeypatch):
    monkeypatch.delenv("FAITHWATCH_API__TOKENS", raising=False)
    monkeypatch.delenv("FAITHWATCH_API__INSECURE", raising=False)
    res = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "no api.tokens configured" in res.output and "--insecure" in res.output


def test_kafka_mode_needs_the_clickhouse_store(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHWATCH_API__TOKENS", '["t0ken"]')
    monkeypatch.setenv("FAITHWATCH_API__INGEST", "kafka")
    res = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "api.ingest=kafka" in res.output and "store.backend must be clickhouse" in res.output


def test_embedded_mode_on_an_unreachable_clickhouse_server_exits_2_saying_so(tmp_path, monkeypatch):
    """Embedded ingest may write to a ClickHouse server (tests/services/test_store_outage.py runs
    it); one that cannot be reached at start is a clear error, not a traceback."""
    monkeypatch.setenv("FAITHWATCH_API__TOKENS", '["t0ken"]')
    monkeypatch.setenv("FAITHWATCH_STORE__BACKEND", "clickhouse")
    monkeypatch.setenv("FAITHWATCH_STORE__URL", "http://127.0.0.1:1")
    res = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path)])
    assert res.exit_code == 2 and "cannot connect to ClickHouse at http://127.0.0.1:1" in res.output
