"""``faithwatch dashboards sync`` against a stand-in of Grafana's HTTP API that checks every request
(services/testing/grafana_standin.py): no Grafana server can be installed on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import main
from services.testing.grafana_standin import GrafanaStandin

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = {json.loads(p.read_text())["uid"]: json.loads(p.read_text())
             for p in sorted((ROOT / "dashboards" / "json").glob("*.json"))}
TOKEN = "glsa_service_account_token"


def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["dashboards", "sync", *args], env=env)
    return result.exit_code, result.output


@pytest.fixture
def embedded_env(tmp_path) -> dict[str, str]:
    return {"FAITHWATCH_DATA_DIR": str(tmp_path), "FAITHWATCH_API__TOKENS": '["api-token-1"]',
            "GRAFANA_TOKEN": TOKEN}


def test_sync_creates_then_updates_one_folder_one_data_source_three_dashboards(embedded_env):
    with GrafanaStandin(token=TOKEN) as grafana:
        args = ["--grafana-url", grafana.url, "--store-url", "http://faithwatch:8000/clickhouse"]
        code, output = run(args, embedded_env)
        assert code == 0, output
        assert grafana.rejected == []
        writes = [r for r in grafana.requests if r[0] != "GET"]
        assert writes == [("POST", "/api/folders"), ("POST", "/api/datasources")] + [("POST", "/api/dashboards/db")] * 3
        assert list(grafana.folders) == ["faithwatch"]
        (source,) = grafana.datasources.values()
        assert source["uid"] == "faithwatch-clickhouse" and source["type"] == "grafana-clickhouse-datasource"
        assert source["jsonData"] == {"host": "faithwatch", "port": 8000, "protocol": "http", "secure": False,
                                      "path": "/clickhouse", "username": "grafana", "defaultDatabase": "faithwatch"}
        assert source["secureJsonData"] == {"password": "api-token-1"}
        assert set(grafana.dashboards) == set(COMMITTED)
        for uid, saved in grafana.dashboards.items():
            assert saved["folderUid"] == "faithwatch" and saved["dashboard"]["version"] == 1
            model = {k: v for k, v in saved["dashboard"].items() if k not in ("id", "version")}
            assert model == {k: v for k, v in COMMITTED[uid].items() if k not in ("id", "version")}
        assert "dashboard faithwatch-incident (incident.json): version 1, /d/faithwatch-incident/" in output

        grafana.requests.clear()
        code, output = run(args, embedded_env)
        assert code == 0, output
        assert grafana.rejected == []
        writes = [r for r in grafana.requests if r[0] != "GET"]
        assert writes == [("PUT", "/api/folders/faithwatch"), ("PUT", "/api/datasources/uid/faithwatch-clickhouse")] \
            + [("POST", "/api/dashboards/db")] * 3
        assert len(grafana.folders) == 1 and len(grafana.datasources) == 1 and len(grafana.dashboards) == 3
        assert {saved["dashboard"]["version"] for saved in grafana.dashboards.values()} == {2}
        assert "folder faithwatch: updated" in output


def test_a_clickhouse_server_store_is_the_default_target(tmp_path):
    env = {"FAITHWATCH_DATA_DIR": str(tmp_path), "FAITHWATCH_STORE__BACKEND": "clickhouse",
           "FAITHWATCH_STORE__URL": "https://clickhouse.internal:8443", "FAITHWATCH_STORE__USER": "fw",
           "FAITHWATCH_STORE__PASSWORD": "ch-secret", "GRAFANA_TOKEN": TOKEN}
    with GrafanaStandin(token=TOKEN) as grafana:
        code, output = run(["--grafana-url", grafana.url], env)
        assert code == 0, output
        (source,) = grafana.datasources.values()
        assert source["jsonData"] == {"host": "clickhouse.internal", "port": 8443, "protocol": "http", "secure": True,
                                      "username": "fw", "defaultDatabase": "faithwatch"}
        assert source["secureJsonData"] == {"password": "ch-secret"}


def test_a_wrong_token_is_a_clear_error(embedded_env):
    with GrafanaStandin(token=TOKEN) as grafana:
        code, output = run(["--grafana-url", grafana.url, "--grafana-token", "wrong",
                            "--store-url", "http://faithwatch:8000/clickhouse"], embedded_env)
        assert code == 2 and "Grafana refused a request" in output and "401" in output
        assert grafana.folders == {} and grafana.dashboards == {}


def test_missing_settings_are_clear_errors(embedded_env, tmp_path):
    with GrafanaStandin(token=TOKEN) as grafana:
        code, output = run(["--grafana-url", grafana.url], embedded_env)
        assert code == 2 and "--store-url is needed" in output
        code, output = run(["--grafana-url", grafana.url, "--store-url", "http://x:1/clickhouse"],
                           {**embedded_env, "GRAFANA_TOKEN": ""})
        assert code == 2 and "service-account token" in output
        assert grafana.requests == []


def test_an_unreachable_grafana_is_a_clear_error(embedded_env):
    with GrafanaStandin(token=TOKEN) as grafana:
        url = grafana.url
    code, output = run(["--grafana-url", url, "--store-url", "http://x:1/clickhouse"], embedded_env)
    assert code == 2 and "cannot reach Grafana" in output


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("POST", "/api/folders", {"uid": "a"}, 400),
    ("POST", "/api/folders", {"title": "t", "color": "red"}, 400),
    ("POST", "/api/folders", {"title": "t", "uid": "bad uid!"}, 400),
    ("POST", "/api/datasources", {"name": "n", "type": "t", "access": "browser"}, 400),
    ("PUT", "/api/datasources/uid/none", {"name": "n", "type": "t", "access": "proxy"}, 404),
    ("POST", "/api/dashboards/db", {"dashboard": {"uid": "u"}}, 400),
    ("POST", "/api/dashboards/db", {"dashboard": {"title": "t", "uid": "u"}, "folderUid": "nope"}, 400),
    ("POST", "/api/dashboards/db", {"dashboard": {"title": "t", "uid": "u", "id": 7}}, 404),
    ("DELETE", "/api/dashboards/uid/u", None, 404),
])
def test_the_standin_refuses_what_grafana_refuses(method, path, body, status):
    import httpx

    with GrafanaStandin(token=TOKEN) as grafana:
        answer = httpx.request(method, grafana.url + path, json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == status and len(grafana.rejected) == 1
