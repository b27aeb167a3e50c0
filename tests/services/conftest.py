"""Fixtures shared by the storage tests: the ClickHouse HTTP test server, in its own process, and
``store`` / ``make_store``: a test's store on each backend (a test that takes one runs twice).

chDB opens one data path per process, and the tests open their own chDB stores, so the server
(services.testing.clickhouse_http, chDB behind the ClickHouse HTTP interface) runs as a
separate process for the whole session: started on a free port, waited for, stopped at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.store.chdb_store import ChdbStore
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


@pytest.fixture(params=["chdb", "clickhouse"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest):
    """Opens this test's store (the same one each call): chDB under tmp_path, or a fresh
    database on the test server, dropped when the test ends."""
    if backend == "chdb":
        yield lambda: ChdbStore(tmp_path / "store", database="fw_test")
        return
    server = request.getfixturevalue("clickhouse_server")
    database = f"t_{uuid.uuid4().hex[:12]}"
    yield lambda: server.store(database)
    with server.store(database) as cleanup:
        cleanup.command(f"DROP DATABASE IF EXISTS {database}")


@pytest.fixture
def store(make_store):
    with make_store() as opened:
        opened.migrate()
        yield opened


@pytest.fixture
def chdb(tmp_path: Path):
    """A migrated chDB store of its own under ``tmp_path``."""
    from services.store.chdb_store import ChdbStore

    with ChdbStore(tmp_path / "chdb") as store:
        store.migrate()
        yield store
