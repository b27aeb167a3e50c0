"""Hostile request bodies against a real `faithwatch serve` process (issue #12, item 3).

Starts the server from ``--repo`` (default: this checkout; pass an export of an older commit to
measure the code before a fix) with the hashing embedder and a fresh data dir, posts one body,
and reports what it cost: answer and time, the server's resident memory (before, peak while the
request ran, after), and the slowest ``/healthz`` answer while it ran.

    python -m benchmarks.bench_reliability                    # 2 MB of 1,000,000 one-character lines
    python -m benchmarks.bench_reliability --repo /tmp/base   # the same against another checkout
    python -m benchmarks.bench_reliability --spool            # records/s acknowledged, spool on and off
    python -m benchmarks.bench_reliability --sustained 120    # steady ingest with the real model, exact counts
    python -m benchmarks.bench_reliability --kafka-outage 60  # a Kafka worker with ClickHouse down 60 s

Results go to RELIABILITY.md by hand (they depend on the machine); prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from services.testing import wait_until_serving

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextmanager
def _server(repo: Path, data_dir: Path | None = None, **env: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``faithwatch serve`` from ``repo`` on a fresh data dir (or ``data_dir``; hashing embedder unless
    ``env`` says otherwise, no token): (process, URL)."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        data = str(data_dir or tmp)
        env = {**os.environ, "PYTHONPATH": str(repo), "FAITHWATCH_EMBEDDING__BACKEND": "hashing",
               "FAITHWATCH_API__INSECURE": "true", "FAITHWATCH_DATA_DIR": data, "HF_HUB_OFFLINE": "1", **env}
        proc = subprocess.Popen([sys.executable, "-c", "from services.cli import main; main()", "serve",
                                 "--port", str(port)], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(proc, url)
            yield proc, url
        finally:
            proc.terminate()
            proc.wait(60)


def _run_clients(client: Callable[[list], None], work: list, clients: int) -> float:
    """``clients`` threads, each running ``client`` on its share of ``work`` (every
    ``clients``-th item); the seconds until all are done."""
    threads = [threading.Thread(target=client, args=(work[c::clients],)) for c in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def run(repo: Path, body: bytes, content_type: str, settle: float = 3.0) -> dict:
    with _server(repo) as (proc, url):
        time.sleep(settle)
        before = _rss_mb(proc.pid)
        peak, health = [before], [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_mb(proc.pid))
                time.sleep(0.02)

        def probe() -> None:
            while not done.is_set():
                t = time.perf_counter()
                httpx.get(f"{url}/healthz", timeout=120)
                health[0] = max(health[0], time.perf_counter() - t)
                time.sleep(0.05)

        threads = [threading.Thread(target=sample), threading.Thread(target=probe)]
        for t in threads:
            t.start()
        start = time.perf_counter()
        res = httpx.post(f"{url}/v1/interactions", content=body, headers={"Content-Type": content_type},
                         timeout=600)
        seconds = time.perf_counter() - start
        done.set()
        for t in threads:
            t.join()
        time.sleep(settle)
        answer = res.json()
        return {"status": res.status_code, "seconds": round(seconds, 2),
                "invalid": answer.get("invalid") if isinstance(answer, dict) else None,
                "detail": answer.get("detail") if isinstance(answer, dict) else None,
                "rss_mb_before": round(before), "rss_mb_peak": round(peak[0]),
                "rss_mb_after": round(_rss_mb(proc.pid)), "healthz_slowest_s": round(health[0], 2)}


def ingest_rate(repo: Path, spool: bool, requests: int, per_request: int, clients: int) -> dict:
    """Records acknowledged (202) per second by ``clients`` concurrent producers, each posting
    ``requests / clients`` JSON batches of ``per_request`` records, with the spool on or off."""
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    bodies = [json.dumps([{"interaction_id": f"b{r}-{k}", "session_id": f"s{k % 50}",
                           "timestamp": (t0 + timedelta(seconds=r * per_request + k)).isoformat(),
                           "query": f"how do I reset the pin of card {k % 7}", "response": "Open the app.",
                           "confidence": 0.9} for k in range(per_request)]).encode() for r in range(requests)]
    # A bootstrap larger than the run: the worker only queues, so the figure is the cost of acknowledging.
    with _server(repo, FAITHWATCH_API__SPOOL=str(spool).lower(), FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE="10000000",
                 FAITHWATCH_API__QUEUE_MAX_RECORDS=str(requests * per_request + 1)) as (_, url):
        statuses: list[int] = []
        latencies: list[float] = []

        def client(mine: list[bytes]) -> None:
            with httpx.Client(timeout=120) as http:
                for body in mine:
                    t = time.perf_counter()
                    res = http.post(f"{url}/v1/interactions", content=body,
                                    headers={"Content-Type": "application/json"})
                    latencies.append(time.perf_counter() - t)
                    statuses.append(res.status_code)

        seconds = _run_clients(client, bodies, clients)
    latencies.sort()
    return {"spool": spool, "requests": requests, "per_request": per_request, "clients": clients,
            "accepted_202": statuses.count(202), "seconds": round(seconds, 2),
            "records_per_s": round(statuses.count(202) * per_request / seconds),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1)}


def sustained(repo: Path, seconds: float, rate: float, per_request: int, clients: int, backend: str) -> dict:
    """``clients`` producers post batches of ``per_request`` BANKING77 queries (producer-scored) at
    ``rate`` records/s in all for ``seconds``, to a server with the ``backend`` embedder; then one
    flush, a clean stop (SIGTERM), and the store counted: every acknowledged record must be stored
    exactly once. Reports the POST latency (p50/p99), 503s, the largest queue and the server's RSS."""
    from services.datasets import load_banking77
    from services.store.chdb_store import ChdbStore

    queries = [q for qs in load_banking77("train").values() for q in qs]
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    n = int(seconds * rate) // per_request * per_request
    records = [{"interaction_id": f"r{k}", "session_id": f"s{k // 3}", "customer_id": f"u{k // 7}",
                "timestamp": (t0 + timedelta(seconds=k / rate)).isoformat(),
                "query": queries[(k * 7919) % len(queries)],
                "response": "Here is what applies to your account.", "confidence": 0.85,
                "faithfulness": 0.95 if k % 29 else 0.3} for k in range(n)]
    batches = [records[k:k + per_request] for k in range(0, n, per_request)]
    interval = clients * per_request / rate  # each client's pace
    statuses: list[int] = []
    latencies: list[float] = []
    accepted, depth, rss = [0], [0], [0.0]
    with tempfile.TemporaryDirectory() as data:
        with _server(repo, Path(data), FAITHWATCH_EMBEDDING__BACKEND=backend) as (proc, url):
            def client(mine: list[list[dict]]) -> None:
                with httpx.Client(timeout=120) as http:
                    start = time.monotonic()
                    for j, batch in enumerate(mine):
                        time.sleep(max(0.0, start + j * interval - time.monotonic()))
                        t = time.perf_counter()
                        res = http.post(f"{url}/v1/interactions", json=batch)
                        latencies.append(time.perf_counter() - t)
                        statuses.append(res.status_code)
                        if res.status_code == 202:
                            body = res.json()
                            accepted[0] += body.get("accepted", 0)
                            depth[0] = max(depth[0], body.get("queue_depth", 0))
                        rss[0] = max(rss[0], _rss_mb(proc.pid))

            started = time.perf_counter()
            sent_for = _run_clients(client, batches, clients)
            flush = httpx.post(f"{url}/v1/flush", params={"timeout": 900}, timeout=960).json()
            drained = time.perf_counter() - started
            proc.terminate()
            proc.wait(120)
        with ChdbStore(Path(data) / "chdb") as store:
            rows = store.query("SELECT count() AS n, uniqExact(interaction_id) AS ids FROM interactions")[0]
    latencies.sort()
    return {"backend": backend, "seconds": round(sent_for, 1), "records": n, "rate_asked": rate,
            "rate_acknowledged": round(accepted[0] / sent_for, 1), "requests": len(statuses),
            "status_202": statuses.count(202), "status_503": statuses.count(503), "accepted": accepted[0],
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1),
            "max_queue_depth": depth[0], "rss_mb_peak": round(rss[0]),
            "drained_after_s": round(drained, 1), "pipeline": flush.get("pipeline"),
            "stored_rows": int(rows["n"]), "stored_ids": int(rows["ids"]),
            "exact": int(rows["n"]) == int(rows["ids"]) == accepted[0]}


