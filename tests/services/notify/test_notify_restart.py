"""SIGKILL in the middle of delivering: a ``faithwatch replay --notify-file`` process is killed while
a webhook delivery is in flight and others wait; the next replay of the same stream on the same
data dir sends what was not acknowledged, each once, and nothing that was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from services.cli import main
from services.testing.receiver import Receiver, Reply

ROOT = Path(__file__).resolve().parents[3]
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_deliveries_pending_at_sigkill_go_out_after_restart_and_sent_ones_never_again(tmp_path, monkeypatch):
    env = {"FAITHWATCH_EMBEDDING__BACKEND": "hashing", "FAITHWATCH_NOTIFY__TIMEOUT_SECONDS": "30",
           "FAITHWATCH_NOTIFY__BACKOFF_SECONDS": "0.05", "HF_HUB_OFFLINE": "1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stream, data = tmp_path / "stream.jsonl", tmp_path / "data"
    res = CliRunner().invoke(main, ["generate", str(stream), "--days", "3", "--per-day", "600",
                                    "--producer-faithfulness"])
    assert res.exit_code == 0, res.output
    with Receiver(default=Reply(delay=60)) as hook:  # every request hangs ...
        hook.fail(Reply(200), Reply(200), Reply(200))  # ... but the first three
        notify = tmp_path / "notify.yaml"
        notify.write_text(f'channels:\n  hook: {{type: webhook, url: "{hook.url}", secret: "{SECRET}"}}\n'
                          "routes:\n  - channels: [hook]\n")
        child = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "replay", str(stream), "--data-dir", str(data), "--no-progress",
             "--notify-file", str(notify), "--alerts-out", str(tmp_path / "alerts.jsonl")],
            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            hook.wait_for(4, timeout=120)  # three acknowledged, the fourth in flight
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        before = [r.headers["webhook-id"] for r in hook.requests]
        assert len(before) == 4

        hook.default = Reply(200)
        res = CliRunner().invoke(main, ["replay", str(stream), "--data-dir", str(data), "--no-progress",
                                        "--notify-file", str(notify), "--alerts-out", str(tmp_path / "alerts.jsonl")])
        assert res.exit_code == 0, res.output
        events = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
        after = [r.headers["webhook-id"] for r in hook.requests[4:]]
    expected = [f"{e['incident_id']}:{e['sequence']}" for e in events]
    assert before == expected[:4]
    assert after == expected[3:]  # the one in flight again (its id lets the receiver drop a repeat), then the rest
    assert f"alert deliveries: {len(events)} sent" in res.stderr
