"""``/clickhouse`` on ``faithwatch serve``: read-only ClickHouse HTTP on the embedded store, so
Grafana's ClickHouse plugin (protocol http, path ``/clickhouse``) reads the store without a
ClickHouse server (chDB opens its data in one process: this one).

Authentication: HTTP basic auth with any user name and one of ``api.tokens`` as the password
(``X-ClickHouse-User``/``-Key`` headers, a ``password`` URL parameter or ``Authorization: Bearer``
work too); a wrong or missing token gets 516 AUTHENTICATION_FAILED. With ``api.insecure`` and no
tokens the endpoint is open, like the rest of the API.

Read-only, checked by the engine's own parser before anything runs, then enforced by the engine:

1. ``formatQuerySingleLine`` parses the request's SQL: one statement (no ``;`` chains), comments
   dropped; the normalised text is what runs.
2. Its ``EXPLAIN AST`` must be a SELECT (``UNION``, ``WITH``, subqueries), ``SHOW TABLES``/
   ``SHOW DATABASES`` or ``DESCRIBE``; every table read is in the store's database (an unqualified
   name is: the session's database is the store's) or one of the few ``system`` tables a client
   reads to connect and browse the schema; no table function but a few that make rows from
   nothing (``numbers``, ``values``, ...); none of the functions that read files or other servers
   (``file``, ``url``, ``remote``, ``s3``, ``mysql``, ``dictGet``, ``joinGet``, ...); no ``SETTINGS``
   clause. Anything else: 164 READONLY or 497 ACCESS_DENIED, and nothing ran.
3. It runs with ``readonly=1`` (no writes, DDL, ``SET``; the engine also refuses table functions)
   and the limits of :class:`ProxyLimits` (``api.clickhouse_max_*``), on the store's session, one
   query at a time with the store's own reads and writes.

URL settings a client sends are ignored (the engine reports ``readonly=1``, so clickhouse-connect
drops them itself); ``database`` must be the store's; ``param_<name>`` values bind ``{name:Type}``
placeholders. Inserts are refused.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from pipelines.errors import StoreError
from services.clickhouse_protocol import (
    AUTHENTICATION_FAILED,
    QueryError,
    Statement,
    answer,
    credentials,
    decompress,
    error_answer,
    parse_request,
)

PATH = "/clickhouse"
# What clickhouse-connect reads on connect and Grafana's plugin reads to browse the schema.
SYSTEM_TABLES = frozenset({"one", "settings", "databases", "tables", "columns", "functions",
                           "data_type_families", "table_engines", "formats", "time_zones", "build_options"})
# Table functions that make rows from their arguments alone.
ROW_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "generate_series", "generateSeries",
                           "values", "view", "format", "null"})
# Scalar functions that read files, models or other tables by name.
DENIED_FUNCTIONS = frozenset({"file", "catboostEvaluate", "naiveBayesClassifier", "joinGet", "joinGetOrNull",
                              "getClientHTTPHeader", "filesystemAvailable", "filesystemCapacity",
                              "filesystemUnreserved"})
ROOTS = ("SelectWithUnionQuery", "ShowTables", "DescribeQuery")
_NODE = re.compile(r"^(\s*)(\S+)(?: (.*?))?(?: \(children \d+\))?$")
_NAME = re.compile(r"^`?([A-Za-z_][A-Za-z0-9_]*)`?(?:\.`?([A-Za-z_][A-Za-z0-9_]*)`?)?(?:\.\S+)?$")
MAX_SQL_BYTES = 256 * 1024


@dataclass(frozen=True)
class ProxyLimits:
    """Per-query limits (engine settings ``max_execution_time``, ``max_memory_usage``,
    ``max_result_rows``); ``faithwatch serve`` takes them from ``api.clickhouse_max_*``."""

    seconds: int = 30
    memory_bytes: int = 2 * 1024**3
    result_rows: int = 1_000_000

    @classmethod
    def of(cls, api) -> ProxyLimits:
        """From ``api.clickhouse_max_*`` (services.settings.ApiSettings)."""
        return cls(api.clickhouse_max_seconds, api.clickhouse_max_memory_bytes, api.clickhouse_max_result_rows)


def _readonly(what: str) -> QueryError:
    return QueryError.of(164, "READONLY", f"faithwatch /clickhouse is read-only: {what}")


def _denied(what: str) -> QueryError:
    return QueryError.of(497, "ACCESS_DENIED", f"faithwatch /clickhouse: not allowed to read {what}")


class ReadOnlyPolicy:
    """Checks one statement's syntax tree (the text of ``EXPLAIN AST``) against the rules above.

    >>> policy = ReadOnlyPolicy("faithwatch", {"faithwatch", "system", "default"}, {"file", "url"})
    >>> policy.check("SelectWithUnionQuery (children 1)\\n TableExpression (children 1)\\n  TableIdentifier t")
    >>> try:
    ...     policy.check("SelectWithUnionQuery (children 1)\\n TableIdentifier system.users")
    ... except QueryError as error:
    ...     print(error.code, error)
    497 Code: 497. DB::Exception: faithwatch /clickhouse: not allowed to read table system.users. (ACCESS_DENIED)
    """

    def __init__(self, database: str, databases: set[str], table_functions: set[str]):
        self.database = database
        self.other_databases = {d.lower() for d in databases} - {database.lower()}
        self.denied_functions = (set(table_functions) - ROW_FUNCTIONS) | DENIED_FUNCTIONS

    def check(self, tree: str) -> None:
        lines = [line for line in tree.splitlines() if line.strip()]
        if not lines:
            raise _readonly("an empty statement")
        root = lines[0].split()[0]
        if root not in ROOTS:
            raise _readonly(f"{root} statements are not allowed")
        for index, line in enumerate(lines):
            match = _NODE.match(line)
            if match is None:
                continue
            kind, rest = match.group(2), (match.group(3) or "").split(" (alias")[0].strip()
            if kind == "Set":
                raise _readonly("a SETTINGS clause is not allowed")
            if kind == "Function" and (rest in self.denied_functions or rest.startswith("dict")):
                raise _denied(f"through the function {rest}")
            if kind == "TableExpression" and index + 1 < len(lines):
                child = _NODE.match(lines[index + 1])
                if child and child.group(2) == "Function":
                    name = (child.group(3) or "").split(" (alias")[0].strip()
                    if name not in ROW_FUNCTIONS:
                        raise _denied(f"the table function {name}")
            if kind == "TableIdentifier":
                self._table(rest)
            if kind == "Identifier":
                self._identifier(rest)

    def _table(self, name: str) -> None:
        match = _NAME.match(name)
        if match is None:
            raise _denied(f"table {name}")
        first, second = match.group(1), match.group(2)
        if second is None or first == self.database:
            return
        if first.lower() == "system" and second in SYSTEM_TABLES:
            return
        raise _denied(f"table {first}.{second}")

    def _identifier(self, name: str) -> None:
        """``x IN db.table`` reads a table through a plain identifier."""
        match = _NAME.match(name)
        if match and match.group(2) is not None and match.group(1).lower() in self.other_databases:
            self._table(f"{match.group(1)}.{match.group(2)}")


class ClickHouseProxy:
    """The endpoint over a store that answers ``query_bytes`` (the chDB store)."""

    def __init__(self, store, tokens: list[bytes], limits: ProxyLimits | None = None):
        self.store, self.tokens, self.limits = store, tokens, limits or ProxyLimits()
        databases = set(self._lines("SELECT name FROM system.databases"))
        functions = set(self._lines("SELECT name FROM system.table_functions"))
        self.policy = ReadOnlyPolicy(store.database, databases, functions)

    def _lines(self, sql: str) -> list[str]:
        return self.store.query_bytes(sql, None, "TabSeparatedRaw").decode().split("\n")[:-1]

    def authenticated(self, headers, params) -> bool:
        if not self.tokens:
            return True
        _, password = credentials(headers, params)
        bearer = headers.get("Authorization") or ""
        if bearer.startswith("Bearer "):
            password = bearer[7:]
        ok = False
        for token in self.tokens:  # every token compared: the time taken says nothing
            ok |= hmac.compare_digest(password.encode(), token)
        return ok

    def _engine(self, sql: str, params: dict[str, str] | None, fmt: str) -> bytes:
        try:
            return self.store.query_bytes(sql, params, fmt)
        except StoreError as error:
            raise QueryError.from_engine(str(error)) from error

    def statement_sql(self, statement: Statement) -> str:
        """The SQL that runs for ``statement`` (checked, normalised, limits appended)."""
        if statement.data is not None or statement.sql.lstrip()[:6].upper() == "INSERT":
            raise _readonly("INSERT is not allowed")
        if statement.database not in (None, "", self.store.database):
            raise QueryError.of(81, "UNKNOWN_DATABASE",
                                f"Database {statement.database} does not exist here (use {self.store.database})")
        if len(statement.sql.encode()) > MAX_SQL_BYTES:
            raise QueryError.of(62, "SYNTAX_ERROR", f"query longer than {MAX_SQL_BYTES} bytes")
        if not statement.sql.strip():
            raise QueryError.of(62, "SYNTAX_ERROR", "Empty query")
        normal = self._engine("SELECT formatQuerySingleLine({sql:String})", {"sql": statement.sql},
                              "RawBLOB").decode()
        # With the parameters bound: an {x:Identifier} is checked as the table it names.
        self.policy.check(self._engine(f"EXPLAIN AST {normal}", statement.params, "TabSeparatedRaw").decode())
        limits = self.limits
        return (f"{normal}\nSETTINGS readonly = 1, max_execution_time = {limits.seconds}, "
                f"max_memory_usage = {limits.memory_bytes}, max_result_rows = {limits.result_rows}, "
                "result_overflow_mode = 'throw', date_time_output_format = 'simple', "
                "output_format_json_quote_64bit_integers = 1")

    def run(self, params: dict[str, str], body: bytes, headers) -> tuple[int, bytes, dict[str, str]]:
        """``(status, body, headers)`` of one request."""
        if not self.authenticated(headers, params):
            return error_answer(AUTHENTICATION_FAILED)
        query_id = params.get("query_id")
        try:
            statement = parse_request(params, decompress(body, headers.get("Content-Encoding") or ""))
            query_id = statement.query_id
            result = self._engine(self.statement_sql(statement), statement.params, statement.default_format)
        except QueryError as error:
            return error_answer(error, query_id)
        except (UnicodeDecodeError, ValueError, OSError) as error:
            return error_answer(QueryError.of(27, "CANNOT_PARSE_INPUT_ASSERTION_FAILED", str(error)), query_id)
        body, out = answer(result, statement, params, headers.get("Accept-Encoding") or "", "faithwatch")
        return 200, body, out

    async def endpoint(self, request: Request) -> Response:
        params = dict(parse_qsl(request.url.query, keep_blank_values=True))
        if request.method == "GET" and "query" not in params:
            return Response(b"Ok.\n", media_type="text/plain; charset=UTF-8")
        body = await request.body()
        status, content, headers = await run_in_threadpool(self.run, params, body, request.headers)
        return Response(content, status_code=status, headers=headers)

    async def ping(self, request: Request) -> Response:
        return Response(b"Ok.\n", media_type="text/plain; charset=UTF-8")


def mount(app: FastAPI, store, tokens: list[bytes], limits: ProxyLimits | None = None) -> bool:
    """Adds ``/clickhouse`` (and ``/clickhouse/ping``) to ``app`` when ``store`` is the embedded
    one; a ClickHouse server store is read by Grafana directly. True when mounted."""
    if not hasattr(store, "query_bytes"):
        return False
    proxy = ClickHouseProxy(store, tokens, limits)
    for path in (PATH, PATH + "/"):
        app.add_api_route(path, proxy.endpoint, methods=["GET", "POST"], include_in_schema=False)
    app.add_api_route(PATH + "/ping", proxy.ping, methods=["GET"], include_in_schema=False)
    return True
