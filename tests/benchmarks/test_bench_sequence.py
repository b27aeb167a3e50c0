"""The sequence-half benchmark's extras: the prepare half per worker and the per-stage profile
(benchmarks/sequence_runner.py), and how bench_sequence reports them."""

from __future__ import annotations

from benchmarks import bench_sequence, sequence_runner
from benchmarks.bench_detection import DATASETS
from benchmarks.stage_clock import PARTS
from pipelines.interaction import Interaction
from pipelines.scenario import ScenarioConfig, generate
from services.flow import event_order
from services.settings import Settings
from services.wiring import build_pipeline


def test_profile_and_prepare_half_on_a_small_stream():
    settings = Settings(embedding={"backend": "hashing"})
    records = generate(DATASETS["clinc150"](), ScenarioConfig(seed=3, days=0.5, per_day=1_200, intents=8,
                                                             incident=None, producer_faithfulness=True)).records
    interactions = sorted((Interaction.model_validate(r) for r in records), key=event_order)
    prepared = build_pipeline(settings).prepare(interactions)
    batches = [prepared[k:k + sequence_runner.BATCH] for k in range(0, len(prepared), sequence_runner.BATCH)]

    profile = sequence_runner.profiled(lambda: build_pipeline(settings), batches, top=5)
    parts = profile["parts"]
    assert set(parts) == {*PARTS, "other"} and all(v >= 0 for v in parts.values())
    assert parts["detect"] > 0 and parts["assign"] > 0 and parts["records"] > 0  # every part was reached
    assert len(profile["top"]) == 5 and all(0 < f["share"] <= 1 for f in profile["top"])

    prep = sequence_runner.prepare_half(build_pipeline(settings), prepared, 300)
    assert prep["interactions"] == 300 and prep["seconds"] > 0


def test_report_puts_the_prepare_half_beside_and_the_profile_below():
    row = {"stream": "s", "tree": "t (abc)", "interactions": 1_000, "clusters": 90, "families": 70, "ms": 1.0,
           "ms_worst": 1.2, "cpu_ms": 0.9, "rate": 1_000.0, "digest": "d",
           "prepare": {"interactions": 500, "seconds": 0.25, "cpu_seconds": 0.5},
           "profile": {"parts": {"assign": 0.3, "detect": 0.5, "other": 0.2},
                       "top": [{"function": "baseline.py:139 band", "own_s": 0.1, "share": 0.25, "calls": 9}]}}
    text = "\n".join(bench_sequence.report_rows([row, {**row, "tree": "u", "prepare": None, "profile": None}]))
    assert "| s | t (abc) | 1,000 | 90 | 70 | 1.000; 1.200 | 0.900 | 1,000 | 2,000 (1.00) | `d` |" in text
    assert "| s | u | 1,000 | 90 | 70 | 1.000; 1.200 | 0.900 | 1,000 | – | `d` |" in text
    assert "| s | t (abc) | 30 % | 50 % | 20 % |" in text
    assert "- s, t (abc): `baseline.py:139 band` 25 %" in text
