"""The ClickHouse HTTP interface, the part two servers share: how a request carries its
statement, parameters, settings and credentials, and how an answer or an error goes back.

Used by ``services.testing.clickhouse_http`` (a test ClickHouse server on chDB) and by
``services.clickhouse_proxy`` (``/clickhouse`` on ``faithwatch serve``: read-only SQL on the
embedded store). What clickhouse-connect 1.12 sends (docs/storage.md): the SQL as the POST body
or the ``query`` URL parameter; ``database``, ``default_format``, ``query_id``, ``session_id``,
``param_<name>`` values for ``{name:Type}`` placeholders, and engine settings as URL parameters;
an insert's data after ``INSERT ... FORMAT F`` and a newline; bodies and answers compressed
(gzip, deflate, lz4 frames, zstd). Errors are the engine's ``Code: N. DB::Exception: ...`` text
with a 4xx/5xx status and the ``X-ClickHouse-Exception-Code`` header.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

try:
    import lz4.frame as lz4_frame
except ImportError:  # pragma: no cover - clickhouse-connect installs it
    lz4_frame = None
try:
    from backports import zstd
except ImportError:  # pragma: no cover
    try:
        import zstandard as zstd  # type: ignore[no-redef]
    except ImportError:
        zstd = None

# URL parameters that are not engine settings.
HTTP_ONLY = {"query", "database", "default_format", "query_id", "session_id", "session_timeout",
             "session_check", "compress", "decompress", "user", "password", "quota_key",
             "buffer_size", "wait_end_of_query", "http_headers_progress_interval_ms",
             "send_progress_in_http_headers", "enable_http_compression", "http_zlib_compression_level",
             "client_protocol_version", "role", "stacktrace"}
_INSERT_WITH_DATA = re.compile(rb"(?is)^\s*(INSERT\s+INTO\s+.*?)\s+FORMAT\s+(\w+)[ \t]*\r?\n")
_FORMAT_CLAUSE = re.compile(r"(?is)\bFORMAT\s+(\w+)\s*;?\s*$")
_ERROR_CODE = re.compile(r"Code: (\d+)\.")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ClickHouse's HTTP status for common codes (others are 500).
_STATUS = {36: 400, 47: 404, 53: 400, 60: 404, 62: 400, 73: 400, 81: 404, 115: 400, 159: 500, 164: 403,
           241: 500, 373: 409, 456: 400, 457: 400, 497: 403, 516: 401}
BINARY_FORMATS = ("Native", "RowBinary", "RowBinaryWithNamesAndTypes", "Parquet", "Arrow", "ArrowStream")


class QueryError(Exception):
    """An error the client gets as ClickHouse sends it: ``Code: N. DB::Exception: ...``."""

    def __init__(self, code: int, message: str):
        self.code = code
        super().__init__(message)

    @classmethod
    def of(cls, code: int, name: str, text: str) -> QueryError:
        return cls(code, f"Code: {code}. DB::Exception: {text}. ({name})")

    @classmethod
    def from_engine(cls, text: str) -> QueryError:
        """The engine's error text (the code read from it; 1 when it carries none)."""
        text = text.strip()
        found = _ERROR_CODE.search(text)
        code = int(found.group(1)) if found else 1
        start = text.find("Code:")
        text = text[start:] if start >= 0 else f"Code: {code}. DB::Exception: {text}"
        return cls(code, text)


AUTHENTICATION_FAILED = QueryError.of(516, "AUTHENTICATION_FAILED", "default: Authentication failed: password is "
                                      "incorrect, or there is no user with such name")


def decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4" and lz4_frame is not None:
        # clickhouse-connect compresses each block of an insert as its own frame, and
        # lz4.frame.decompress reads only the first one: read every frame.
        parts = []
        while body:
            frame = lz4_frame.LZ4FrameDecompressor()
            parts.append(frame.decompress(body))
            body = frame.unused_data
        return b"".join(parts)
    if encoding == "zstd" and zstd is not None:
        return zstd.decompress(body)
    raise QueryError.of(1, "UNSUPPORTED_METHOD", f"Unknown Content-Encoding {encoding}")


