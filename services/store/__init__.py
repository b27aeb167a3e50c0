"""Where scored interactions, clusters, incidents and dead letters are kept.

One interface (:class:`~services.store.base.Store`) and one set of numbered plain-SQL
migrations (``migrations/NNNN_name.sql``). :class:`~services.store.chdb_store.ChdbStore` runs
them in-process on chDB; a ClickHouse server backend runs the same SQL. Backends are imported
from their own modules so that using one does not import the other's client library.
"""

from services.store.base import Store

__all__ = ["Store"]
