"""``/clickhouse`` on the API: read-only ClickHouse HTTP on the embedded store, through real HTTP
(uvicorn on a free 127.0.0.1 port) with clickhouse-connect as the client, the same protocol as
Grafana's ClickHouse plugin (protocol http, path /clickhouse, basic auth with an API token)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import clickhouse_connect
import httpx
import pytest
import yaml
from clickhouse_connect.driver.exceptions import DatabaseError
from fastapi import FastAPI

from pipelines.records import ClusterInfo
from services import clickhouse_proxy
from services.api import serve_in_thread
from services.settings import load_settings
from services.testing.live_api import live_api

TOKEN = "t0ken-for-the-proxy"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
SECRET = "faithwatch-secret-file-content"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("proxy")
    secret = data / "secret.csv"
    secret.write_text(SECRET + "\n")
    settings = load_settings(data_dir=data, embedding={"backend": "hashing"},
                             api={"tokens": [TOKEN], "clickhouse_max_result_rows": 10_000})

    def seed(store) -> None:
        store.upsert_clusters([
            ClusterInfo(cluster_id=cid, label=f"{cid} label", category="pricing", terms=("a",),
                        representative_query="q", size=3, centroid_version=1, first_seen=T0,
                        last_seen=T0 + timedelta(hours=1)) for cid in ("k1", "k2")])

    with live_api(settings, seed=seed, batch_size=8, cluster_refresh_seconds=0) as api:
        small = FastAPI()  # the same endpoint with tiny limits, for the limit tests
        clickhouse_proxy.mount(small, api.store, [TOKEN.encode()],
                               clickhouse_proxy.ProxyLimits(seconds=1, memory_bytes=20 * 1024**2, result_rows=10))
        with serve_in_thread(small) as small_url:
            yield SimpleNamespace(url=api.url, small_url=small_url, store=api.store, secret=secret,
                                  port=int(api.url.rsplit(":", 1)[1]), small_port=int(small_url.rsplit(":", 1)[1]))


def client(served, password: str = TOKEN, port: int | None = None, **kwargs):
    return clickhouse_connect.get_client(host="127.0.0.1", port=port or served.port, username="grafana",
                                         password=password, proxy_path="/clickhouse", **kwargs)


def post(served, sql: str, url: str | None = None, **params) -> httpx.Response:
    return httpx.post(f"{url or served.url}/clickhouse", content=sql.encode(), params=params,
                      auth=("grafana", TOKEN), timeout=30)


def test_clickhouse_connect_reads_the_store_through_the_proxy_path(served):
    with client(served) as ch:
        assert ch.command("SELECT 1") == 1
        result = ch.query("SELECT cluster_id, label FROM clusters FINAL ORDER BY cluster_id")
        assert result.result_rows == [("k1", "k1 label"), ("k2", "k2 label")]
        bound = ch.query("SELECT label FROM clusters FINAL WHERE cluster_id = {c:String}", parameters={"c": "k2"})
        assert bound.result_rows == [("k2 label",)]
        client_side = ch.query("SELECT count() FROM clusters FINAL WHERE cluster_id = %(c)s", parameters={"c": "k1"})
        assert client_side.result_rows == [(1,)]


def test_grafana_schema_browsing_works(served):
    with client(served) as ch:
        assert "faithwatch" in ch.command("SHOW DATABASES")
        assert "clusters" in [row[0] for row in ch.query("SHOW TABLES").result_rows]
        columns = ch.query("SELECT name, type FROM system.columns WHERE database = 'faithwatch' "
                           "AND table = 'clusters' ORDER BY position").result_rows
        assert columns[0] == ("cluster_id", "String")
        assert ch.query("DESCRIBE TABLE clusters").result_rows[0][:2] == ("cluster_id", "String")


@pytest.mark.parametrize("password", ["wrong", ""])
def test_a_wrong_or_missing_token_is_refused(served, password):
    with pytest.raises(DatabaseError, match="516|AUTHENTICATION_FAILED"):
        client(served, password=password)
    answer = httpx.post(f"{served.url}/clickhouse", content=b"SELECT 1", timeout=10)
    assert answer.status_code == 401 and "AUTHENTICATION_FAILED" in answer.text


def test_other_ways_to_send_the_token(served):
    for kwargs in ({"headers": {"X-ClickHouse-User": "g", "X-ClickHouse-Key": TOKEN}},
                   {"params": {"user": "g", "password": TOKEN}},
                   {"headers": {"Authorization": f"Bearer {TOKEN}"}}):
        answer = httpx.post(f"{served.url}/clickhouse", content=b"SELECT 42", timeout=10, **kwargs)
        assert answer.status_code == 200 and answer.text == "42\n", kwargs


def test_ping_needs_no_token(served):
    for path in ("/clickhouse/ping", "/clickhouse"):
        assert httpx.get(served.url + path, timeout=10).text == "Ok.\n"


WRITES = [
    "INSERT INTO clusters (cluster_id) VALUES ('evil')",
    "INSERT INTO clusters (cluster_id) SELECT 'evil'",
    "CREATE TABLE evil (x UInt8) ENGINE = Memory",
    "DROP TABLE clusters",
    "TRUNCATE TABLE clusters",
    "ALTER TABLE clusters DELETE WHERE 1",
    "OPTIMIZE TABLE clusters FINAL",
    "RENAME TABLE clusters TO evil",
    "SET readonly = 0",
    "SELECT 1 SETTINGS readonly = 0",
    "SYSTEM DROP MARK CACHE",
    "KILL QUERY WHERE 1",
    "SELECT 1; DROP TABLE clusters",
    "SELECT 1 -- comment\n; DROP TABLE clusters",
    "CREATE TEMPORARY TABLE evil (x UInt8)",
    "GRANT ALL ON *.* TO default",
]


@pytest.mark.parametrize("sql", WRITES)
def test_writes_ddl_and_settings_are_refused(served, sql):
    answer = post(served, sql)
    assert answer.status_code in (400, 403), answer.text
    assert answer.headers["X-ClickHouse-Exception-Code"] in ("62", "164"), answer.text
    assert served.store.query("SELECT count() AS n FROM clusters FINAL")[0]["n"] == 2
    assert served.store.query("SELECT count() AS n FROM system.tables WHERE name = 'evil'")[0]["n"] == 0


READS_OUTSIDE = [
    "SELECT * FROM file('{secret}', CSV)",
    "SELECT file('{secret}')",
    "SELECT * FROM (SELECT * FROM file('{secret}', 'CSV'))",
    "SELECT 1 WHERE 'x' IN (SELECT * FROM file('{secret}', CSV))",
    "SELECT * FROM url('http://127.0.0.1:9/x', CSV)",
    "SELECT * FROM remote('127.0.0.1', system.one)",
    "SELECT * FROM s3('http://127.0.0.1:9/b/k', CSV)",
    "SELECT * FROM mysql('127.0.0.1:9', 'db', 't', 'u', 'p')",
    "SELECT * FROM executable('cat', CSV, 'x String')",
    "SELECT * FROM merge('system', '.*')",
    "SELECT * FROM system.users",
    "SELECT name FROM system.users",
    "SELECT 1 FROM clusters WHERE cluster_id IN system.users",
    "SELECT * FROM default.anything",
    "SELECT dictGet('d', 'x', 1)",
    "SELECT joinGet('clusters', 'label', 'k1')",
]


@pytest.mark.parametrize("sql", READS_OUTSIDE)
def test_files_urls_other_servers_and_other_tables_are_refused(served, sql):
    answer = post(served, sql.format(secret=served.secret))
    assert answer.status_code in (403, 404), answer.text
    assert answer.headers["X-ClickHouse-Exception-Code"] in ("164", "497"), answer.text
    assert SECRET not in answer.text


def test_another_database_and_inserts_through_the_client_are_refused(served):
    answer = post(served, "SELECT 1", database="default")
    assert answer.status_code == 404 and "UNKNOWN_DATABASE" in answer.text
    with client(served) as ch, pytest.raises(DatabaseError, match="164|READONLY"):
        ch.insert("clusters", [["evil"]], column_names=["cluster_id"])
    assert served.store.query("SELECT count() AS n FROM clusters FINAL")[0]["n"] == 2


@pytest.mark.parametrize(("sql", "code"), [
    ("SELECT sum(cityHash64(number)) FROM numbers(100000000000)", "159"),
    ("SELECT length(groupArray(toString(number))) FROM numbers(50000000)", "241"),
    ("SELECT number FROM numbers(100)", "396"),
])
def test_per_query_limits(served, sql, code):
    answer = post(served, sql, url=served.small_url)
    assert answer.headers.get("X-ClickHouse-Exception-Code") == code, answer.text
    assert post(served, "SELECT 1", url=served.small_url).text == "1\n"


def test_output_as_a_server_writes_it(served):
    """The store's session prints times ISO and 64-bit integers unquoted; a client gets the defaults."""
    answer = post(served, "SELECT toDateTime('2026-11-02 10:00:00', 'UTC') AS t, toUInt64(7) AS n FORMAT JSONEachRow")
    assert answer.json() == {"t": "2026-11-02 10:00:00", "n": "7"}


