"""The scale-out simulation (benchmarks/bench_scaling.py): one partition is the embedded detector
exactly; more partitions see every interaction once; the correlator merges across partitions only;
the throughput model is the max of its parts; the stage clock charges nested calls once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from benchmarks import bench_scaling
from benchmarks.bench_detection import DATASETS
from benchmarks.stage_clock import StageClock
from pipelines.incident import DocSeen, Failure, Incident, Member
from pipelines.interaction import Interaction
from pipelines.policy import Category
from pipelines.scenario import IncidentSpec, ScenarioConfig, generate
from services.flow import event_order
from services.settings import Settings

T0 = datetime(2026, 11, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def run():
    """A small two-cause stream (producer scores, hashing embedder: seconds), simulated with 1 and 3
    partitions."""
    config = ScenarioConfig(seed=11, days=1.5, per_day=900, intents=10, producer_faithfulness=True,
                            incident=IncidentSpec(intents=("bill_balance",), onset_day=0.6, sessions=10),
                            incidents=(IncidentSpec(intents=("play_music",), onset_day=0.7, sessions=10),))
    scenario = generate(DATASETS["clinc150"](), config)
    pipeline = bench_scaling.build(Settings(embedding={"backend": "hashing"}))
    interactions = sorted((Interaction.model_validate(r) for r in scenario.records), key=event_order)
    stream = pipeline.prepare(interactions)
    return bench_scaling.simulate(pipeline, stream, partitions=(1, 3))


def test_one_partition_is_the_embedded_detector_and_more_see_everything_once(run):
    assert run.events, "the stream should open incidents, or equality proves nothing"
    one, three = run.layouts[1], run.layouts[3]
    assert [e.model_dump_json() for _, e in one.events] == [e.model_dump_json() for e in run.events]
    assert bench_scaling.comparison(run)[1]["identical"]
    assert sum(one.count) == sum(three.count) == run.interactions
    assert len(set(three.home.values())) == 3  # families really spread over the partitions


def test_throughput_is_bounded_by_the_owner_and_the_busiest_partition(run):
    n = run.interactions
    for t in bench_scaling.throughput(run):
        exact_owner, versioned_owner, async_owner = (ms * n / 1000 for ms in t.owner_ms)
        busy_exact, busy_versioned = (ms * n / 1000 for ms in t.busiest_ms)
        assert t.rate[0] == pytest.approx(n / max(exact_owner, busy_exact))
        assert t.rate[1] == pytest.approx(n / max(versioned_owner, busy_versioned))
        assert t.rate[2] == pytest.approx(n / max(async_owner, t.refit_ms * n / 1000, busy_versioned))
        # The async refit only takes work off the versioned owner: never slower. (Exact against
        # versioned is a question for the benchmark, not this test: it depends on measured CPU,
        # the versioned model's own against the nearest-centroid and centroid parts, and it
        # came out either way on a short hashing stream.)
        assert t.rate[1] <= t.rate[2]
    assert 0.0 < run.versioned_agree <= 1.0
    assert set(run.parts) >= {"assign", "nearest", "refit", "families", "detect", "records", "other"}


def incident(iid: str, hours: float, doc: str | None, clusters: tuple[str, ...]) -> Incident:
    at = T0 + timedelta(hours=hours)
    docs = (DocSeen(doc, "v1", True, None, None),) if doc else ()
    failures = [Failure(f"{iid}-{k}", f"s-{iid}-{k}", f"s-{iid}-{k}", None, at, "q", "a", 0.1, 0.9, docs, False, False,
                        clusters[0]) for k in range(3)]
    general = Category(name="general")
    return Incident(iid, clusters[0], at, at, failures,
                    members={c: Member(c, c, None, general, at, at, "opened") for c in clusters})


def test_correlator_merges_a_cause_across_partitions_only(run):
    family = {"c1": "f1", "c2": "f2", "c3": "f1", "c4": "f4", "c5": "f5", "c6": "f6"}
    lay = bench_scaling.PartitionedDetection(3, run.layouts[1].detectors[0], family.__getitem__, lambda f: 1)
    d0, d1, d2 = lay.detectors

    def opens(p: int, inc: Incident) -> str:
        lay.detectors[p].incidents[inc.incident_id] = inc
        lay.correlate(p, inc.incident_id)
        return lay.page_of[inc.incident_id]

    assert opens(0, incident("a", 0, "kb-help", ("c1",))) == "a"
    assert opens(1, incident("b", 1, "kb-help", ("c2",))) == "a"  # same cause, other partition
    assert opens(0, incident("c", 2, "kb-other", ("c3",))) == "c"  # another cause in a's partition
    assert opens(2, incident("d", 3, None, ("c3",))) == "a"  # no cause, a's family, other partition
    assert opens(1, incident("e", 4, "kb-other", ("c4",))) == "c"  # c's cause, other partition
    f = incident("f", 5, "kb-x", ("c5",))
    d1.resolved["f"] = f  # resolved within rejoin_hours: still joinable
    assert opens(2, incident("g", 6, "kb-x", ("c6",))) == "f"
    lay.page_of["f"] = "f"
    raw = [{"incident_id": iid, "sequence": 0, "event": "opened", "detected_at": T0.isoformat(),
            "cluster_id": f"c-{iid}", "clusters": [f"c-{iid}"], "session_ids": [f"s-{iid}"]} for iid in lay.page_of]
    merged = {m["incident_id"]: m for m in bench_scaling.paged_events(raw, lay.page_of)}
    assert sorted(merged) == ["a", "c", "f"]
    assert merged["a"]["clusters"] == ["c-a", "c-b", "c-d"] and merged["c"]["session_ids"] == ["s-c", "s-e"]


def test_stage_clock_charges_nested_calls_once():
    ticks = itertools.count()
    clock = StageClock(now=lambda: float(next(ticks)))

    class Stage:
        def outer(self):
            return self.inner() + 1

        def inner(self):
            return 1

    s = Stage()
    clock.wrap(s, "inner", "refit")
    clock.wrap(s, "outer", "assign")
    assert s.outer() == 2
    # outer: ticks 0 and 3 (3 s), inner: ticks 1 and 2 (1 s), so outer's own time is 2 s
    assert clock.seconds["assign"] == 2.0 and clock.seconds["refit"] == 1.0
    assert clock.split(5.0)["other"] == 2.0


def test_cause_broadcast_forwards_a_stale_answer_to_the_incident_of_another_partition(run):
    """(ii) of docs/scaling.md: a failing answer that retrieved another partition's open cause
    stale joins that incident's sessions at the next watermark; one that retrieved it fresh, or
    whose incident resolved meanwhile, does not, and a partition keeps its own causes."""
    family = {"c1": "f1", "c2": "f2", "c3": "f3"}
    lay = bench_scaling.PartitionedDetection(3, run.layouts[1].detectors[0], family.__getitem__, lambda f: 1)
    a, b = incident("a", 0, "kb-help", ("c1",)), incident("b", 1, "kb-old", ("c2",))
    lay.detectors[0].incidents["a"], lay.detectors[1].incidents["b"] = a, b
    a.reported_failures = b.reported_failures = 3  # reported already: no update event of these stand-ins
    lay.last_at = T0 + timedelta(hours=2)
    lay.watermark()  # the broadcast now holds both causes

    def failing(k: str, cluster: str, doc: str, stale: bool) -> Failure:
        return Failure(k, f"s-{k}", f"s-{k}", None, T0 + timedelta(hours=2), "q", "a", 0.1, 0.9,
                       (DocSeen(doc, "v1", stale, None, None),), False, False, cluster)

    lay.forward(2, failing("x", "c3", "kb-help", stale=True))  # another partition's cause, stale: forwarded
    lay.forward(2, failing("y", "c3", "kb-help", stale=False))  # retrieved fresh: not
    lay.forward(0, failing("z", "c1", "kb-help", stale=True))  # its own partition's cause: joins there or not at all
    lay.forward(2, failing("w", "c3", "kb-old", stale=True))  # b's, but b resolves before the watermark
    assert lay.forwarded == 2
    del lay.detectors[1].incidents["b"]
    lay.watermark()
    assert "s-x" in a.sessions and not {"s-y", "s-z"} & set(a.sessions)
    assert "s-w" not in b.sessions
    assert lay._causes == {("kb-help", "v1"): (0, "a")}
