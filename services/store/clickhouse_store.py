"""The store on a ClickHouse server, through clickhouse-connect (HTTP), running the same SQL.

Threads: clickhouse-connect's sync client holds one HTTP session id by default, and a server
refuses two concurrent queries in one session, so one client must never serve two threads at
once. This store keeps **one client per thread** (created on the thread's first call, each
with its own session) instead of one client behind a lock: concurrent API requests run
concurrently on the server rather than queueing in this process. :meth:`close` closes them all.

How values reach the server: every ``{name:Type}`` placeholder is bound server-side
(clickhouse-connect sends ``param_name`` URL parameters; the SQL text never holds a value).
The values are formatted here, not by clickhouse-connect, because its default formatting drops
the milliseconds of a datetime: aware datetimes as UTC text with milliseconds, bools as
``true``/``false``, NULL as ``\\N``. Library errors become :class:`~pipelines.errors.StoreError`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from pydantic import SecretStr

from pipelines.errors import StoreError
from services.store.base import Row, Store, utc

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _param(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if value is None or isinstance(value, int | float | str):
        return value
    raise TypeError(f"cannot bind a {type(value).__name__} parameter")


def _value(value: Any) -> Any:
    """A result value as the chDB backend returns it (aware UTC datetimes, lists for arrays)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, list):
        return [_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(_value(item) for item in value)
    return value


class ClickHouseStore(Store):
    """The store in ``database`` (created if missing) on the server at ``url``.

    ``url`` is ``http(s)://host[:port]``; https (or ``secure=True``) turns TLS on, checked
    against ``ca_cert`` (or the system store) unless ``verify=False``; ``client_cert`` (and
    ``client_cert_key``) authenticate this client with mutual TLS.
    """

    def __init__(self, url: str, user: str = "default", password: SecretStr | None = None,
                 database: str = "faithwatch", secure: bool = False, verify: bool = True,
                 ca_cert: Path | None = None, client_cert: Path | None = None,
                 client_cert_key: Path | None = None, connect_timeout: float = 10.0):
        if not _IDENTIFIER.match(database):
            raise ValueError(f"database must be a plain identifier, got {database!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be http(s)://host[:port], got {url!r}")
        secure = secure or parts.scheme == "https"
        self.url = url
        self.database = database
        self._connect = dict(
            host=parts.hostname, port=parts.port or (8443 if secure else 8123),
            username=user, password=password.get_secret_value() if password else "",
            secure=secure, verify=verify, connect_timeout=connect_timeout,
            ca_cert=str(ca_cert) if ca_cert else None,
            client_cert=str(client_cert) if client_cert else None,
            client_cert_key=str(client_cert_key) if client_cert_key else None)
        self._local = threading.local()
        self._clients: list[Client] = []
        self._clients_lock = threading.Lock()
        self._closed = False
        # The database may not exist yet: create it through a client bound to "default".
        bootstrap = self._new_client(None)
        try:
            bootstrap.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        except ClickHouseError as error:
            raise StoreError(f"cannot create database {database} at {url}: {error}") from error
        finally:
            bootstrap.close()

    def _new_client(self, database: str | None) -> Client:
        try:
            return clickhouse_connect.get_client(
                **self._connect, database=database or "default",
                settings={"session_timezone": "UTC"})
        except ClickHouseError as error:
            raise StoreError(f"cannot connect to ClickHouse at {self.url}: {error}") from error

    def _client(self) -> Client:
        if self._closed:
            raise StoreError(f"ClickHouse store at {self.url} is closed")
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._new_client(self.database)
            with self._clients_lock:
                if self._closed:
                    client.close()
                    raise StoreError(f"ClickHouse store at {self.url} is closed")
                self._clients.append(client)
            self._local.client = client
        return client

    @staticmethod
    def _bound(params: Mapping[str, Any] | None) -> dict[str, Any]:
        return {name: _param(value) for name, value in (params or {}).items()}

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        try:
            result = self._client().query(sql, parameters=self._bound(params))
        except ClickHouseError as error:
            raise StoreError(f"ClickHouse query failed: {error}") from error
        names = result.column_names
        return [{name: _value(value) for name, value in zip(names, row, strict=True)}
                for row in result.result_rows]

    def command(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self._client().command(sql, parameters=self._bound(params))
        except ClickHouseError as error:
            raise StoreError(f"ClickHouse command failed: {error}") from error

    def _insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        if not all(_IDENTIFIER.match(name) for name in [table, *columns]):
            raise ValueError(f"not identifiers: {table}, {list(columns)}")
        # Column-oriented: clickhouse-connect encodes each column straight to Native.
        data = [[_insert_value(value) for value in values] for values in columns.values()]
        try:
            self._client().insert(table, data, column_names=list(columns), column_oriented=True)
        except ClickHouseError as error:
            raise StoreError(f"ClickHouse insert into {table} failed: {error}") from error

    def close(self) -> None:
        with self._clients_lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()


def _insert_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, dict):
        return json.dumps(value)
    if isinstance(value, tuple):
        return list(value)
    return value
