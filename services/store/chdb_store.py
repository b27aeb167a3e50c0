"""The embedded store: ClickHouse's engine in this process through chDB.

chDB 4.4 opens one data path per process at a time (a session on another path fails until
every session on the first is closed) and a path in use cannot be opened by another process,
so everything that reads the store goes through the process that owns it.

How values reach the engine (chDB 4.4):

- parameters: ``session.query(sql, fmt, params={"name": text})`` binds ``{name:Type}``
  placeholders. chDB passes each value on as text that the engine parses like an HTTP
  ``param_name`` (TSV-escaped, ``\\N`` for NULL), so :func:`param_text` escapes it: a
  parameter is data, never SQL.
- inserts: ``session.send_insert("INSERT INTO t (cols)", "JSONEachRow")`` opens one INSERT;
  rows are appended as JSONEachRow chunks and committed by ``finish()``. The SQL names only
  the table and columns; the rows never pass through the SQL parser.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import chdb.session

from pipelines.errors import StoreError
from services.store.base import Row, Store, utc

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DATETIME_TYPE = re.compile(r"^(?:Nullable\()?DateTime(?:64)?\b")
_DATE_TYPE = re.compile(r"^(?:Nullable\()?Date(?:32)?\)?$")
_INT64_TYPE = re.compile(r"^(?:Nullable\()?U?Int(?:64|128|256)\b")
_INSERT_CHUNK_ROWS = 5000
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def datetime_text(value: datetime) -> str:
    """``value`` as ClickHouse reads a ``DateTime64(3, 'UTC')`` (truncated to milliseconds)."""
    return utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


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


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return datetime_text(value)
    raise TypeError(f"cannot store a {type(value).__name__}")


# One encoder for every row: json.dumps(default=...) builds a new one per call.
_ENCODE_ROW = json.JSONEncoder(default=_json_value).encode


def _decode(value: Any, type_name: str) -> Any:
    if value is None:
        return None
    if _DATETIME_TYPE.match(type_name):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    if _DATE_TYPE.match(type_name):
        return date.fromisoformat(value)
    if _INT64_TYPE.match(type_name) and isinstance(value, str):
        return int(value)
    return value


class ChdbStore(Store):
    """The store in ``path`` (created if missing), tables in ``database``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp, ChdbStore(Path(tmp)) as store:
    ...     store.migrate(), store.migrate(), store.counts()["interactions"]
    (['0001_initial', '0002_minute_rollups'], [], 0)
    """

    def __init__(self, path: Path, database: str = "faithwatch"):
        if not _IDENTIFIER.match(database):
            raise ValueError(f"database must be a plain identifier, got {database!r}")
        # chDB reads "?k=v" after the path as engine start-up arguments.
        if "?" in str(path):
            raise ValueError(f"a store path cannot contain '?': {path}")
        self.path = Path(path)
        self.database = database
        # send_insert holds the connection between calls; one operation at a time.
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
        except BaseException:
            self.close()
            raise

    def _open_session(self) -> chdb.session.Session:
        if self._session is None:
            raise StoreError(f"chDB store at {self.path} is closed")
        return self._session

    def _run(self, sql: str, params: Mapping[str, Any] | None, fmt: str) -> str:
        bound = {name: param_text(value) for name, value in (params or {}).items()}
        with self._lock:
            session = self._open_session()
            try:
                result = session.query(sql, fmt, params=bound)
            except RuntimeError as error:
                raise StoreError(f"chDB query failed: {error}") from error
        return result.bytes().decode("utf-8")

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        # Rows end in "\n" only: str.splitlines() would also split inside strings at U+0085.
        lines = self._run(sql, params, "JSONCompactEachRowWithNamesAndTypes").split("\n")[:-1]
        if not lines:
            return []
        names, types = json.loads(lines[0]), json.loads(lines[1])
        return [{name: _decode(value, type_name)
                 for name, type_name, value in zip(names, types, json.loads(line), strict=True)}
                for line in lines[2:]]

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._run(sql, params, "TabSeparated")

    def _insert(self, table: str, rows: Sequence[Row]) -> None:
        columns = list(rows[0])
        if not all(_IDENTIFIER.match(name) for name in [table, *columns]):
            raise ValueError(f"not identifiers: {table}, {columns}")
        sql = f"INSERT INTO {table} ({', '.join(columns)})"
        with self._lock:
            session = self._open_session()
            try:
                with session.send_insert(sql, "JSONEachRow") as inserter:
                    for start in range(0, len(rows), _INSERT_CHUNK_ROWS):
                        chunk = rows[start:start + _INSERT_CHUNK_ROWS]
                        inserter.append("".join(_ENCODE_ROW(row) + "\n" for row in chunk))
                    inserter.finish()
            except RuntimeError as error:
                raise StoreError(f"chDB insert into {table} failed: {error}") from error

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                session, self._session = self._session, None
                session.close()
