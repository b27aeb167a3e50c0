"""The dashboard tests' store: small (dashboard_sample), populated through the store API, opened
once per module."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from dashboard_sample import populate

from services.store.chdb_store import ChdbStore


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """The module's chDB store with dashboard_sample's rows (chDB opens one data path per process: a
    module's store is closed before the next module opens its own)."""
    with ChdbStore(tmp_path_factory.mktemp("dashboards") / "store", database="fw_dash") as store:
        store.migrate()
        count = populate(store)
        yield SimpleNamespace(store=store, interactions=count)
