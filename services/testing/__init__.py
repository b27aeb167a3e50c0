"""Test doubles that are real components, shipped with the package so users can test with them.

:mod:`services.testing.clickhouse_http`: a server that speaks the ClickHouse HTTP interface on
127.0.0.1 and runs every request on chDB, for testing the ClickHouse server backend without a
ClickHouse server.
:mod:`services.testing.tansu`: a Kafka-compatible broker (tansu) on a free 127.0.0.1 port.
:mod:`services.testing.s3`: moto's S3 server, durable storage for tansu (a broker restart keeps
its topics).
:mod:`services.testing.receiver`: an HTTP receiver that records requests and fails on demand
(a stand-in for PagerDuty, Slack or a webhook endpoint).
:mod:`services.testing.alertmanager`: Debian's Prometheus Alertmanager on a free port, routed to
a receiver.
:mod:`services.testing.grafana_standin`: a stand-in for Grafana's folder, data source and
dashboard HTTP API that checks every request.
:mod:`services.testing.chromium`: Debian's headless Chromium, to load a page and read its DOM.
:mod:`services.testing.live_api`: the API served for real on 127.0.0.1 (store, ingest worker,
uvicorn on a thread, an httpx client with a token), for tests of the HTTP routes.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx


def ensure_debian_package(binary: str, package: str) -> str:
    """``binary``, installed from Debian's ``package`` first if it is missing (CI runs as root)."""
    if Path(binary).is_file():
        return binary
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"{binary} is missing and there is no apt-get to install {package}")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", package]):
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-1000:]}")
    if not Path(binary).is_file():
        raise RuntimeError(f"{package} installed but {binary} is not there")
    return binary


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM ``process`` if it still runs, wait up to ``timeout`` seconds, then SIGKILL it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_serving(process: subprocess.Popen, url: str, timeout: float = 120) -> None:
    """Until the server ``process`` answers ``/healthz`` at ``url``; if it exits or does not answer
    within ``timeout`` seconds it is killed and RuntimeError says so (with the end of its stderr
    when that is piped)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            stderr = process.communicate()[1] or ""
            if isinstance(stderr, bytes):
                stderr = stderr.decode(errors="replace")
            raise RuntimeError(f"the server at {url} did not come up: {stderr[-2000:]}")
        time.sleep(0.1)


class ChildServer:
    """A server run as a child process (``self.process``): stopped by :meth:`stop` or by leaving
    its ``with`` block."""

    process: subprocess.Popen

    def stop(self) -> None:
        stop_process(self.process, timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
