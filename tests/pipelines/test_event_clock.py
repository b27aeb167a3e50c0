"""A timestamp far ahead of the stream is refused, the same way whichever half admits it
(:meth:`Pipeline.process` for replay and serve, :meth:`Pipeline.sequence` for the Kafka stage)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from alerts.categories import DEFAULT_CATEGORIES, load_policy
from pipelines.clustering import OnlineClusterer
from pipelines.config import BaselineConfig, ClusterConfig, DetectConfig, InputConfig
from pipelines.embedding import CachedEmbedder, HashingEmbedder
from pipelines.engine import Pipeline
from pipelines.event_clock import EventClock
from pipelines.faithfulness import FaithfulnessScorer
from pipelines.interaction import Interaction
from pipelines.labels import CategoryIndex

T0 = datetime(2026, 11, 2, tzinfo=UTC)
EMB = CachedEmbedder(HashingEmbedder())
POLICY = load_policy(DEFAULT_CATEGORIES)


def pipeline(state: dict | None = None, hours: float = 24.0) -> Pipeline:
    cfg = ClusterConfig(bootstrap_size=10)
    kwargs = dict(embedder=EMB, scorer=FaithfulnessScorer(EMB), policy=POLICY, cluster_config=cfg,
                  baseline_config=BaselineConfig(), detect_config=DetectConfig(),
                  input_config=InputConfig(max_ahead_hours=hours))
    if state is not None:
        return Pipeline.from_state(state, categories=CategoryIndex.build(POLICY, EMB, 0.5), **kwargs)
    return Pipeline(clusterer=OnlineClusterer(cfg, EMB.dim, CategoryIndex.build(POLICY, EMB, 0.5)), **kwargs)


def inter(iid: str, at: datetime) -> Interaction:
    return Interaction(interaction_id=iid, session_id=iid, timestamp=at, query="How much does a transfer cost?",
                       response="Transfers cost £1.", confidence=0.9)


STREAM = ([inter(f"i{k}", T0 + timedelta(minutes=10 * k)) for k in range(20)]
          + [inter("ahead-49h", T0 + timedelta(minutes=190, hours=49)),
             inter("year-9999", datetime(9999, 12, 31, tzinfo=UTC)),
             inter("ahead-23h", T0 + timedelta(minutes=190, hours=23))])


def ordered(records):
    return sorted(records, key=lambda r: r.timestamp)


def test_process_and_sequence_refuse_the_same_records():
    by_process = pipeline().process(ordered(STREAM))
    half = pipeline()
    by_sequence = half.sequence(half.prepare(ordered(STREAM)))
    for out in (by_process, by_sequence):
        assert [(i.interaction_id, e.field) for i, e in out.rejected] == [("ahead-49h", "timestamp"),
                                                                          ("year-9999", "timestamp")]
        assert "more than 24 h ahead of the newest event time seen" in out.rejected[1][1].reason
        assert len(out.scored) == 21  # the 23 h one is within the skew
    letters = by_process.dead_letters(T0, "test")
    assert [(d.interaction_id, d.field, d.position) for d in letters] == [
        ("ahead-49h", "timestamp", "interaction ahead-49h"), ("year-9999", "timestamp", "interaction year-9999")]
    assert json.loads(letters[1].raw)["timestamp"].startswith("9999-12-31")


def test_a_refused_record_is_not_remembered_as_seen():
    p = pipeline()
    p.process([inter("a", T0)])
    assert [i.interaction_id for i, _ in p.process([inter("b", T0 + timedelta(days=3))]).rejected] == ["b"]
    out = p.process([inter("b", T0 + timedelta(hours=1))])  # corrected and sent again
    assert out.rejected == [] and out.duplicates == 0


def test_a_quiet_stream_resumes_at_the_drivers_time():
    p = pipeline()
    p.process([inter("a", T0)])
    later = T0 + timedelta(days=10)
    assert p.process([inter("b", later)], now=later).rejected == []
    assert p.process([inter("c", later + timedelta(hours=30))], now=later).rejected != []


def test_the_newest_time_survives_a_restart():
    p = pipeline()
    p.process(ordered(STREAM[:20]))
    restored = pipeline(json.loads(json.dumps(p.to_state())))
    assert restored.event_clock.newest == p.event_clock.newest == STREAM[19].timestamp
    assert [i.interaction_id for i, _ in restored.process([STREAM[21]]).rejected] == ["year-9999"]


def test_a_state_saved_before_the_clock_existed_restores():
    p = pipeline()
    p.process(ordered(STREAM[:20]))
    state = json.loads(json.dumps(p.to_state()))
    del state["payload"]["event_clock"]
    assert pipeline(state).event_clock.newest is None


@pytest.mark.parametrize("hours", [1.0, 48.0])
def test_the_skew_is_a_setting(hours):
    clock = EventClock(timedelta(hours=hours))
    clock.admit(T0)
    assert (clock.admit(T0 + timedelta(hours=24)) is None) == (hours > 24)
