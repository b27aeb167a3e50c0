"""Bad input never stops the stream: each bad line is dead-lettered with its reason, the rest is
scored, duplicates count once. Runs the real CLI and chDB store; the hashing embedder keeps it
fast (the stages under test here do not depend on the embedding's quality)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.cli import main
from services.store.chdb_store import ChdbStore


def good(k: int, **extra) -> dict:
    r = {"interaction_id": f"ok-{k}", "timestamp": f"2026-11-02T10:{k:02d}:00Z", "session_id": f"s{k}",
         "query": "How much is a transfer to Spain?", "response": "Transfers cost £1.", "confidence": 0.9,
         "contexts": [{"doc_id": "fees", "doc_version": "v1", "text": "Transfers cost £1."}]}
    r.update(extra)
    return r


BAD_LINES = [
    ('{"interaction_id": "broken", "timestamp": ', "<record>", "malformed JSON"),
    (json.dumps({"interaction_id": "no-ts", "query": "q"}), "timestamp", "field required"),
    (json.dumps({"interaction_id": "no-query", "timestamp": "2026-11-02T10:00:00Z"}), "query", "field required"),
    (json.dumps(good(50, interaction_id="wrong-type", confidence="high")), "confidence", "not a string"),
    ('{"interaction_id": "nan", "timestamp": "2026-11-02T10:00:00Z", "query": "q", "faithfulness": NaN}',
     "faithfulness", "finite"),
    (json.dumps(good(51, interaction_id="huge", query="x" * 20_000)), "query", "at most 16384"),
    ("[1, 2, 3]", "<record>", "JSON object"),
]


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHWATCH_EMBEDDING__BACKEND", "hashing")
    monkeypatch.setenv("FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE", "10")
    lines = [json.dumps(good(k)) for k in range(30)]
    for k, (line, _, _) in enumerate(BAD_LINES):
        lines.insert(3 + 4 * k, line)
    lines.append(json.dumps(good(5)))            # a duplicate interaction_id: counted once
    lines.append(json.dumps(good(6, query="another text, same id")))
    stream = tmp_path / "in.jsonl"
    stream.write_text("\n".join(lines) + "\n\n")  # a blank line is not a record
    data = tmp_path / "data"
    res = CliRunner().invoke(main, ["replay", str(stream), "--data-dir", str(data), "--scored-out",
                                    str(tmp_path / "scored.jsonl"), "--no-progress"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout.splitlines()[0]), data, tmp_path


def test_counts(run):
    stats, _, tmp = run
    assert stats["invalid"] == len(BAD_LINES)
    assert stats["duplicates"] == 2
    assert stats["scored"] == 30
    scored = [json.loads(x) for x in (tmp / "scored.jsonl").read_text().splitlines()]
    assert sorted(s["interaction_id"] for s in scored) == sorted(f"ok-{k}" for k in range(30))


def test_dead_letters_name_field_and_reason(run):
    _, data, _ = run
    letters = [json.loads(x) for x in (data / "dead_letters.jsonl").read_text().splitlines()]
    assert len(letters) == len(BAD_LINES)
    for letter, (line, field, reason) in zip(letters, BAD_LINES, strict=True):
        assert letter["field"] == field
        assert reason.lower() in letter["reason"].lower()
        assert letter["raw"] == line
        assert letter["position"].startswith("line ")


def test_dead_letters_and_interactions_are_in_the_store(run):
    _, data, _ = run
    with ChdbStore(data / "chdb") as store:
        counts = store.counts()
    assert counts["dead_letters"] == len(BAD_LINES)
    assert counts["interactions"] == 30


def test_replaying_the_same_file_again_changes_no_count(run, tmp_path, monkeypatch):
    _, data, tmp = run
    res = CliRunner().invoke(main, ["replay", str(tmp / "in.jsonl"), "--data-dir", str(data), "--no-progress"])
    assert res.exit_code == 0, res.output
    with ChdbStore(data / "chdb") as store:
        assert store.counts()["interactions"] == 30


def test_missing_file_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["replay", str(tmp_path / "nope.jsonl"), "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "no such file" in res.stderr


def test_bad_setting_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHWATCH_DETECT__FALSE_ALARM_RATE", "2")
    Path(tmp_path / "in.jsonl").write_text(json.dumps(good(1)) + "\n")
    res = CliRunner().invoke(main, ["replay", str(tmp_path / "in.jsonl"), "--data-dir", str(tmp_path)])
    assert res.exit_code == 2
    assert "detect.false_alarm_rate" in res.stderr


def test_a_timestamp_far_ahead_of_the_stream_is_dead_lettered(tmp_path, monkeypatch):
    monkeypatch.setenv("FAITHWATCH_EMBEDDING__BACKEND", "hashing")
    monkeypatch.setenv("FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE", "10")
    lines = [json.dumps(good(k)) for k in range(20)]
    lines.insert(4, json.dumps(good(99, interaction_id="year-9999", timestamp="9999-12-31T00:00:00Z")))
    stream = tmp_path / "in.jsonl"
    stream.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    res = CliRunner().invoke(main, ["replay", str(stream), "--data-dir", str(data), "--no-progress"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout.splitlines()[0])
    assert (stats["read"], stats["valid"], stats["invalid"], stats["scored"]) == (21, 20, 1, 20)
    letters = [json.loads(x) for x in (data / "dead_letters.jsonl").read_text().splitlines()]
    assert [(d["interaction_id"], d["field"], d["position"]) for d in letters] == [
        ("year-9999", "timestamp", "interaction year-9999")]
    assert "more than 24 h ahead" in letters[0]["reason"] and "input.max_ahead_hours" in letters[0]["reason"]
    with ChdbStore(data / "chdb") as store:
        assert store.counts()["dead_letters"] == 1


def test_the_data_dir_and_what_faithwatch_writes_in_it_are_private(tmp_path, monkeypatch):
    import stat

    from services.checkpoint import Checkpoint

    monkeypatch.setenv("FAITHWATCH_EMBEDDING__BACKEND", "hashing")
    monkeypatch.setenv("FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE", "10")
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "dead_letters.jsonl").write_text("")
    (data / "dead_letters.jsonl").chmod(0o644)  # left by an older version
    stream = tmp_path / "in.jsonl"
    stream.write_text("\n".join([json.dumps(good(k)) for k in range(12)] + ["{broken"]) + "\n")
    res = CliRunner().invoke(main, ["replay", str(stream), "--data-dir", str(data), "--no-progress"])
    assert res.exit_code == 0, res.output
    Checkpoint.in_data_dir(data).save({"a": 1})

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(data) == 0o700
    assert mode(data / "dead_letters.jsonl") == 0o600
    assert mode(data / "state") == 0o700 and mode(data / "state" / "pipeline.json.gz") == 0o600
    assert mode(data / "chdb") == 0o700
    # What the engine has created once the store is open and migrated is 0700/0600; the parts it
    # writes later get the process umask, inside these 0700 directories.
    with ChdbStore(data / "chdb") as store:
        store.migrate()
    tree = [p for p in (data / "chdb").rglob("*") if not p.is_symlink()]
    assert len(tree) > 20
    assert {mode(p) for p in tree if p.is_dir()} == {0o700} and {mode(p) for p in tree if p.is_file()} == {0o600}
