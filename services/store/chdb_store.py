"""The embedded store: ClickHouse's engine in this process through chDB.

chDB 4.4 opens one data path per process at a time (a session on another path fails until
every session on the first is closed) and a path in use cannot be opened by another process,
so everything that reads the store goes through the process that owns it.

How values reach the engine (chDB 4.4):

- parameters: ``session.query(sql, fmt, params={"name": text})`` binds ``{name:Type}``
  placeholders. chDB passes each value on as text that the engine parses like an HTTP
  ``param_name`` (TSV-escaped, ``\\N`` for NULL), so :func:`param_text` escapes it: a
  parameter is data, never SQL.
- inserts: ``INSERT INTO t (cols) FORMAT JSONColumns`` followed by the batch as one JSONColumns
  object (one list per column: a single C-speed ``json.dumps`` instead of one encoding per row).
  The SQL names only the table and columns; everything after ``FORMAT`` is read by the format
  parser as data, never as SQL. (``session.send_insert`` is not used: in chDB 4.4 a streamed
  insert into a Null-engine table does not fire its materialized views, and ``interactions_in``
  is one.)
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import chdb.session

from pipelines.errors import StoreError
from services.private import restrict_tree
from services.store.base import Row, Store, utc
from services.store.consistency import repair_rollups, rollup_drift

log = logging.getLogger("faithwatch.store")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATETIME_TYPE = re.compile(r"^(?:Nullable\()?DateTime(?:64)?\b")
_DATETIME_ARRAY_TYPE = re.compile(r"^Array\((?:Nullable\()?DateTime(?:64)?\b")
_DATE_TYPE = re.compile(r"^(?:Nullable\()?Date(?:32)?\)?$")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def datetime_text(value: datetime) -> str:
    """``value`` as ClickHouse reads a ``DateTime64(3, 'UTC')`` (truncated to milliseconds)."""
    value = value if value.tzinfo is UTC else utc(value)
    return value.isoformat(" ", "milliseconds")[:23]


def param_text(value: Any) -> str:
    """A bound parameter as the text the engine parses for its declared type."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return datetime_text(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    raise TypeError(f"cannot bind a {type(value).__name__} parameter")


def _json_column(values: Sequence[Any]) -> Sequence[Any]:
    """A column as JSON can carry it: datetimes (and arrays of them) as UTC text with milliseconds. A dict stays an
    object: the engine stores a JSON object read into a String column as its text
    (``input_format_json_read_objects_as_strings``, on by default), the same text
    ``json.dumps(value)`` gives."""
    first = next((value for value in values if value is not None), None)
    if isinstance(first, datetime):
        return [None if value is None else datetime_text(value) for value in values]
    if isinstance(first, list | tuple):  # an Array column: its datetimes too (e.g. member_since)
        sample = next((value[0] for value in values if value), None)
        if isinstance(sample, datetime):
            return [[datetime_text(item) for item in value] for value in values]
    return values


def _to_datetime(value: Any) -> Any:
    # date_time_output_format='iso': "2026-11-02T10:00:00.123Z", parsed with its UTC zone.
    return None if value is None else datetime.fromisoformat(value)


def _to_datetimes(value: Any) -> Any:
    return [_to_datetime(item) for item in value]


def _to_date(value: Any) -> Any:
    return None if value is None else date.fromisoformat(value)


def _decoder(type_name: str) -> Any:
    """How to turn a JSON value of ClickHouse type ``type_name`` into Python (None: as is).
    64-bit integers need nothing: the session writes them as JSON numbers."""
    if _DATETIME_TYPE.match(type_name):
        return _to_datetime
    if _DATETIME_ARRAY_TYPE.match(type_name):
        return _to_datetimes
    if _DATE_TYPE.match(type_name):
        return _to_date
    return None


