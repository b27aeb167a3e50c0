from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.errors import ConfigError
from services.cli import main
from services.settings import load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for k in list(os.environ):
        if k.startswith("FAITHWATCH_"):
            monkeypatch.delenv(k)


def test_defaults():
    s = load_settings()
    assert s.store.backend == "chdb" and s.data_dir == Path(".faithwatch")
    assert s.embedding.model == "all-MiniLM-L6-v2"
    assert s.categories_file.name == "categories.yaml" and s.categories_file.is_file()


@pytest.mark.parametrize("var,value,path,expected", [
    ("FAITHWATCH_DATA_DIR", "/tmp/fw", ("data_dir",), Path("/tmp/fw")),
    ("FAITHWATCH_STORE__URL", "http://clickhouse:8123", ("store", "url"), "http://clickhouse:8123"),
    ("FAITHWATCH_KAFKA__BROKERS", "kafka://k1:9092", ("kafka", "brokers"), "kafka://k1:9092"),
    ("FAITHWATCH_DETECT__FALSE_ALARM_RATE", "1e-6", ("detect", "false_alarm_rate"), 1e-6),
    ("FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE", "123", ("cluster", "bootstrap_size"), 123),
    ("FAITHWATCH_BASELINE__WINDOW_HOURS", "48", ("baseline", "window_hours"), 48.0),
])
def test_environment_variables_nest_with_double_underscore(monkeypatch, var, value, path, expected):
    monkeypatch.setenv(var, value)
    obj = load_settings()
    for p in path:
        obj = getattr(obj, p)
    assert obj == expected


def test_api_tokens_are_secrets(monkeypatch):
    monkeypatch.setenv("FAITHWATCH_API__TOKENS", '["s3cret-one", "s3cret-two"]')
    s = load_settings()
    assert [t.get_secret_value() for t in s.api.tokens] == ["s3cret-one", "s3cret-two"]
    assert "s3cret" not in json.dumps(s.masked())


@pytest.mark.parametrize("name,text", [
    ("fw.yaml", "detect:\n  min_sessions: 5\nstore:\n  password: hunter2\n"),
    ("fw.toml", "[detect]\nmin_sessions = 5\n[store]\npassword = 'hunter2'\n"),
])
def test_config_file_yaml_or_toml(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    s = load_settings(f)
    assert s.detect.min_sessions == 5 and s.store.password.get_secret_value() == "hunter2"


def test_environment_wins_over_the_file(tmp_path, monkeypatch):
    f = tmp_path / "fw.yaml"
    f.write_text("detect:\n  min_sessions: 5\n")
    monkeypatch.setenv("FAITHWATCH_DETECT__MIN_SESSIONS", "7")
    assert load_settings(f).detect.min_sessions == 7


@pytest.mark.parametrize("text,match", [
    ("detect:\n  min_sessions: 0\n", "detect.min_sessions"),
    ("detect:\n  no_such_knob: 1\n", "detect.no_such_knob"),
])
def test_bad_settings_name_the_setting(tmp_path, text, match):
    f = tmp_path / "fw.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(f)


def test_missing_or_odd_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    (tmp_path / "fw.ini").write_text("")
    with pytest.raises(ConfigError, match="yaml"):
        load_settings(tmp_path / "fw.ini")


def test_config_show_prints_effective_settings_masked(tmp_path, monkeypatch):
    f = tmp_path / "fw.yaml"
    f.write_text("store:\n  password: hunter2\ndetect:\n  min_sessions: 4\n")
    monkeypatch.setenv("FAITHWATCH_API__TOKENS", '["tok-123"]')
    res = CliRunner().invoke(main, ["--config", str(f), "config", "show"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["detect"]["min_sessions"] == 4
    assert shown["store"]["password"] == "**********" and shown["api"]["tokens"] == ["**********"]
    assert "hunter2" not in res.stdout and "tok-123" not in res.stdout


def test_config_show_masks_a_password_inside_a_url(monkeypatch):
    monkeypatch.setenv("FAITHWATCH_STORE__URL", "https://bob:hunter2@clickhouse:8443/?secure=1")
    monkeypatch.setenv("FAITHWATCH_KAFKA__BROKERS", "kafka://svc:s3cr3t@a:9092;kafka://b:9092")
    monkeypatch.setenv("FAITHWATCH_NOTIFY__GRAFANA_URL", "https://admin:pw0rd@grafana.example.com")
    res = CliRunner().invoke(main, ["config", "show"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout)
    assert shown["store"]["url"] == "https://bob:**********@clickhouse:8443/?secure=1"
    assert shown["kafka"]["brokers"] == "kafka://svc:**********@a:9092;kafka://b:9092"
    assert shown["notify"]["grafana_url"] == "https://admin:**********@grafana.example.com"
    for secret in ("hunter2", "s3cr3t", "pw0rd"):
        assert secret not in res.stdout
    # The settings themselves keep the URL: only what is shown is masked.
    assert load_settings().store.url == "https://bob:hunter2@clickhouse:8443/?secure=1"


@pytest.mark.parametrize("value", ["tok-123", "[tok-123", '{"a": '])
def test_a_token_list_that_is_not_json_exits_2_with_one_line(monkeypatch, value):
    monkeypatch.setenv("FAITHWATCH_API__TOKENS", value)
    res = CliRunner().invoke(main, ["config", "show"])
    assert res.exit_code == 2
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert "FAITHWATCH_API__TOKENS is not JSON" in res.stderr and "Traceback" not in res.stderr
    assert value not in res.stderr  # the value may be a secret
