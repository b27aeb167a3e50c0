"""Hostile request bodies against a real `faithwatch serve` process (issue #12, item 3).

Starts the server from ``--repo`` (default: this checkout; pass an export of an older commit to
measure the code before a fix) with the hashing embedder and a fresh data dir, posts one body,
and reports what it cost: answer and time, the server's resident memory (before, peak while the
request ran, after), and the slowest ``/healthz`` answer while it ran.

    python -m benchmarks.bench_reliability                    # 2 MB of 1,000,000 one-character lines
    python -m benchmarks.bench_reliability --repo /tmp/base   # the same against another checkout

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
from pathlib import Path

import httpx

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


def run(repo: Path, body: bytes, content_type: str, settle: float = 3.0) -> dict:
    port = _free_port()
    with tempfile.TemporaryDirectory() as data:
        env = {**os.environ, "PYTHONPATH": str(repo), "FAITHWATCH_EMBEDDING__BACKEND": "hashing",
               "FAITHWATCH_API__INSECURE": "true", "FAITHWATCH_DATA_DIR": data, "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen([sys.executable, "-c", "from services.cli import main; main()", "serve",
                                 "--port", str(port)], cwd=repo, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the server did not start")
                time.sleep(0.2)
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
        finally:
            proc.terminate()
            proc.wait(60)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT, help="checkout whose server runs")
    parser.add_argument("--lines", type=int, default=1_000_000, help="one-character NDJSON lines in the body")
    args = parser.parse_args(argv)
    result = {"body_bytes": 2 * args.lines, "lines": args.lines,
              **run(args.repo, b"x\n" * args.lines, "application/x-ndjson")}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
