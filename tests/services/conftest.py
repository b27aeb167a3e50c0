"""Fixtures shared by the storage tests: the ClickHouse HTTP test server, in its own process.

chDB opens one data path per process, and the tests open their own chDB stores, so the server
(services.testing.clickhouse_http, chDB behind the ClickHouse HTTP interface) runs as a
separate process for the whole session: started on a free port, waited for, stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import SecretStr

REPO = Path(__file__).resolve().parents[2]
SERVER_PASSWORD = "s3cret-for-tests"


@dataclass(frozen=True)
class ClickHouseServer:
    url: str
    user: str
    password: SecretStr
    process: subprocess.Popen

    def store(self, database: str | None = None):
        from services.store.clickhouse_store import ClickHouseStore

        return ClickHouseStore(self.url, user=self.user, password=self.password,
                               database=database or f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    path = tmp_path_factory.mktemp("clickhouse-http")
    process = subprocess.Popen(
        [sys.executable, "-m", "services.testing.clickhouse_http", "--port", "0", "--path", str(path / "data"),
         "--password", SERVER_PASSWORD],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=60)
    if not first or not first[0].startswith("listening on "):
        process.kill()
        _, err = process.communicate(timeout=10)
        pytest.fail(f"the ClickHouse HTTP test server did not start: {first} {err[-2000:]}")
    try:
        yield ClickHouseServer(first[0].split()[-1], "default", SecretStr(SERVER_PASSWORD), process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
