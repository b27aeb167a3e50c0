"""The notify file: the contract's shape loads, routes pick the first match, ``${VAR}`` comes from
the environment, secrets print masked, and every bad file is one clear line (exit 2 on the CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.errors import ConfigError
from services.cli import main
from services.notify.notify_file import PAGERDUTY_EVENTS_URL, load_notify_file, parse_notify_file
from services.notify.sample import sample_event

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONTRACT = """\
channels:
  pager: {type: pagerduty, routing_key: "${PD_ROUTING_KEY}"}
  team:  {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
  hook:  {type: webhook, url: https://hooks.example.com/faithwatch, secret: "${WEBHOOK_SECRET}"}
  am:    {type: alertmanager, url: http://alertmanager:9093}
routes:
  - match: {category: pricing, severity: critical}
    channels: [pager, team]
  - channels: [team]
"""
ENV = {"PD_ROUTING_KEY": "pd-key-123", "SLACK_WEBHOOK_URL": "https://hooks.slack.example/T0/B0/xyz",
       "WEBHOOK_SECRET": SECRET}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notify.yaml"
    path.write_text(text)
    return path


def test_the_contract_shape_loads_with_variables_from_the_environment(tmp_path):
    nf = load_notify_file(write(tmp_path, CONTRACT), ENV)
    assert set(nf.channels) == {"pager", "team", "hook", "am"}
    assert nf.channels["pager"].routing_key.get_secret_value() == "pd-key-123"
    assert nf.channels["pager"].url == PAGERDUTY_EVENTS_URL  # url optional
    assert nf.channels["team"].webhook_url.get_secret_value() == ENV["SLACK_WEBHOOK_URL"]


@pytest.mark.parametrize(("event", "expected"), [
    ({}, ["pager", "team"]),
    ({"severity": "warning"}, ["team"]),
    ({"category": "policy"}, ["team"]),
])
def test_first_matching_route_wins_and_a_route_without_match_takes_the_rest(tmp_path, event, expected):
    nf = load_notify_file(write(tmp_path, CONTRACT), ENV)
    assert nf.route(sample_event(**event).to_json_dict()) == expected


def test_match_on_member_clusters_and_families_and_lists(tmp_path):
    nf = parse_notify_file({
        "channels": {"a": {"type": "alertmanager", "url": "http://x"}, "b": {"type": "alertmanager", "url": "http://y"}},
        "routes": [{"match": {"cluster": ["c009", "c002"]}, "channels": ["a"]},
                   {"match": {"family": "f001", "category": ["policy", "pricing"]}, "channels": ["b"]}]}, {})
    joined = sample_event(clusters=("c001", "c002")).to_json_dict()
    assert nf.route(joined) == ["a"]
    assert nf.route(sample_event().to_json_dict()) == ["b"]
    assert nf.route(sample_event(family_ids=("f002",)).to_json_dict()) == []  # no route: no channel


@pytest.mark.parametrize(("text", "env", "message"), [
    (CONTRACT, {k: v for k, v in ENV.items() if k != "PD_ROUTING_KEY"},
     "channels.pager.routing_key: environment variable PD_ROUTING_KEY is not set"),
    (CONTRACT.replace("type: slack", "type: teams"), ENV,
     "channels.team.type: unknown channel type 'teams' (use pagerduty, slack, webhook, alertmanager)"),
    (CONTRACT.replace('routing_key: "${PD_ROUTING_KEY}"', 'url: https://pd.example'), ENV,
     "channels.pager.routing_key: Field required"),
    (CONTRACT.replace("channels: [pager, team]", "channels: [pager, oncall]"), ENV,
     "routes.0.channels: unknown channel 'oncall' (channels: pager, team, hook, am)"),
    (CONTRACT.replace("match: {category", "match: {categroy"), ENV, "routes.0.match.categroy: Extra inputs"),
    (CONTRACT, {**ENV, "WEBHOOK_SECRET": "plain-secret"}, "channels.hook.secret: a Standard Webhooks secret starts"),
    (CONTRACT, {**ENV, "WEBHOOK_SECRET": "whsec_not*base64"}, "channels.hook.secret: not base64 after whsec_"),
    ("channels: [1, 2\n", ENV, "not YAML"),
    ("- a list\n", ENV, "expected a mapping with channels and routes"),
])
def test_a_bad_file_is_one_clear_line(tmp_path, text, env, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_notify_file(path, env)
    assert str(err.value).startswith(f"notify file {path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="notify file .*nope.yaml does not exist"):
        load_notify_file(tmp_path / "nope.yaml", {})


def test_config_show_masks_the_secrets_of_the_notify_file(tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("FAITHWATCH_NOTIFY_FILE", str(write(tmp_path, CONTRACT)))
    monkeypatch.setenv("FAITHWATCH_NOTIFY__API_URL", "https://fw.example")
    result = CliRunner().invoke(main, ["config", "show"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["notify"]["api_url"] == "https://fw.example"
    channels = shown["notify_channels"]["channels"]
    masked = {channels["pager"]["routing_key"], channels["team"]["webhook_url"], channels["hook"]["secret"]}
    assert masked == {"**********"}
    for value in ENV.values():
        assert value not in result.output


def test_a_bad_notify_file_exits_2_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHWATCH_NOTIFY_FILE", str(write(tmp_path, CONTRACT.replace("type: slack", "type: x"))))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["config", "show"])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "unknown channel type 'x'" in result.output
