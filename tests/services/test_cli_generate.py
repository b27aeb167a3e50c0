"""``faithwatch generate`` through the CLI: the stream and its ground truth, for every data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.interaction import parse_record
from services.cli import main


def generate(tmp: Path, *args: str, name: str = "stream.jsonl"):
    out = tmp / name
    res = CliRunner().invoke(main, ["generate", str(out), *args])
    return res, out, out.with_name(out.stem + ".truth.json")


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize(("dataset", "kind"), [("banking77", "stale_document"), ("clinc150", "spike"),
                                               ("hwu64", "high_confidence")])
def test_writes_a_contract_stream_and_its_exact_truth(tmp_path, dataset, kind):
    res, out, truth_file = generate(tmp_path, "--dataset", dataset, "--incident", kind, "--days", "2",
                                    "--per-day", "600", "--intents", "12", "--seed", "3", "--onset-day", "1.5",
                                    *(["--sessions", "4"] if kind != "spike" else []))
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.splitlines()[0])
    records = lines(out)
    assert summary["records"] == len(records) == 1200
    parsed = [parse_record(r) for r in records]
    assert all(p.faithfulness is None for p in parsed)
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    assert truth["kind"] == kind == summary["incident"] and truth["dataset"] == dataset
    ids = {r["interaction_id"] for r in records}
    hit = [r for r in records if r["interaction_id"] in set(truth["incident_interaction_ids"])]
    assert hit and set(truth["incident_interaction_ids"]) <= ids
    assert {r["session_id"] for r in hit} == set(truth["incident_session_ids"])
    assert all(r["timestamp"] >= truth["onset_at"] for r in hit)
    if kind != "spike":
        assert len(truth["incident_session_ids"]) == 4
    if kind == "stale_document":
        assert truth["stale_doc"] == ["pricing-table", "v3"]


def test_same_seed_same_files_and_no_incident_means_empty_truth(tmp_path):
    args = ["--dataset", "hwu64", "--days", "1", "--per-day", "300", "--intents", "8", "--incident", "none"]
    _, a, ta = generate(tmp_path, *args, name="a.jsonl")
    _, b, tb = generate(tmp_path, *args, name="b.jsonl")
    assert a.read_bytes() == b.read_bytes()
    truth = json.loads(ta.read_text(encoding="utf-8"))
    assert truth["kind"] is None and truth["incident_interaction_ids"] == [] and truth["onset_at"] is None
    _, c, _ = generate(tmp_path, *args, "--seed", "8", name="c.jsonl")
    assert c.read_bytes() != a.read_bytes()


def test_noise_rate_and_producer_faithfulness(tmp_path):
    res, out, truth_file = generate(tmp_path, "--days", "1", "--per-day", "400", "--incident", "none",
                                    "--noise-rate", "0.2", "--producer-faithfulness")
    assert res.exit_code == 0, res.output
    records = lines(out)
    assert all(0.0 <= r["faithfulness"] <= 1.0 for r in records)
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    assert 0.15 < len(truth["noise_interaction_ids"]) / len(records) < 0.25
    noisy = set(truth["noise_interaction_ids"])
    wrong = [r["faithfulness"] for r in records if r["interaction_id"] in noisy]
    right = [r["faithfulness"] for r in records if r["interaction_id"] not in noisy]
    assert sum(wrong) / len(wrong) < 0.5 < sum(right) / len(right)


def test_the_generated_stream_replays_without_a_dead_letter(tmp_path, monkeypatch):
    # The hashing embedder keeps this test about the file format, not the model.
    monkeypatch.setenv("FAITHWATCH_EMBEDDING__BACKEND", "hashing")
    _, out, _ = generate(tmp_path, "--dataset", "clinc150", "--days", "1", "--per-day", "300",
                         "--intents", "10", "--incident", "none")
    res = CliRunner().invoke(main, ["replay", str(out), "--data-dir", str(tmp_path / "data"), "--no-progress"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout.splitlines()[0])
    assert stats["read"] == stats["valid"] == stats["scored"] == 300 and stats["invalid"] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--incident", "gradual", "--days", "1", "--per-day", "100"], "onset_day"),
    (["--incident", "stale_document", "--incident-intent", "card_arrival"], "pricing table"),
    (["--noise-rate", "2"], "noise_rate"),
])
def test_unusable_settings_exit_2_with_one_line(tmp_path, args, message):
    res, out, _ = generate(tmp_path, *args)
    assert res.exit_code == 2 and message in res.output
    assert not out.exists()


def test_a_shared_document_and_a_second_pattern(tmp_path):
    res, out, truth_file = generate(tmp_path, "--dataset", "clinc150", "--days", "3", "--per-day", "800",
                                    "--incident", "stale_document", "--onset-day", "1.2", "--sessions", "8",
                                    "--incident-intent", "bill_balance", "--incident-intent", "reminder",
                                    "--shared-document", "kb-account-help", "--also", "spike:play_music")
    assert res.exit_code == 0, res.output
    truth = json.loads(truth_file.read_text(encoding="utf-8"))
    first, second = truth["patterns"]
    assert first["stale_doc"][0] == "kb-account-help" and first["intents"] == ["bill_balance", "reminder"]
    assert second["kind"] == "spike" and second["intents"] == ["play_music"] and second["stale_doc"] is None
    assert set(truth["incident_session_ids"]) == set(first["session_ids"]) | set(second["session_ids"])
    res, *_ = generate(tmp_path, "--dataset", "clinc150", "--also", "nope", name="bad.jsonl")
    assert res.exit_code == 2 and "unknown kind" in res.output