def kafka_outage(seconds: float, per_day: int) -> dict:
    """A ``faithwatch worker`` (hashing embedder) runs a produced stream; once its first interactions
    are stored, the ClickHouse HTTP test server answers 503 for ``seconds``. Reported: what the
    store holds at the end (rows, distinct ids, incident events), the retries the worker counted,
    and how long it took from the server's return until every interaction was stored."""
    import urllib.request

    from benchmarks.bench_kafka import Run, local_stack
    from pipelines.scenario import IncidentSpec, ScenarioConfig, generate, to_jsonl_lines
    from services.datasets import load_banking77

    sc = generate(load_banking77("train"), ScenarioConfig(seed=11, days=2.0, per_day=per_day,
                                                          incident=IncidentSpec(onset_day=1.0)))
    n, port = len(sc.records), _free_port()
    with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "stream.jsonl"
        path.write_text("".join(to_jsonl_lines(sc.records)), encoding="utf-8")
        with local_stack(tmp) as (broker, server):
            run = Run(broker, server, tmp, "hashing", "outage", kafka__metrics_port=port,
                      kafka__session_timeout_seconds=6)
            try:
                run.produce(path)
                run.start_worker()
                run.wait_stored(1, 300)
                server.unavailable(True)
                time.sleep(seconds)
                server.unavailable(False)
                back = time.perf_counter()
                run.wait_stored(n, 600)
                caught_up = time.perf_counter() - back
                time.sleep(3)  # the incident sink's last batch
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
                retries = next(float(line.split()[1]) for line in text.splitlines()
                               if line.startswith("faithwatch_worker_store_retries_total"))
                with server.store(run.database) as st:
                    rows = st.query("SELECT count() AS n, uniqExact(interaction_id) AS ids FROM interactions")[0]
                    events = st.counts()["incident_events"]
            finally:
                run.stop()
    return {"outage_seconds": seconds, "interactions": n, "stored": rows["n"], "distinct_ids": rows["ids"],
            "incident_events": events, "store_retries": int(retries),
            "seconds_to_store_all_after_return": round(caught_up, 1)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose server runs")
    parser.add_argument("--lines", type=int, default=1_000_000, help="one-character NDJSON lines in the body")
    parser.add_argument("--spool", action="store_true",
                        help="instead: records/s acknowledged with the write-ahead spool and without (api.spool)")
    parser.add_argument("--requests", type=int, default=400, help="--spool: requests in all")
    parser.add_argument("--per-request", type=int, default=100, help="--spool: records per request")
    parser.add_argument("--clients", type=int, default=4, help="--spool/--sustained: concurrent producers")
    parser.add_argument("--sustained", type=float, metavar="SECONDS",
                        help="instead: steady ingest for this long with the real model, then exact counts")
    parser.add_argument("--rate", type=float, default=150.0, help="--sustained: records/s in all")
    parser.add_argument("--backend", default="onnx", help="--sustained: the server's embedding backend")
    parser.add_argument("--kafka-outage", type=float, default=None, metavar="SECONDS",
                        help="instead: the ClickHouse server down this long while a Kafka worker runs a stream")
    parser.add_argument("--per-day", type=int, default=1500, help="--kafka-outage: interactions per day (2 days)")
    args = parser.parse_args(argv)
    if args.kafka_outage is not None:
        result = kafka_outage(args.kafka_outage, args.per_day)
    elif args.sustained:
        result = sustained(args.repo, args.sustained, args.rate, 20, args.clients, args.backend)
    elif args.spool:
        result: dict = {"rows": [ingest_rate(args.repo, spool, args.requests, args.per_request, args.clients)
                                 for spool in (True, False)]}
    else:
        result = {"body_bytes": 2 * args.lines, "lines": args.lines,
                  **run(args.repo, b"x\n" * args.lines, "application/x-ndjson")}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
