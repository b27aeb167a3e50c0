"""The sequence stage without a broker: reorder by watermarks, skip what a checkpoint holds,
restore exactly, and cut the state into chunks that only a complete manifest names."""

from __future__ import annotations

import json
import random
import zlib

import pytest

from pipelines.errors import StateError
from pipelines.interaction import parse_record
from pipelines.scenario import IncidentSpec, ScenarioConfig, generate
from services.datasets import load_banking77
from services.kafka import messages
from services.kafka.sequencer import (
    MANIFEST_KEY,
    ReorderBuffer,
    Sequencer,
    checkpoint_entries,
    read_checkpoint,
)
from services.settings import load_settings
from services.wiring import build_embedder, build_pipeline

PARTITIONS = 3


@pytest.fixture(scope="module")
def world():
    settings = load_settings(embedding={"backend": "hashing"}, cluster={"bootstrap_size": 100})
    embedder = build_embedder(settings)
    sc = generate(load_banking77("train"), ScenarioConfig(seed=5, days=1.0, per_day=500,
                                                          incident=IncidentSpec(onset_day=0.5)))
    records = [parse_record(r) for r in sc.records]
    return settings, embedder, records


def _messages(world, seed: int) -> list[dict]:
    """What the score stage publishes: each partition in event-time order, partitions interleaved
    at random, a watermark after each partition's batch."""
    settings, embedder, records = world
    pipeline = build_pipeline(settings, embedder)
    by_part: dict[int, list] = {p: [] for p in range(PARTITIONS)}
    for r in records:
        by_part[zlib.crc32((r.session_id or "").encode()) % PARTITIONS].append(r)
    rng = random.Random(seed)
    out = []
    cursors = dict.fromkeys(by_part, 0)
    while any(cursors[p] < len(by_part[p]) for p in by_part):
        p = rng.choice([q for q in by_part if cursors[q] < len(by_part[q])])
        batch = by_part[p][cursors[p]:cursors[p] + rng.randint(1, 40)]
        cursors[p] += len(batch)
        out += [messages.decode(messages.record(prep, p, 0)) for prep in pipeline.prepare(batch)]
        out.append(messages.decode(messages.watermark(p, batch[-1].timestamp)))
    return out


def _events(out) -> list[str]:
    return [json.dumps(e.to_json_dict(), sort_keys=True) for e in out.events]


def test_interleaved_partitions_come_out_in_the_embedded_order(world):
    settings, embedder, records = world
    ref = build_pipeline(settings, embedder)
    expected = ref.process(records)
    expected.extend(ref.flush())
    seq = Sequencer(build_pipeline(settings, embedder), PARTITIONS)
    got = seq.pipeline.sequence([])
    for offset, m in enumerate(_messages(world, seed=1)):
        seq.add(m, offset)
        got.extend(seq.release())
    got.extend(seq.release(force=True))
    assert seq.reorder.late == 0
    assert expected.events and _events(got) == _events(expected)
    assert [s.interaction_id for s in got.scored] == [s.interaction_id for s in expected.scored]


def test_restored_mid_stream_with_redelivery_gives_the_same_events(world):
    settings, embedder, _ = world
    msgs = _messages(world, seed=2)
    whole = Sequencer(build_pipeline(settings, embedder), PARTITIONS)
    out_whole = whole.pipeline.sequence([])
    for o, m in enumerate(msgs):
        whole.add(m, o)
        out_whole.extend(whole.release())
    out_whole.extend(whole.release(force=True))

    first = Sequencer(build_pipeline(settings, embedder), PARTITIONS)
    out = first.pipeline.sequence([])
    cut = len(msgs) // 2
    for o, m in enumerate(msgs[:cut]):
        first.add(m, o)
        out.extend(first.release())
    entries, manifest = checkpoint_entries(first.to_state(), generation=1, offset=first.offset, chunk_bytes=50_000)
    assert len(entries) > 1
    stored = dict(entries) | {MANIFEST_KEY: manifest}
    state, _ = read_checkpoint(stored.get)
    second = Sequencer.from_state(state, lambda s: build_pipeline(settings, embedder, state=s), PARTITIONS)
    # At-least-once: everything from well before the checkpoint is delivered again.
    assert sum(second.add(m, o) for o, m in enumerate(msgs[: cut])) == 0 and second.skipped == cut
    for o, m in enumerate(msgs[cut:], start=cut):
        second.add(m, o)
        out.extend(second.release())
    out.extend(second.release(force=True))
    assert _events(out) == _events(out_whole)


def test_reorder_buffer_waits_for_every_partition():
    buf = ReorderBuffer(2)

    def rec(iid: str, ts: str) -> dict:
        return {"type": "record", "interaction": {"interaction_id": iid, "timestamp": ts}}

    buf.add(rec("b", "2026-11-02T10:00:02+00:00"))
    buf.add(rec("a", "2026-11-02T10:00:01+00:00"))
    buf.watermark(0, parse_record('{"interaction_id":"x","timestamp":"2026-11-02T10:00:05Z","query":"q"}').timestamp)
    assert buf.release() == []  # partition 1 has said nothing yet
    buf.watermark(1, buf.watermarks[0].replace(second=2))
    assert [m["interaction"]["interaction_id"] for m in buf.release()] == ["a"]  # b is not older than 10:00:02
    restored = ReorderBuffer.from_state(json.loads(json.dumps(buf.to_state())))
    assert [m["interaction"]["interaction_id"] for m in restored.release(force=True)] == ["b"]


def test_a_checkpoint_without_its_chunks_is_refused():
    entries, manifest = checkpoint_entries({"x": list(range(1000))}, generation=4, offset=9, chunk_bytes=100)
    stored = dict(entries[:-1]) | {MANIFEST_KEY: manifest}
    with pytest.raises(StateError):
        read_checkpoint(stored.get)
    assert read_checkpoint({}.get) is None


def test_a_timestamp_far_ahead_is_refused_as_the_embedded_driver_refuses_it(world):
    from datetime import UTC, datetime

    settings, embedder, records = world
    future = records[5].model_copy(update={"interaction_id": "year-9999",
                                           "timestamp": datetime(9999, 12, 31, tzinfo=UTC)})
    stream = sorted(records[:60] + [future], key=lambda r: r.timestamp)
    expected = build_pipeline(settings, embedder).process(stream)
    seq = Sequencer(build_pipeline(settings, embedder), 1)
    for offset, prep in enumerate(build_pipeline(settings, embedder).prepare(stream)):
        seq.add(messages.decode(messages.record(prep, 0, offset)), offset)
    got = seq.release(force=True)
    assert [i.interaction_id for i, _ in got.rejected] == [i.interaction_id for i, _ in expected.rejected] == [
        "year-9999"]
    assert got.rejected[0][1].field == "timestamp"
