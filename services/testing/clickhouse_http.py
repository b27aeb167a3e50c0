"""A ClickHouse HTTP interface in front of chDB: enough of the protocol for clickhouse-connect.

Run it in its own process (chDB opens one data path per process)::

    python -m services.testing.clickhouse_http --port 8123 --path /tmp/ch
    # prints "listening on http://127.0.0.1:8123" once it accepts requests

What it implements (what clickhouse-connect 1.12 sends, see docs/storage.md):

- ``GET /ping`` and ``GET /`` answer ``Ok.``; ``GET/POST /?query=...`` and ``POST /`` with the
  SQL as the body run one statement. ``INSERT INTO t (cols) FORMAT F`` + newline + data (the
  Native block clickhouse-connect sends, chunked) loads the data through ``file(..., F)``.
- URL parameters: ``database``, ``default_format`` (TabSeparated otherwise), ``param_<name>``
  values for ``{name:Type}`` placeholders (passed on to chDB as text, parsed by the engine),
  ``query_id`` (echoed), ``session_id`` (a second concurrent request in a session in use fails
  with code 373 SESSION_IS_LOCKED, as on a server), and any other engine setting, applied for
  that request only. HTTP-only switches (``compress``, ``wait_end_of_query``, ...) are ignored.
- Compression: request bodies in ``Content-Encoding`` gzip, deflate, lz4 (frame), zstd; answers
  compressed with the client's first ``Accept-Encoding`` choice that is supported, when
  ``enable_http_compression=1``.
- Errors: the engine's ``Code: N. DB::Exception: ...`` text, a 4xx/5xx status and the
  ``X-ClickHouse-Exception-Code`` header, like a server.
- Optional ``--user``/``--password``: basic auth or ``X-ClickHouse-User``/``-Key`` headers,
  516 AUTHENTICATION_FAILED otherwise.
- An outage on demand (fault tests): after SIGUSR1 every request, ``/ping`` included, gets
  503 Service Unavailable without reaching the engine, until SIGUSR2
  (:meth:`ServerProcess.unavailable`).

The protocol (parsing a request, encoding an answer or an error) is services.clickhouse_protocol,
shared with ``/clickhouse`` on ``faithwatch serve``. Requests run one at a time on one chDB
session (settings and ``USE`` are per request). It is a
test server: no TLS, no progress headers, no multi-statement queries.
"""

from __future__ import annotations

import argparse
import hmac
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import chdb.session
from pydantic import SecretStr

from services.clickhouse_protocol import (
    AUTHENTICATION_FAILED,
    QueryError,
    credentials,
    decompress,
    error_answer,
    parse_request,
)
from services.clickhouse_protocol import answer as encode_answer
from services.testing import stop_process