def _compress(body: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(body, compresslevel=1)
    if encoding == "deflate":
        return zlib.compress(body, 1)
    if encoding == "lz4":
        return lz4_frame.compress(body)
    return zstd.compress(body)


def _supported(encoding: str) -> bool:
    return (encoding in ("gzip", "deflate") or (encoding == "lz4" and lz4_frame is not None)
            or (encoding == "zstd" and zstd is not None))


def credentials(headers: Mapping[str, str], params: Mapping[str, str]) -> tuple[str, str]:
    """``(user, password)`` from basic auth, ``X-ClickHouse-User``/``-Key`` headers or the
    ``user``/``password`` URL parameters (that order of precedence, as a server reads them)."""
    user, password = params.get("user"), params.get("password")
    if headers.get("X-ClickHouse-User") or headers.get("X-ClickHouse-Key"):
        user, password = headers.get("X-ClickHouse-User"), headers.get("X-ClickHouse-Key", "")
    auth = headers.get("Authorization") or ""
    if auth.startswith("Basic "):
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except ValueError:
            user, password = None, None
    return user or "default", password or ""


@dataclass(frozen=True)
class Statement:
    """One request's statement and what goes with it."""

    sql: str
    data: bytes | None  # an insert's rows, in data_format
    data_format: str | None
    database: str | None
    params: dict[str, str]  # {name:Type} placeholder values, as text
    settings: dict[str, str]
    query_id: str
    default_format: str

    @property
    def output_format(self) -> str:
        """The answer's format: the statement's ``FORMAT`` clause, else ``default_format``."""
        match = _FORMAT_CLAUSE.search(self.sql)
        return match.group(1) if match and self.data is None else self.default_format


def parse_request(params: Mapping[str, str], body: bytes) -> Statement:
    """The statement of a request (``params``: its URL parameters; ``body``: decompressed)."""
    data = data_format = None
    if "query" in params:
        sql = params["query"]
        if body:
            match = _INSERT_WITH_DATA.match(sql.encode() + b"\n")
            if match is None:
                sql = sql + "\n" + body.decode()
            else:
                sql, data_format, data = match.group(1).decode(), match.group(2).decode(), body
    else:
        match = _INSERT_WITH_DATA.match(body)
        if match is None:
            sql = body.decode()
        else:
            sql, data_format, data = match.group(1).decode(), match.group(2).decode(), body[match.end():]
    database = params.get("database")
    if database is not None and not NAME.match(database):
        raise QueryError.of(81, "UNKNOWN_DATABASE", f"Database {database} does not exist")
    if data_format is not None and not NAME.match(data_format):
        raise QueryError.of(73, "UNKNOWN_FORMAT", f"Unknown format {data_format}")
    return Statement(
        sql=sql.strip().rstrip(";"), data=data, data_format=data_format, database=database,
        params={name[6:]: value for name, value in params.items() if name.startswith("param_")},
        settings={name: value for name, value in params.items()
                  if name not in HTTP_ONLY and not name.startswith("param_")},
        query_id=params.get("query_id") or str(uuid.uuid4()),
        default_format=params.get("default_format", "TabSeparated"))


def answer(result: bytes, statement: Statement, params: Mapping[str, str], accept_encoding: str,
           server_name: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a successful answer (compressed when the client asked for it)."""
    fmt = statement.output_format
    headers = {"Content-Type": "application/octet-stream" if fmt in BINARY_FORMATS else "text/plain; charset=UTF-8",
               "X-ClickHouse-Format": fmt, "X-ClickHouse-Timezone": "UTC",
               "X-ClickHouse-Query-Id": statement.query_id, "X-ClickHouse-Server-Display-Name": server_name,
               "X-ClickHouse-Summary": json.dumps({"read_rows": "0", "written_rows": "0"})}
    if params.get("enable_http_compression") == "1":
        for choice in accept_encoding.split(","):
            encoding = choice.split(";")[0].strip().lower()
            if _supported(encoding):
                result = _compress(result, encoding)
                headers["Content-Encoding"] = encoding
                break
    return result, headers


def error_answer(error: QueryError, query_id: str | None = None) -> tuple[int, bytes, dict[str, str]]:
    """``(status, body, headers)`` of an error, as a server sends it."""
    headers = {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(error.code)}
    if query_id:
        headers["X-ClickHouse-Query-Id"] = query_id
    return _STATUS.get(error.code, 500), (str(error) + "\n").encode(), headers
