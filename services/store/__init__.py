"""Where scored interactions, clusters, incidents and dead letters are kept.

One interface (:class:`~services.store.base.Store`) and one set of numbered plain-SQL
migrations (``migrations/NNNN_name.sql``). :class:`~services.store.chdb_store.ChdbStore` runs
them in-process on chDB; a ClickHouse server backend runs the same SQL. Backends are imported
from their own modules so that using one does not import the other's client library:
:func:`open_store` imports the one the settings name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.errors import FaithwatchError
from services.private import private_dir
from services.store.base import Store

if TYPE_CHECKING:
    from services.settings import Settings

__all__ = ["Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store ``settings.store`` names (not migrated yet): chDB under the data dir, or a ClickHouse server."""
    if settings.store.backend == "chdb":
        from services.store.chdb_store import ChdbStore

        private_dir(settings.data_dir)
        return ChdbStore(settings.data_dir / "chdb", database=settings.store.database)
    from services.store.clickhouse_store import ClickHouseStore

    store = settings.store
    if not store.url:
        raise FaithwatchError("store.backend=clickhouse needs store.url (FAITHWATCH_STORE__URL), "
                              "e.g. http://clickhouse:8123")
    return ClickHouseStore(store.url, user=store.user, password=store.password, database=store.database,
                           secure=store.secure, verify=store.verify, ca_cert=store.ca_cert,
                           client_cert=store.client_cert, client_cert_key=store.client_cert_key,
                           connect_timeout=store.connect_timeout)