class ChdbStore(Store):
    """The store in ``path`` (created if missing), tables in ``database``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp, ChdbStore(Path(tmp)) as store:
    ...     store.migrate()[-1], store.migrate(), store.counts()["interactions"]
    ('0007_gate_overrides', [], 0)
    """

    def __init__(self, path: Path, database: str = "faithwatch"):
        if not _IDENTIFIER.match(database):
            raise ValueError(f"database must be a plain identifier, got {database!r}")
        # chDB reads "?k=v" after the path as engine start-up arguments.
        if "?" in str(path):
            raise ValueError(f"a store path cannot contain '?': {path}")
        self.path = Path(path)
        self.database = database
        # One operation at a time on the embedded engine.
        self._lock = threading.RLock()
        try:
            self._session: chdb.session.Session | None = chdb.session.Session(str(self.path))
        except RuntimeError as error:
            raise StoreError(f"cannot open chDB store at {self.path} (chDB opens one path per "
                             f"process, and not a path another process holds): {error}") from error
        try:
            self.command("CREATE DATABASE IF NOT EXISTS {database:Identifier}",
                         {"database": database})
            self.command("USE {database:Identifier}", {"database": database})
            # Results are decoded by declared type; pin what that relies on.
            self.command("SET session_timezone = 'UTC'")
            self.command("SET output_format_json_quote_64bit_integers = 0")
            self.command("SET date_time_output_format = 'iso'")
            # The engine creates its files with the process umask; they hold every stored answer.
            restrict_tree(self.path)
        except BaseException:
            self.close()
            raise
        # Present while a process has the store open: found at open, the last one was killed, and
        # migrate() rebuilds the rollups its unfinished inserts may have left short.
        self._marker = self.path.with_name(self.path.name + ".open")
        self.unclean = self._marker.exists()
        self._marker.touch(mode=0o600)

    def _open_session(self) -> chdb.session.Session:
        if self._session is None:
            raise StoreError(f"chDB store at {self.path} is closed")
        return self._session

    def _run(self, sql: str, params: Mapping[str, Any] | None, fmt: str) -> str:
        return self.query_bytes(sql, params, fmt).decode("utf-8")

    def query_bytes(self, sql: str, params: Mapping[str, Any] | None, fmt: str) -> bytes:
        """The result of ``sql`` in format ``fmt`` as the engine wrote it (``/clickhouse`` on
        ``faithwatch serve`` answers with it); StoreError carries the engine's error text."""
        bound = {name: param_text(value) for name, value in (params or {}).items()}
        with self._lock:
            session = self._open_session()
            try:
                result = session.query(sql, fmt, params=bound)
            except RuntimeError as error:
                raise StoreError(f"chDB query failed: {error}") from error
        return result.bytes()

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        # One JSON document for the whole result (one C-speed json.loads), then a decoder per
        # column chosen once from its type: a 40k-row answer spent more time here than in SQL.
        # (Duplicate column names are not supported: name your columns.)
        # Column-wise (JSONColumnsWithMetadata): decoding a column with map() and zipping the
        # columns into rows was 10-25 % cheaper than decoding row by row.
        document = json.loads(self._run(sql, params, "JSONColumnsWithMetadata"))
        names = [column["name"] for column in document["meta"]]
        columns = []
        for column in document["meta"]:
            values = document["data"].get(column["name"], [])  # absent when there are no rows
            decoder = _decoder(column["type"])
            columns.append(values if decoder is None else list(map(decoder, values)))
        return [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, params, "TabSeparated")

    def _insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        if not all(_IDENTIFIER.match(name) for name in [table, *columns]):
            raise ValueError(f"not identifiers: {table}, {list(columns)}")
        body = json.dumps({name: _json_column(values) for name, values in columns.items()})
        sql = f"INSERT INTO {table} ({', '.join(columns)}) FORMAT JSONColumns\n{body}"
        with self._lock:
            session = self._open_session()
            try:
                session.query(sql, "TabSeparated")
            except RuntimeError as error:
                raise StoreError(f"chDB insert into {table} failed: {error}") from error

    def migrate(self) -> list[str]:
        """Apply the migrations; after an unclean stop also rebuild the rollups of every day that
        no longer matches ``interactions`` (one process holds a chDB store: no writer races it)."""
        applied = super().migrate()
        restrict_tree(self.path)  # the tables' directories and files it created
        if self.unclean:
            repaired = repair_rollups(self, rollup_drift(self))
            self.unclean = False
            if repaired:
                log.warning("chDB store %s was not closed by the last process: rebuilt the rollups of %d "
                            "cluster-days that no longer matched the stored interactions", self.path, repaired)
        return applied

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                session, self._session = self._session, None
                session.close()
                marker = getattr(self, "_marker", None)
                if marker is not None:
                    marker.unlink(missing_ok=True)