class ChdbEngine:
    """One chDB session that runs one request at a time with its own settings and database."""

    def __init__(self, path: Path):
        self.session = chdb.session.Session(str(path))
        self.lock = threading.Lock()
        self.spool = Path(tempfile.mkdtemp(prefix="ch-http-"))
        self.known_settings = set(self.session.query(
            "SELECT name FROM system.settings", "TabSeparated").bytes().decode().split("\n")) - {""}

    def run(self, sql: str, data: bytes | None, data_format: str | None, database: str | None,
            settings: dict[str, str], params: dict[str, str], default_format: str) -> bytes:
        """The result of one statement."""
        with self.lock:
            applied = []
            try:
                self._call(f"USE {database or 'default'}", {}, "TabSeparated")
                for name, value in settings.items():
                    if name in self.known_settings:
                        self._call(f"SET {name} = {{value:String}}", {"value": value}, "TabSeparated")
                        applied.append(name)
                if data is None:
                    return self._call(sql, params, default_format)
                spool = self.spool / f"{uuid.uuid4().hex}.data"
                spool.write_bytes(data)
                try:
                    self._call(f"{sql} SELECT * FROM file('{spool}', {data_format})", params, "TabSeparated")
                finally:
                    spool.unlink(missing_ok=True)
                return b""
            finally:
                for name in applied:
                    self._call(f"SET {name} = DEFAULT", {}, "TabSeparated")

    def _call(self, sql: str, params: dict[str, str], fmt: str) -> bytes:
        try:
            return self.session.query(sql, fmt, params=params).bytes()
        except RuntimeError as error:
            raise QueryError.from_engine(str(error)) from error

    def close(self) -> None:
        with self.lock:
            self.session.close()
            for leftover in self.spool.iterdir():
                leftover.unlink()
            self.spool.rmdir()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ClickHouseHttpServer

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's name
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:  # noqa: N802
        if self._down():
            return
        url = urlsplit(self.path)
        if url.path in ("/ping", "/") and "query" not in dict(parse_qsl(url.query)):
            self._reply(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        self._handle(b"")

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = self._read_body()
        except QueryError as error:
            self._error(error)
            return
        if not self._down():
            self._handle(body)

    def _down(self) -> bool:
        """Answer 503 when the server plays unavailable (SIGUSR1 .. SIGUSR2)."""
        if not self.server.unavailable:
            return False
        self._reply(503, b"Service Unavailable (the test server is down on purpose)\n",
                    {"Content-Type": "text/plain; charset=UTF-8"})
        return True

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        return decompress(body, self.headers.get("Content-Encoding", ""))

    def _authenticated(self, params: dict[str, str]) -> bool:
        if self.server.password is None:
            return True
        user, password = credentials(self.headers, params)
        return user == self.server.user and hmac.compare_digest(password.encode(), self.server.password.encode())

    def _handle(self, body: bytes) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        if not self._authenticated(params):
            self._error(AUTHENTICATION_FAILED)
            return
        session_id = params.get("session_id")
        if session_id and not self.server.acquire_session(session_id):
            self._error(QueryError(373, f"Code: 373. DB::Exception: Session {session_id} is locked by a "
                                        "concurrent client. (SESSION_IS_LOCKED)"))
            return
        try:
            self._run(params, body)
        finally:
            if session_id:
                self.server.release_session(session_id)

    def _run(self, params: dict[str, str], body: bytes) -> None:
        query_id = params.get("query_id")
        try:
            statement = parse_request(params, body)
            query_id = statement.query_id
            result = self.server.engine.run(statement.sql, statement.data, statement.data_format,
                                            statement.database, statement.settings, statement.params,
                                            statement.default_format)
        except QueryError as error:
            self._error(error, query_id)
            return
        result, headers = encode_answer(result, statement, params, self.headers.get("Accept-Encoding", ""),
                                        "chdb-http")
        self._reply(200, result, headers)

    def _error(self, error: QueryError, query_id: str | None = None) -> None:
        self._reply(*error_answer(error, query_id))

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ClickHouseHttpServer(ThreadingHTTPServer):
    """The server on ``(host, port)`` (port 0: a free one, read ``server_address``)."""

    daemon_threads = True

    def __init__(self, path: Path, host: str = "127.0.0.1", port: int = 0, user: str = "default",
                 password: str | None = None, verbose: bool = False):
        self.engine = ChdbEngine(path)
        self.user, self.password, self.verbose = user, password, verbose
        self.unavailable = False
        self._sessions: set[str] = set()
        self._sessions_lock = threading.Lock()
        try:
            super().__init__((host, port), _Handler)
        except BaseException:
            self.engine.close()
            raise

    def acquire_session(self, session_id: str) -> bool:
        with self._sessions_lock:
            if session_id in self._sessions:
                return False
            self._sessions.add(session_id)
            return True

    def release_session(self, session_id: str) -> None:
        with self._sessions_lock:
            self._sessions.discard(session_id)

    def server_close(self) -> None:
        super().server_close()
        self.engine.close()


@dataclass
class ServerProcess:
    """This server in a child process (chDB opens one data path per process, so a test or a
    benchmark that opens its own stores runs the server beside it)::

        with ServerProcess.start(tmp / "ch", password="pw") as server:
            store = server.store("db1")
    """

    url: str
    user: str
    password: SecretStr
    process: subprocess.Popen

    @classmethod
    def start(cls, path: Path, password: str, user: str = "default", timeout: float = 60.0) -> ServerProcess:
        import os

        process = subprocess.Popen(
            [sys.executable, "-m", "services.testing.clickhouse_http", "--port", "0", "--path", str(path),
             "--user", user, "--password", password],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not first or not first[0].startswith("listening on "):
            process.kill()
            _, err = process.communicate(timeout=10)
            raise RuntimeError(f"the ClickHouse HTTP test server did not start: {first} {err[-2000:]}")
        return cls(first[0].split()[-1], user, SecretStr(password), process)

    def store(self, database: str):
        from services.store.clickhouse_store import ClickHouseStore

        return ClickHouseStore(self.url, user=self.user, password=self.password, database=database)

    def unavailable(self, down: bool) -> None:
        """Play a server that is down (every request answered 503) or back up."""
        self.process.send_signal(signal.SIGUSR1 if down else signal.SIGUSR2)

    def stop(self) -> None:
        stop_process(self.process, timeout=30)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123, help="0 picks a free port")
    parser.add_argument("--path", type=Path, required=True, help="chDB data directory")
    parser.add_argument("--user", default="default")
    parser.add_argument("--password", default=None, help="require this password (default: none)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    args.path.mkdir(parents=True, exist_ok=True)
    server = ClickHouseHttpServer(args.path, args.host, args.port, args.user, args.password, args.verbose)
    # SIGTERM ends serve_forever like Ctrl-C does, so the chDB session is closed cleanly.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    signal.signal(signal.SIGUSR1, lambda *_: setattr(server, "unavailable", True))
    signal.signal(signal.SIGUSR2, lambda *_: setattr(server, "unavailable", False))
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
