"""``replay --notify-file`` and ``faithwatch alerts``, through the real CLI, chDB store and local
receivers: every incident event of a replay reaches each channel once, a second replay of the same
stream pages nobody, replay exits once every delivery ended, and ``alerts deliveries`` / ``alerts
test`` show and send. The hashing embedder keeps it fast (the stale-pricing stream still opens its
incident with the producer's faithfulness scores)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from standardwebhooks import Webhook

from services.cli import main
from services.testing.receiver import Receiver, Reply

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture(scope="module")
def stream(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "stream.jsonl"
    res = CliRunner().invoke(main, ["generate", str(out), "--days", "3", "--per-day", "600",
                                    "--producer-faithfulness"])
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    monkeypatch.setenv("FAITHWATCH_EMBEDDING__BACKEND", "hashing")
    monkeypatch.setenv("FAITHWATCH_NOTIFY__BACKOFF_SECONDS", "0.05")
    monkeypatch.setenv("FAITHWATCH_NOTIFY__TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("WEBHOOK_SECRET", SECRET)


@pytest.fixture
def receivers():
    with Receiver() as pager, Receiver() as team, Receiver() as hook:
        yield {"pager": pager, "team": team, "hook": hook}


def notify_file(tmp_path: Path, receivers: dict[str, Receiver]) -> Path:
    path = tmp_path / "notify.yaml"
    path.write_text(f"""\
channels:
  pager: {{type: pagerduty, routing_key: test-key, url: "{receivers['pager'].url}"}}
  team:  {{type: slack, webhook_url: "{receivers['team'].url}"}}
  hook:  {{type: webhook, url: "{receivers['hook'].url}", secret: "${{WEBHOOK_SECRET}}"}}
routes:
  - match: {{category: pricing, severity: critical}}
    channels: [pager, team, hook]
  - channels: [team]
""")
    return path


def replay(stream: Path, data: Path, *extra: str):
    return CliRunner().invoke(main, ["replay", str(stream), "--data-dir", str(data), "--no-progress",
                                     "--alerts-out", str(data.parent / "alerts.jsonl"), *extra])


def deliveries(data: Path, *extra: str) -> list[dict]:
    res = CliRunner().invoke(main, ["alerts", "deliveries", "--data-dir", str(data), "--format", "json", *extra])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_a_replay_delivers_every_event_once_and_a_second_replay_pages_nobody(tmp_path, stream, receivers):
    data = tmp_path / "data"
    res = replay(stream, data, "--notify-file", str(notify_file(tmp_path, receivers)))
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert events and events[0]["category"] == "pricing" and events[-1]["event"] == "resolved"
    n = len(events)
    assert f"alert deliveries: {3 * n} sent" in res.stderr
    # Everything arrived before replay returned.
    assert [len(receivers[name].requests) for name in ("pager", "team", "hook")] == [n, n, n]
    assert [r.json()["event_action"] for r in receivers["pager"].requests] == ["trigger"] * (n - 1) + ["resolve"]
    ids = [r.headers["webhook-id"] for r in receivers["hook"].requests]
    assert ids == [f"{e['incident_id']}:{e['sequence']}" for e in events]
    for r in receivers["hook"].requests:
        Webhook(SECRET).verify(r.body, r.headers)
    rows = deliveries(data)
    assert len(rows) == 3 * n and {row["status"] for row in rows} == {"sent"}

    again = replay(stream, data, "--notify-file", str(notify_file(tmp_path, receivers)))
    assert again.exit_code == 0, again.output
    time.sleep(0.5)
    assert [len(receivers[name].requests) for name in ("pager", "team", "hook")] == [n, n, n]
    assert len(deliveries(data)) == 3 * n


def test_replay_exits_once_failing_deliveries_are_given_up_and_records_them(tmp_path, stream, receivers,
                                                                            monkeypatch):
    monkeypatch.setenv("FAITHWATCH_NOTIFY__GIVE_UP_SECONDS", "1")
    receivers["team"].default = Reply(503)
    receivers["pager"].default = Reply(400, body=b'{"status":"invalid event"}')
    data = tmp_path / "data"
    started = time.monotonic()
    res = replay(stream, data, "--notify-file", str(notify_file(tmp_path, receivers)))
    assert res.exit_code == 0, res.output
    assert time.monotonic() - started < 120
    n = len((tmp_path / "alerts.jsonl").read_text().splitlines())
    assert f"alert deliveries: {n} sent, {n} failed, {n} given_up" in res.stderr
    given_up = deliveries(data, "--status", "given_up")
    assert {row["channel"] for row in given_up} == {"team"} and all(r["attempts"] >= 1 for r in given_up)
    failed = deliveries(data, "--status", "failed")
    assert {(row["channel"], row["attempts"], row["http_status"]) for row in failed} == {("pager", 1, 400)}
    assert len(receivers["pager"].requests) == n  # a refused request is never retried


def test_a_bad_notify_file_exits_2_before_anything_runs(tmp_path, stream):
    bad = tmp_path / "notify.yaml"
    bad.write_text("channels:\n  x: {type: slack}\nroutes:\n  - channels: [x]\n")
    res = replay(stream, tmp_path / "data", "--notify-file", str(bad))
    assert res.exit_code == 2
    assert res.output.strip() == f"faithwatch: notify file {bad}: channels.x.webhook_url: Field required"
    assert not (tmp_path / "data").exists()


def test_alerts_test_sends_a_sample_incident_to_one_channel(tmp_path, receivers):
    path = notify_file(tmp_path, receivers)
    res = CliRunner().invoke(main, ["alerts", "test", "hook", "--notify-file", str(path)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("hook: delivered test-")
    [request] = receivers["hook"].requests
    sent = Webhook(SECRET).verify(request.body, request.headers)
    assert sent["incident_id"].startswith("test-") and sent["event"] == "opened"

    receivers["team"].fail(Reply(404, body=b"no_service"))
    res = CliRunner().invoke(main, ["alerts", "test", "team", "--notify-file", str(path)])
    assert res.exit_code == 1 and "team: not delivered (failed): HTTP 404: no_service" in res.output

    res = CliRunner().invoke(main, ["alerts", "test", "nope", "--notify-file", str(path)])
    assert res.exit_code == 2 and "no channel 'nope'" in res.output


def test_the_demo_delivers_its_incident(tmp_path, receivers):
    data = tmp_path / "data"
    res = CliRunner().invoke(main, ["demo", "--data-dir", str(data), "--no-progress",
                                    "--notify-file", str(notify_file(tmp_path, receivers))])
    assert res.exit_code == 0, res.output
    events = [json.loads(line) for line in (data / "demo" / "alerts.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "opened" and events[0]["category"] == "pricing"
    assert "POST /v1/gate: pricing answers in" in res.output and "at confidence 0.84 are deferred" in res.output
    assert [r.headers["webhook-id"] for r in receivers["hook"].requests] == [
        f"{e['incident_id']}:{e['sequence']}" for e in events]
    assert f"alert deliveries: {3 * len(events)} sent" in res.stderr
