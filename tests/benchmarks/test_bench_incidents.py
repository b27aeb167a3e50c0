"""Smoke test of the incidents-per-pattern benchmark: the counting on hand-made events, then the
quick run (two small CLINC150 streams replayed in a subprocess with this tree's code)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

from benchmarks import bench_incidents, common
from pipelines.scenario import GroundTruth, PatternTruth, ScenarioConfig, generate

T0 = datetime(2026, 11, 4, 8, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def event(iid: str, seq: int, at: datetime, cluster: str, sessions: list[str], clusters=()) -> dict:
    return {"incident_id": iid, "sequence": seq, "event": "opened" if seq == 0 else "updated",
            "detected_at": iso(at), "cluster_id": cluster, "clusters": list(clusters), "session_ids": sessions}


def test_counting_splits_merges_and_false_incidents():
    records, cluster_of = [], {}
    pats = []
    for k, (intent, cluster) in enumerate((("a", "c1"), ("b", "c5"))):
        ids = [f"i{k}{n}" for n in range(6)]
        for n, iid in enumerate(ids):
            records.append({"interaction_id": iid, "timestamp": iso(T0 + timedelta(minutes=10 * n)),
                            "session_id": f"s{k}{n}"})
            cluster_of[iid] = cluster if n < 4 else cluster + "x"  # the intent is split over two ids
        pats.append(PatternTruth(kind="stale_document", intents=(intent,), onset_at=T0,
                                 fixed_at=T0 + timedelta(hours=1),
                                 stale_doc=(f"kb-{intent}", "v1"), interaction_ids=frozenset(ids),
                                 session_ids=frozenset(f"s{k}{n}" for n in range(6)),
                                 customer_ids=frozenset()))
    truth = GroundTruth(frozenset(), frozenset(), frozenset(), ("a", "b"), T0, None, patterns=tuple(pats))
    events = [
        # Pattern a: one incident that grows over both of its clusters (new code's shape).
        event("inc-1", 0, T0 + timedelta(minutes=25), "c1", ["s00", "s01", "s02"]),
        event("inc-1", 1, T0 + timedelta(minutes=60), "c1", [f"s0{n}" for n in range(6)], clusters=("c1", "c1x")),
        # Pattern b: split over two incidents, one per cluster (old code's shape).
        event("inc-2", 0, T0 + timedelta(minutes=30), "c5", ["s10", "s11", "s12"]),
        event("inc-3", 0, T0 + timedelta(minutes=55), "c5x", ["s14", "s15", "zz"]),
        # About neither: other sessions, another cluster.
        event("inc-4", 0, T0 + timedelta(minutes=40), "c9", ["q1", "q2", "q3"]),
        # The right cluster, but long after the pattern ended (past the 6 h grace).
        event("inc-5", 0, T0 + timedelta(hours=9), "c1", ["q4", "q5", "q6"]),
    ]
    out = bench_incidents.evaluate(truth, records, events, cluster_of)
    a, b = out.patterns
    assert (a.incidents, b.incidents) == (1, 2) and (a.clusters_hit, b.clusters_hit) == (2, 2)
    assert a.recall == 1.0 and a.precision == 1.0 and a.delay_sessions == 3
    assert b.recall == 0.5 and b.recall_all == 5 / 6 and b.delay_sessions == 4
    assert out.false_incidents == 2 and out.separate is False
    cells = bench_incidents.summary_cells([asdict(out)])
    assert cells["exactly 1"] == "1/2" and cells["max"] == "2" and cells["2 separate"] == "0/1"


def test_quick_run_writes_the_fragment(tmp_path, monkeypatch):
    os.environ["HF_HUB_OFFLINE"] = "1"
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    bench_incidents.main(["--quick"])
    text = (tmp_path / "results" / "quick" / "detection_incidents.md").read_text(encoding="utf-8")
    assert text.startswith(f"## {bench_incidents.TITLE}")
    stored = json.loads((tmp_path / "results" / "quick" / "incidents" / "after.json").read_text(encoding="utf-8"))
    assert stored["seeds"] == [11] and len(stored["rows"]) == 2
    for stream in bench_incidents.streams(quick=True):
        assert f"| {stream.group} | {stream.name} | {stream.dataset} | after ({stored['commit']}) | 1 | " in text
    assert "2 separate" in text and "**after**: code " in text


def test_a_seeded_replay_fits_its_clusters_on_the_test_queries_of_the_streams_intents(tmp_path):
    """``--seeded``: the seed is the data set's test queries of exactly the stream's intents (none
    of them in the stream), and the replay uses it: the same stream gets other clusters."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    st = bench_incidents.streams(quick=True)[0]
    queries = bench_incidents.DATASETS[st.dataset]()
    scenario = generate(queries, ScenarioConfig(seed=11, days=st.days, per_day=st.per_day, intents=st.intents,
                                                incident=st.specs[0]))
    intent_of = {q: intent for intent, qs in queries.items() for q in qs}
    intents = {intent_of[r["query"]] for r in scenario.records}
    seed = bench_incidents.seed_queries(st.dataset, intents)
    assert len(intents) == st.intents and len(seed) == 30 * st.intents  # CLINC150: 30 test queries an intent
    assert not set(seed) & {r["query"] for r in scenario.records}
    cold = bench_incidents.replay_with(bench_incidents.TREE, scenario.records, tmp_path / "cold")[1]
    seeded = bench_incidents.replay_with(bench_incidents.TREE, scenario.records, tmp_path / "seeded", seed)[1]
    assert cold.keys() == seeded.keys() and cold != seeded


