"""The embedded driver overlaps embedding and sequencing (services.embedded.process_batches):
the same outputs as processing one batch at a time, on a real stream with an incident and
repeated interaction ids, with the built-in scorer and the hashing embedder."""

from __future__ import annotations

import json

import pytest

from pipelines.interaction import parse_record
from pipelines.scenario import IncidentSpec, ScenarioConfig, generate, to_jsonl_lines
from services.datasets import load_banking77
from services.embedded import process_batches
from services.settings import load_settings
from services.wiring import build_pipeline


@pytest.fixture(scope="module")
def stream():
    cfg = ScenarioConfig(seed=5, days=2.0, per_day=400, incident=IncidentSpec(onset_day=1.3, sessions=6))
    records = [parse_record(line) for line in to_jsonl_lines(generate(load_banking77("train"), cfg).records)]
    return records + records[100:140]  # a retried stretch: its ids count as duplicates


def run(records, batch: int, overlap: bool | None) -> list[str]:
    settings = load_settings(embedding={"backend": "hashing"}, cluster={"bootstrap_size": 100})
    pipeline = build_pipeline(settings)
    batches = [records[k:k + batch] for k in range(0, len(records), batch)]
    if overlap is None:
        outs = [pipeline.process(b) for b in batches] + [pipeline.flush()]
    else:
        outs = list(process_batches(pipeline, iter(batches), overlap=overlap))
    assert len(outs) == len(batches) + 1
    return [json.dumps({"duplicates": o.duplicates, "scored": [s.to_json_dict() for s in o.scored],
                        "events": [e.to_json_dict() for e in o.events],
                        "clusters": [c.model_dump(mode="json") for c in o.clusters]}, sort_keys=True)
            for o in outs]


@pytest.mark.parametrize("batch", [7, 64])
def test_overlapped_batches_give_what_one_batch_at_a_time_gives(stream, batch):
    plain = run(stream, batch, None)
    assert run(stream, batch, True) == plain
    assert run(stream, batch, False) == plain
    outs = [json.loads(o) for o in plain]
    assert sum(o["duplicates"] for o in outs) == 40
    assert any(e["event"] == "opened" for o in outs for e in o["events"])


def test_an_error_while_preparing_reaches_the_caller(stream):
    pipeline = build_pipeline(load_settings(embedding={"backend": "hashing"}, cluster={"bootstrap_size": 100}))

    def fail(batch):
        raise RuntimeError("embedding runtime gone")

    pipeline.prepare = fail
    with pytest.raises(RuntimeError, match="embedding runtime gone"):
        list(process_batches(pipeline, iter([stream[:10], stream[10:20]])))
