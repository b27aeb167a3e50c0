"""The ClickHouse HTTP test server, spoken to by clickhouse-connect and by plain HTTP.

The server runs in its own process (fixture ``clickhouse_server`` in tests/services/conftest.py);
the whole storage suite also runs through it (tests/services/test_store.py, backend
``clickhouse``). Here: the protocol details that suite does not choose itself.
"""

from __future__ import annotations

import uuid
import zlib
from datetime import UTC, datetime

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError


def client(server, **kwargs):
    return clickhouse_connect.get_client(host="127.0.0.1", port=int(server.url.rsplit(":", 1)[1]),
                                         username=server.user, password=server.password.get_secret_value(),
                                         **kwargs)


@pytest.mark.parametrize("compress", [False, "gzip", "lz4", "zstd"])
def test_insert_and_query_round_trip_with_each_compression(clickhouse_server, compress):
    table = f"t_{uuid.uuid4().hex[:10]}"
    with client(clickhouse_server, compress=compress) as ch:
        ch.command(f"CREATE TABLE default.{table} (id UInt32, s String, at DateTime64(3, 'UTC'), "
                   "xs Array(Nullable(String))) ENGINE = MergeTree ORDER BY id")
        rows = [[n, f"row\t{n}'\n", datetime(2026, 11, 2, 10, 0, n % 60, 1000 * n % 1_000_000, tzinfo=UTC),
                 ["a", None]] for n in range(3000)]
        ch.insert(f"default.{table}", rows, column_names=["id", "s", "at", "xs"])
        got = ch.query(f"SELECT id, s, at, xs FROM default.{table} WHERE id >= {{low:UInt32}} ORDER BY id",
                       parameters={"low": 2990}).result_rows
        assert [(r[0], r[1], r[3]) for r in got] == [(n, f"row\t{n}'\n", ["a", None]) for n in range(2990, 3000)]
        sent = rows[2990][2]
        assert got[0][2].replace(tzinfo=UTC) == sent.replace(microsecond=sent.microsecond // 1000 * 1000)
        ch.command(f"DROP TABLE default.{table}")


@pytest.mark.parametrize("compress", [False, "gzip", "lz4", "zstd"])
def test_an_insert_of_several_blocks_arrives_whole(clickhouse_server, compress):
    """clickhouse-connect cuts a large insert into blocks (8192 rows of ~400 bytes here) and
    compresses each block as its own frame: every frame is read, not only the first."""
    table = f"t_{uuid.uuid4().hex[:10]}"
    with client(clickhouse_server, compress=compress) as ch:
        ch.command(f"CREATE TABLE default.{table} (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
        ch.insert(f"default.{table}", [[n, f"{n:08d}" * 50] for n in range(20_000)], column_names=["id", "s"])
        assert ch.query(f"SELECT count(), uniqExact(id), max(id) FROM default.{table}").result_rows == [
            (20_000, 20_000, 19_999)]
        ch.command(f"DROP TABLE default.{table}")


def test_errors_carry_the_engine_code_status_and_header(clickhouse_server):
    auth = (clickhouse_server.user, clickhouse_server.password.get_secret_value())
    with httpx.Client(base_url=clickhouse_server.url, auth=auth) as http:
        assert http.get("/ping").text == "Ok.\n"
        missing = http.post("/", content=b"SELECT * FROM default.no_such_table")
        assert missing.status_code == 404
        assert missing.headers["X-ClickHouse-Exception-Code"] == "60"
        assert missing.text.startswith("Code: 60. DB::Exception:")
        syntax = http.post("/", params={"query": "SELEC 1"})
        assert (syntax.status_code, syntax.headers["X-ClickHouse-Exception-Code"]) == (400, "62")
        ok = http.post("/", params={"param_x": "it's", "default_format": "JSONEachRow"},
                       content=b"SELECT {x:String} AS x")
        assert (ok.status_code, ok.text, ok.headers["X-ClickHouse-Format"]) == (200, '{"x":"it\'s"}\n', "JSONEachRow")
        gzipped = http.post("/", params={"enable_http_compression": "1"}, content=b"SELECT 42",
                            headers={"Accept-Encoding": "gzip"})
        assert (gzipped.headers["Content-Encoding"], gzipped.text) == ("gzip", "42\n")
        deflated = http.post("/", content=zlib.compress(b"SELECT 7"), headers={"Content-Encoding": "deflate"})
        assert deflated.text == "7\n"
    with httpx.Client(base_url=clickhouse_server.url) as anonymous:
        denied = anonymous.post("/", content=b"SELECT 1")
        assert (denied.status_code, denied.headers["X-ClickHouse-Exception-Code"]) == (401, "516")


def test_a_session_in_use_is_locked_like_on_a_server(clickhouse_server):
    """Two concurrent requests in one session: one runs, the other is refused with code 373."""
    import threading

    auth = (clickhouse_server.user, clickhouse_server.password.get_secret_value())
    session = str(uuid.uuid4())
    replies: list[httpx.Response] = []
    with httpx.Client(base_url=clickhouse_server.url, auth=auth, timeout=60) as http:
        workers = [threading.Thread(target=lambda: replies.append(http.post(
            "/", params={"session_id": session}, content=b"SELECT sleep(2)"))) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        after = http.post("/", params={"session_id": session}, content=b"SELECT 1")
    assert sorted(reply.status_code for reply in replies) == [200, 409]
    [refused] = [reply for reply in replies if reply.status_code == 409]
    assert refused.headers["X-ClickHouse-Exception-Code"] == "373"
    assert after.status_code == 200  # the session is free again


def test_settings_apply_to_one_request_only(clickhouse_server):
    with client(clickhouse_server) as ch:
        assert ch.query("SELECT getSetting('max_threads') AS v", settings={"max_threads": 1}).result_rows == [(1,)]
        assert ch.query("SELECT getSetting('max_threads') != 1").result_rows == [(True,)]
    with pytest.raises(DatabaseError, match="UNKNOWN_DATABASE|does not exist"):
        clickhouse_connect.get_client(host="127.0.0.1", port=int(clickhouse_server.url.rsplit(":", 1)[1]),
                                      username="default", database="no_such_db",
                                      password=clickhouse_server.password.get_secret_value())
