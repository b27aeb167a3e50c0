"""Fixtures shared by the storage tests: the ClickHouse HTTP test server, in its own process.

chDB opens one data path per process, and the tests open their own chDB stores, so the server
(services.testing.clickhouse_http, chDB behind the ClickHouse HTTP interface) runs as a
separate process for the whole session: started on a free port, waited for, stopped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from services.testing.clickhouse_http import ServerProcess

SERVER_PASSWORD = "s3cret-for-tests"


class ClickHouseServer(ServerProcess):
    """The session's server; ``store()`` without a database gets a fresh one per call."""

    def store(self, database: str | None = None):
        return super().store(database or f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    path = tmp_path_factory.mktemp("clickhouse-http")
    try:
        server = ClickHouseServer.start(path / "data", SERVER_PASSWORD)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with server:
        yield server
