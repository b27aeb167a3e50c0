"""Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) on a free 127.0.0.1 port, routing
every alert to one webhook receiver, for testing the Alertmanager channel against the real thing.

    with AlertmanagerProcess.start(tmp_path, receiver.url) as am:
        ...  # POST am.url + "/api/v2/alerts"; the receiver gets Alertmanager's notifications

:func:`ensure_installed` installs the package with apt-get when it is missing (CI runs as root);
anything else that stops it from starting is a RuntimeError that says why.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.testing import ensure_debian_package, stop_process

BINARY = "/usr/bin/prometheus-alertmanager"
PACKAGE = "prometheus-alertmanager"


def ensure_installed() -> str:
    """The Alertmanager binary, installed from Debian's package first if it is missing."""
    return ensure_debian_package(BINARY, PACKAGE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(receiver_url: str, resolve_timeout: str = "5m") -> str:
    """Every alert to ``receiver_url``, grouped per incident, notified within about a second; an alert
    not sent again for ``resolve_timeout`` ends."""
    return f"""global:
  resolve_timeout: {resolve_timeout}
route:
  receiver: hook
  group_by: [incident_id]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: {receiver_url}
        send_resolved: true
"""


@dataclass
class AlertmanagerProcess:
    url: str
    process: subprocess.Popen

    @classmethod
    def start(cls, workdir: Path, receiver_url: str, timeout: float = 30.0,
              resolve_timeout: str = "5m") -> AlertmanagerProcess:
        binary = ensure_installed()
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "alertmanager.yml").write_text(config(receiver_url, resolve_timeout))
        port = free_port()
        log = (workdir / "alertmanager.log").open("w")
        process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"alertmanager exited ({process.returncode}): "
                                   f"{(workdir / 'alertmanager.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    return cls(url, process)
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        stop_process(process, timeout=10)
        raise RuntimeError(f"alertmanager did not become ready within {timeout} s")

    def alerts(self) -> list[dict]:
        """``GET /api/v2/alerts``: the alerts Alertmanager holds (active ones by default)."""
        response = httpx.get(f"{self.url}/api/v2/alerts", timeout=5.0)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        stop_process(self.process, timeout=10)

    def __enter__(self) -> AlertmanagerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