def test_targets_name_every_row_that_misses():
    def outs(incidents, recall, precision, delay, separate=None):
        return [{"false_incidents": 0, "separate": separate,
                 "patterns": [{"incidents": incidents, "recall": recall, "precision": precision,
                               "delay_sessions": delay}]}]

    stale = json.dumps(["existing kind", "stale_document", "clinc150"])
    slow = json.dumps(["existing kind", "gradual", "hwu64"])
    runs = {"before": {"commit": "b", "rows": {stale: outs(3, 0.5, 1.0, 3), slow: outs(1, 0.9, 1.0, 9)}},
            "after": {"commit": "a", "rows": {stale: outs(1, 1.0, 1.0, 5), slow: outs(1, 0.8, 0.95, 6)}}}
    lines = "\n".join(bench_incidents.targets(runs, "after"))
    assert "2/2 (100 %) -> **met**" in lines and "max 1 -> **met**" in lines
    assert "existing kind gradual (hwu64) 0.80 below -> **missed**" in lines
    assert "precision >= 0.9 on every row (row medians): all rows -> **met**" in lines
    assert "stale-document median delay <= 4 failing sessions: 5.0 -> **missed**" in lines
    assert "existing kind stale_document (clinc150) 3.0 -> 5.0 -> **missed**" in lines
    assert "gradual (hwu64) 9.0" not in lines  # faster than before is not a miss
    # Another run's seeds are other streams: their delays are not compared with before's.
    runs["before"]["seeds"], runs["after"]["seeds"] = [11, 12, 13], [4, 5, 6]
    lines = "\n".join(bench_incidents.targets(runs, "after"))
    assert "- median delay no worse than before: not compared (seeds 4, 5, 6 here, 11, 12, 13 there)" in lines
    assert "3.0 -> 5.0" not in lines


def test_extra_sessions_are_counted_by_where_they_come_from():
    # Pattern "a" in cluster c1, 08:00-09:00; c1 also answers intent "b".
    pattern = PatternTruth(kind="gradual", intents=("a",), onset_at=T0, fixed_at=T0 + timedelta(hours=1),
                           stale_doc=None, interaction_ids=frozenset({"p1", "p2", "p3"}),
                           session_ids=frozenset({"sp1", "sp2", "sp3"}), customer_ids=frozenset())
    truth = GroundTruth(frozenset(), frozenset(), frozenset(), ("a",), T0, None, patterns=(pattern,))
    answers = [  # id, minutes after onset, session, intent, failing
        ("p1", 5, "sp1", "a", True), ("p2", 10, "sp2", "a", True), ("p3", 20, "sp3", "a", True),
        ("n0", -20, "early", "a", True),    # noise before the onset
        ("n1", 30, "own", "a", True),       # its intent's background noise while it lasts
        ("n2", 35, "other", "b", True),     # another intent of the cluster
        ("n3", 40, "two", "b", False),      # a session whose failing answer comes after the fix:
        ("n4", 90, "two", "a", True),       # the failing one decides
        ("n5", 100, "late", "b", True),     # after the fix
    ]
    records = [{"interaction_id": i, "timestamp": iso(T0 + timedelta(minutes=m)), "session_id": s}
               for i, m, s, _, _ in answers]
    cluster_of = {i: "c1" for i, *_ in answers}
    failing = frozenset(i for i, *_, f in answers if f)
    intent_of = {i: intent for i, _, _, intent, _ in answers}
    sessions = ["sp1", "sp2", "sp3", "early", "own", "other", "two", "late"]
    events = [event("inc-1", 0, T0 + timedelta(minutes=25), "c1", sessions)]
    (p,) = bench_incidents.evaluate(truth, records, events, cluster_of, failing, intent_of).patterns
    assert p.precision == 3 / 8
    assert p.extras == {"before": 1, "during, its intents": 1, "during, other intents": 1, "after": 2}
    (old,) = bench_incidents.evaluate(truth, records, events, cluster_of).patterns
    assert old.extras is None and old.precision == p.precision
    lines = bench_incidents.extras_table({"rows": {json.dumps(["existing kind", "gradual", "banking77"]):
                                                   [asdict(bench_incidents.StreamOutcome([p], 0, None))]}}, "after")
    assert "| existing kind | gradual | banking77 | 5 | 1 | 1 | 1 | 2 |" in lines
    assert "| all | | | 5 | 1 | 1 | 1 | 2 |" in lines


def test_a_first_incident_that_re_opened_after_resolving_is_counted():
    def ev(seq: int, status: str, kind: str) -> dict:
        return {**event("inc-1", seq, T0 + timedelta(minutes=seq), "c1", ["s1", "s2", "s3"]),
                "event": kind, "status": status}

    evs = [ev(0, "open", "opened"), ev(1, "resolved", "resolved"), ev(2, "open", "updated"),
           ev(3, "resolved", "resolved"), ev(4, "resolved", "updated")]  # late evidence: no page
    (inc,) = bench_incidents.incidents_of(evs)
    assert inc.reopened == 1
    (inc,) = bench_incidents.incidents_of(evs[:2])
    assert inc.reopened == 0