def test_the_embedded_data_source_provisioning_reaches_the_endpoint(served, monkeypatch):
    """Grafana's settings from dashboards/provisioning/datasources-embedded, as Grafana expands
    them from its environment, are enough for a client of the same protocol."""
    root = Path(__file__).resolve().parents[2] / "dashboards" / "provisioning"
    monkeypatch.setenv("SERVE_HOST", "127.0.0.1")
    monkeypatch.setenv("SERVE_PORT", str(served.port))
    monkeypatch.setenv("SERVE_TOKEN", TOKEN)
    text = (root / "datasources-embedded" / "faithwatch-embedded.yaml").read_text()
    (source,) = yaml.safe_load(os.path.expandvars(text))["datasources"]
    (server,) = yaml.safe_load((root / "datasources" / "clickhouse.yaml").read_text())["datasources"]
    assert source["uid"] == server["uid"] and source["type"] == server["type"]
    settings = source["jsonData"]
    assert settings["protocol"] == "http"
    with clickhouse_connect.get_client(host=settings["host"], port=int(settings["port"]),
                                       username=settings["username"], password=source["secureJsonData"]["password"],
                                       database=settings["defaultDatabase"], proxy_path=settings["path"]) as ch:
        assert ch.query("SELECT count() FROM clusters FINAL").result_rows == [(2,)]



def test_serve_takes_the_limits_from_the_api_settings(served):
    """The module's API runs with api.clickhouse_max_result_rows = 10,000."""
    assert post(served, "SELECT number FROM numbers(10000)").status_code == 200
    answer = post(served, "SELECT number FROM numbers(10001)")
    assert answer.headers.get("X-ClickHouse-Exception-Code") == "396", answer.text
