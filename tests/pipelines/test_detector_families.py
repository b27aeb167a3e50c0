"""One pattern, one incident: detection over intent families and correlation by cause."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta

from pipelines.config import BaselineConfig, DetectConfig
from pipelines.detector import PatternDetector
from pipelines.interaction import Context, Interaction
from pipelines.policy import Category
from services.notify.message import label
from services.report import incident_text

T0 = datetime(2026, 11, 2, tzinfo=UTC)
PRICING = Category(name="pricing", tolerance=0.08, gate=0.8, severity="critical", outreach=True)
OTHER = Category(name="other", tolerance=0.12, gate=0.8, severity="info")


def ctx(doc: str, version: str = "v1", stale: bool = False) -> Context:
    updated = T0 + timedelta(days=1) if stale else T0 - timedelta(days=30)
    return Context(doc_id=doc, doc_version=version, text="text", indexed_at=T0 - timedelta(days=20),
                   doc_updated_at=updated)


# Clusters c1..c9; families: f1 = c1-c4 (one intent in four phrasings), f5 = c5-c6, c7, c8, c9 alone.
FAMILY = {"c1": "f1", "c2": "f1", "c3": "f1", "c4": "f1", "c5": "f5", "c6": "f5"}
CLUSTERS = tuple(f"c{k}" for k in range(1, 10))
DOC_OF = {c: f"doc-{FAMILY.get(c, c)}" for c in CLUSTERS}  # each intent retrieves its own document


def _sizes(family) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for f in family.values():
        sizes[f] = sizes.get(f, 0) + 1
    return sizes


def detector(family=FAMILY, config: DetectConfig | None = None) -> PatternDetector:
    sizes = _sizes(family)
    return PatternDetector(BaselineConfig(), config or DetectConfig(),
                           family_of=lambda c: family.get(c, c), family_size=lambda f: sizes.get(f, 1))


def restored(d: PatternDetector, family=FAMILY) -> PatternDetector:
    """``d`` through its state as JSON, in a new detector."""
    sizes = _sizes(family)
    return PatternDetector.from_state(json.loads(json.dumps(d.to_state())), BaselineConfig(), d.config,
                                      family_of=lambda c: family.get(c, c), family_size=lambda f: sizes.get(f, 1))


def stream(n=9000, patterns=(), noise=0.03, seed=1, step=timedelta(seconds=30)):
    """Answers round-robin over the clusters. A pattern: (clusters, start, count, doc, stale) makes
    90 % of the answers of those clusters wrong for ``count`` answers from answer ``start``, citing
    ``doc`` (their own intent's document when None)."""
    rng = random.Random(seed)
    out = []
    left = {k: 0 for k in range(len(patterns))}
    t = T0
    for k in range(n):
        t += step
        cid = CLUSTERS[k % len(CLUSTERS)]
        failing, doc, stale = None, DOC_OF[cid], False
        for p, (clusters, start, count, pdoc, pstale) in enumerate(patterns):
            if k == start:
                left[p] = count
            if left[p] and cid in clusters:
                left[p] -= 1
                if rng.random() < 0.9:
                    failing, doc, stale = p, pdoc or DOC_OF[cid], pstale
        wrong = failing is not None or rng.random() < noise
        f = rng.uniform(0.1, 0.4) if wrong else min(1.0, max(0.0, rng.gauss(0.85, 0.05)))
        i = Interaction(interaction_id=f"i{k}", session_id=f"s{k // 27}-{cid}", customer_id=f"u{k // 90}",
                        timestamp=t, query="q", response="a", confidence=0.84 if wrong else 0.9,
                        contexts=(ctx(doc, stale=stale),))
        out.append((i, cid, f, failing))
    return out


def run(data, d=None, category=PRICING):
    d = d or detector()
    events, judgements = [], []
    for i, cid, f, _ in data:
        j = d.observe(i, cluster_id=cid, label=f"label {cid}", category=category, faithfulness=f)
        events += j.events
        judgements.append(j)
    return d, events, judgements


def about(events, clusters):
    """The events of incidents holding any of ``clusters`` (the streams' 3 % noise can, rarely, open
    an unrelated incident elsewhere: the old one-cluster detector opened the same one)."""
    ids = {e.incident_id for e in events if set(e.clusters) & set(clusters)}
    return [e for e in events if e.incident_id in ids]


def sessions_of(data, pattern):
    return {i.session_id for i, _, _, p in data if p == pattern}


def test_noise_alone_opens_nothing_at_either_level():
    _, events, _ = run(stream(n=40_000))
    assert events == []


def test_a_pattern_spread_over_one_familys_clusters_is_one_incident_with_all_of_them():
    data = stream(patterns=((("c1", "c2", "c3", "c4"), 4000, 400, None, False),))
    events = about(run(data)[1], ("c1", "c2", "c3", "c4"))
    assert len({e.incident_id for e in events}) == 1
    opened = [e for e in events if e.event == "opened"]
    assert len(opened) == 1
    last = events[-1]
    assert set(last.clusters) == {"c1", "c2", "c3", "c4"}
    assert last.family_ids == ("f1",)
    truth = sessions_of(data, 0)
    got = set(last.session_ids)
    assert len(got & truth) / len(truth) >= 0.9 and len(got & truth) / len(got) >= 0.9
    # Found about as early as one cluster holding the whole pattern would be (a handful of failures).
    failing_before = [i for i, _, _, p in data if p == 0 and i.timestamp <= opened[0].detected_at]
    assert len(failing_before) <= 8


def test_the_family_test_finds_a_pattern_no_single_cluster_shows():
    # 40 % wrong in each of four sub-clusters: each cluster alone sees few failures among its own
    # answers, the family sees them all. Without families each cluster would need its own proof.
    rng = random.Random(3)
    data = []
    for k, (i, cid, f, p) in enumerate(stream(n=9000)):
        if k >= 4000 and cid in ("c1", "c2", "c3", "c4") and rng.random() < 0.4:
            data.append((i, cid, rng.uniform(0.1, 0.3), 0))
        else:
            data.append((i, cid, f, p))
    with_families = [e for e in run(data)[1] if e.event == "opened"]
    alone = [e for e in run(data, detector(family={}))[1] if e.event == "opened"]
    assert with_families and with_families[0].level == "family"
    assert with_families[0].incident_id.startswith("inc-f1-")
    assert not alone or with_families[0].detected_at <= alone[0].detected_at


def test_one_stale_document_behind_unrelated_intents_is_one_incident():
    data = stream(patterns=((("c5", "c7", "c9"), 3000, 600, "pricing-table", True),))
    found = {}
    for share in (0.2, 0.0):  # with the document level (the default), and with clusters alone
        events = about(run(data, detector(config=DetectConfig(document_share=share)))[1], ("c5", "c7", "c9"))
        assert len({e.incident_id for e in events}) == 1, [(e.incident_id, e.clusters) for e in events]
        last = events[-1]
        assert set(last.clusters) == {"c5", "c7", "c9"}
        assert last.cause is not None and (last.cause.doc_id, last.cause.stale) == ("pricing-table", True)
        opened = next(e for e in events if e.event == "opened")
        updates = [e for e in events if e.event == "updated" and e.clusters_added]
        assert {c for e in updates for c in e.clusters_added} | set(opened.clusters) == {"c5", "c7", "c9"}
        found[share] = (opened, {m.cluster_id: m.joined_by for m in last.members})
    # The document's test pools the three intents' failures: it opens one incident with all three.
    opened, joined = found[0.2]
    assert opened.level == "document" and opened.incident_id.startswith("inc-d")
    assert set(opened.clusters) == {"c5", "c7", "c9"} and set(joined.values()) == {"opened"}
    # Without it, the first cluster to alarm opens it and the others join on its cause document,
    # later.
    alone, joined = found[0.0]
    assert alone.level == "cluster" and "document" in joined.values()
    assert opened.detected_at <= alone.detected_at


def test_a_neighbour_s_document_retrieved_below_the_cause_in_every_answer_is_not_a_second_cause():
    # One intent in four phrasings (f1); in c3 and c4 every answer also retrieves a neighbouring
    # intent's document, below its own. The pattern reaches c3 and c4 after c1's incident opened,
    # so their evidence comes from the family's test over its free clusters: each failing answer
    # there retrieved both documents, a tie that by id named the neighbour (its id sorts first)
    # as the cause, which conflicted with the incident's, and a second incident opened for one
    # cause (a CLINC150 restaurant_reviews spike, fresh seed 16).
    data = stream(patterns=((("c1",), 4000, 400, None, False), (("c3", "c4"), 4600, 400, None, False)))
    data = [(i.model_copy(update={"contexts": (*i.contexts, ctx("doc-a-neighbour"))}) if cid in ("c3", "c4") else i,
             cid, f, p) for i, cid, f, p in data]
    events = about(run(data)[1], ("c1", "c2", "c3", "c4"))
    assert len({e.incident_id for e in events}) == 1
    last = events[-1]
    assert {"c1", "c3", "c4"} <= set(last.clusters)
    assert last.cause is not None and last.cause.doc_id == "doc-f1"


def test_two_causes_at_once_stay_two_incidents_even_inside_one_family():
    data = stream(patterns=((("c1", "c2"), 3000, 500, "doc-a", False),
                            (("c3", "c4"), 3100, 500, "doc-b", False)))
    events = about(run(data)[1], ("c1", "c2", "c3", "c4"))
    ids = {e.incident_id for e in events}
    assert len(ids) == 2, [(e.event, e.incident_id, e.clusters) for e in events]
    final = {}
    for e in events:
        final[e.incident_id] = e
    by_cause = {e.cause.doc_id: set(e.clusters) for e in final.values()}
    assert by_cause == {"doc-a": {"c1", "c2"}, "doc-b": {"c3", "c4"}}


def test_two_causes_in_two_families_are_two_incidents():
    data = stream(patterns=((("c1",), 3000, 500, None, False), (("c7",), 3050, 500, None, False)))
    events = about(run(data)[1], ("c1", "c7"))
    final = {}
    for e in events:
        final[e.incident_id] = e
    assert sorted(tuple(e.clusters) for e in final.values()) == [("c1",), ("c7",)]


def test_the_same_sessions_failing_on_another_document_are_the_same_incident():
    # A stale index: c1's and c5's answers quote the stale pricing table, and the same customers'
    # answers in c7 (a third family) miss it, retrieve the fallback help page and make the figure up. The
    # causes differ and no family is shared, but the sessions are the same: one pattern, one page
    # (CLINC150 `stale_document`, fresh seed 17, paged twice). Two causes in other sessions stay
    # two incidents (test_two_causes_in_two_families_are_two_incidents).
    data = [(i.model_copy(update={"session_id": f"s{k // 27}"}) if p is not None else i, cid, f, p)
            for k, (i, cid, f, p) in enumerate(stream(patterns=((("c1", "c5"), 3000, 600, "pricing-table", True),
                                                                (("c7",), 3000, 200, "help-centre", False))))]
    events = about(run(data)[1], ("c1", "c5", "c7"))
    assert len({e.incident_id for e in events}) == 1, [(e.event, e.incident_id, e.clusters) for e in events]
    last = events[-1]
    assert set(last.clusters) == {"c1", "c5", "c7"} and last.cause.doc_id == "pricing-table"
    assert "sessions" in {m.joined_by for m in last.members}


def test_severity_and_outreach_come_from_the_strictest_member():
    data = stream(patterns=((("c5", "c7"), 3000, 500, "pricing-table", True),))
    d = detector()
    events = []
    for i, cid, f, _ in data:
        events += d.observe(i, cluster_id=cid, label=cid, category=PRICING if cid == "c7" else OTHER,
                            faithfulness=f).events
    final = events[-1]
    assert set(final.clusters) == {"c5", "c7"}
    assert (final.severity, final.outreach_required, final.category) == ("critical", True, "pricing")


def test_state_round_trip_mid_multi_cluster_incident_gives_the_same_future():
    data = stream(patterns=((("c1", "c2", "c3", "c4"), 3000, 800, None, False),
                            (("c5", "c7", "c9"), 3200, 800, "pricing-table", True)))
    d1, first, _ = run(data[:3900])
    assert any(e.event == "opened" for e in first)
    assert any(len(inc.members) > 1 for inc in d1.incidents.values())
    d2 = restored(d1)
    _, rest1, j1 = run(data[3900:], d1)
    _, rest2, j2 = run(data[3900:], d2)
    assert [e.to_json_dict() for e in rest1] == [e.to_json_dict() for e in rest2]
    assert [(j.below, j.incident_id) for j in j1] == [(j.below, j.incident_id) for j in j2]


def test_an_incident_resolves_once_all_members_are_back_and_frees_them():
    data = stream(n=14_000, patterns=((("c1", "c2", "c3", "c4"), 3000, 600, None, False),))
    d, events, _ = run(data[:6000])
    events = about(events, ("c1", "c2", "c3", "c4"))
    assert [e.event for e in events if e.event != "updated"] == ["opened", "resolved"]
    assert len(events[-1].clusters) == 4
    assert all(d.monitors[c].incident_id is None for c in ("c1", "c2", "c3", "c4"))
    # Freed members are tested again: a new pattern there is a new incident.
    _, later, _ = run(stream(n=14_000, patterns=((("c2",), 11_000, 400, None, False),), seed=5)[6000:], d)
    assert any(e.event == "opened" and "c2" in e.clusters for e in later)


def slow_stream(c3_fail, n=6000, seed=3):
    """c1 (every other answer) fails from answer 3000 to 3200 (then the index is fixed); c3, one
    answer in ten and in c1's family, fails at the answers in ``c3_fail``; c5 is another intent."""
    rng = random.Random(seed)
    out, t = [], T0
    for k in range(n):
        t += timedelta(seconds=30)
        cid = "c3" if k % 10 == 0 else ("c1" if k % 2 else "c5")
        failing = (cid == "c1" and 3000 <= k < 3200 and rng.random() < 0.9) or (cid == "c3" and k in c3_fail)
        wrong = failing or rng.random() < 0.02
        f = rng.uniform(0.1, 0.4) if wrong else min(1.0, max(0.0, rng.gauss(0.85, 0.05)))
        i = Interaction(interaction_id=f"i{k}", session_id=f"s{k}", customer_id=f"u{k // 90}",
                        timestamp=t, query="q", response="a", confidence=0.84 if wrong else 0.9,
                        contexts=(ctx("doc-f5" if cid == "c5" else "doc-f1"),))
        out.append((i, cid, f, 0 if failing else None))
    return out


def timeline(events):
    """Opened, resolved, and the updates that add clusters or change the status."""
    out, status = [], None
    for e in events:
        if e.event != "updated" or e.clusters_added or e.status != status:
            out.append((e.event, e.status, e.clusters_added))
        status = e.status
    return out


def test_a_slow_member_still_failing_holds_the_incident_open():
    # c3 joins while c1's pattern runs and keeps failing after c1 is back: the pooled recovery
    # (dominated by busy c1) alone would resolve, and c3 would open a second incident.
    data = slow_stream(set(range(3180, 3400, 10)))
    _, events, _ = run(data)
    assert len({e.incident_id for e in events}) == 1
    assert [e.event for e in events if e.event != "updated"] == ["opened", "resolved"]
    resolved = events[-1]
    assert resolved.clusters == ("c1", "c3")
    last_c3_failure = max(i.timestamp for i, cid, _, p in data if p == 0 and cid == "c3")
    assert resolved.event_at > last_c3_failure
    assert sessions_of(data, 0) <= set(resolved.session_ids)


def test_late_evidence_from_the_incidents_window_grows_it_after_resolution_without_reopening():
    # c3 fails from answer 3200 to 3260 and proves its pattern only after c1's incident resolved.
    data = slow_stream(set(range(3200, 3260, 10)))
    _, events, _ = run(data)
    assert len({e.incident_id for e in events}) == 1
    assert timeline(events) == [("opened", "open", ("c1",)), ("resolved", "resolved", ()),
                                ("updated", "resolved", ("c3",))]
    late = events[-1]
    assert late.summary.startswith("Found after it resolved")
    assert incident_text(late.to_json_dict()).startswith(f"[CRITICAL] UPDATED AFTER RESOLUTION {late.incident_id}")
    assert late.resolved_at == events[-2].resolved_at
    assert late.clusters == ("c1", "c3")
    # Its sessions are the failing answers of c3 up to the resolution (none after it).
    c3 = {i.session_id for i, cid, _, p in data if p == 0 and cid == "c3" and i.timestamp <= late.resolved_at}
    assert c3 and c3 <= set(late.session_ids)
    assert late.affected_sessions > events[-2].affected_sessions


def test_a_pattern_that_goes_on_after_resolution_reopens_the_incident():
    data = slow_stream(set(range(3220, 3400, 10)))
    _, events, _ = run(data)
    assert len({e.incident_id for e in events}) == 1
    assert timeline(events) == [("opened", "open", ("c1",)), ("resolved", "resolved", ()),
                                ("updated", "open", ("c3",)), ("resolved", "resolved", ())]
    reopened = next(e for e in events if e.event == "updated" and e.clusters_added == ("c3",))
    assert reopened.summary.startswith("Reopened") and reopened.resolved_at is None
    assert incident_text(reopened.to_json_dict()).startswith(f"[CRITICAL] UPDATED {reopened.incident_id}")
    assert [e.sequence for e in events] == list(range(len(events)))


def test_without_rejoining_the_slow_cluster_opens_a_second_incident():
    # The same stream with rejoin_hours = 0: what the rule above prevents.
    d = detector(config=DetectConfig(rejoin_hours=0))
    _, events, _ = run(slow_stream(set(range(3220, 3400, 10))), d)
    assert [e.event for e in events if e.event != "updated"] == ["opened", "resolved", "opened", "resolved"]


def test_a_resolved_incident_rejoins_only_for_rejoin_hours():
    data = slow_stream(set(range(3220, 3400, 10)))
    d, first, _ = run(data[:3240])
    assert [e.event for e in first if e.event != "updated"] == ["opened", "resolved"]
    assert list(d.resolved) == [first[0].incident_id]
    # State round trip with a resolved incident still joinable: the same future.
    d2 = restored(d)
    _, rest1, _ = run(data[3240:], d)
    _, rest2, _ = run(data[3240:], d2)
    assert [e.to_json_dict() for e in rest1] == [e.to_json_dict() for e in rest2]
    assert rest1 and all(e.incident_id == first[0].incident_id for e in rest1)
    # rejoin_hours after its last resolution it is forgotten.
    d.advance(rest1[-1].event_at + timedelta(hours=d.config.rejoin_hours, seconds=1))
    assert d.resolved == {}


def spread_stream(n=12_000, start=4000, count=3000, doc_in_c8=None, in_c8=True, seed=5):
    """Round-robin over c7, c8, c9. From answer ``start``, for ``count`` answers, the intent of c7
    fails (90 % of its answers, citing doc-c7). With ``in_c8``, every 8th answer of c8 is that
    intent too (its phrasing lands with another intent's cluster), retrieves doc-c7 and fails the
    same way, too rarely for c8's own test. c8's other answers retrieve doc-c8, and ``doc_in_c8``
    too when given (a document every c8 answer reads)."""
    rng = random.Random(seed)
    out = []
    t = T0
    clusters = ("c7", "c8", "c9")
    c8_seen = 0
    for k in range(n):
        t += timedelta(seconds=30)
        cid = clusters[k % 3]
        on = start <= k < start + count
        failing, docs = None, [DOC_OF[cid]]
        if cid == "c8":
            c8_seen += 1
            if doc_in_c8:
                docs.append(doc_in_c8)
            if in_c8 and on and c8_seen % 8 == 0:
                docs = ["doc-c7"]
                if rng.random() < 0.9:
                    failing = 0
        elif cid == "c7" and on and rng.random() < 0.9:
            failing = 0
        wrong = failing is not None or rng.random() < 0.03
        f = rng.uniform(0.1, 0.4) if wrong else min(1.0, max(0.0, rng.gauss(0.85, 0.05)))
        i = Interaction(interaction_id=f"i{k}", session_id=f"s{k}-{cid}", customer_id=f"u{k // 90}",
                        timestamp=t, query="q", response="a", confidence=0.84 if wrong else 0.9,
                        contexts=tuple(ctx(d) for d in docs))
        out.append((i, cid, f, failing))
    return out


def test_failing_answers_outside_the_incidents_clusters_that_retrieved_its_cause_join_it():
    data = spread_stream()
    d, events, _ = run(data)
    ids = {e.incident_id for e in events}
    assert len(ids) == 1
    last = events[-1]
    truth = sessions_of(data, 0)
    outside = {i.session_id for i, cid, _, p in data if p == 0 and cid == "c8"}
    got = set(last.session_ids)
    assert "c8" not in last.clusters  # another intent's cluster: its failing answers, not a member
    # c8's failing answers of the pattern from the incident's opening on are its sessions.
    opened = next(e for e in events if e.event == "opened")
    late = {i.session_id for i, cid, _, p in data if p == 0 and cid == "c8" and i.timestamp > opened.detected_at}
    assert len(late & got) >= 0.8 * len(late) and len(outside) >= 20
    assert len(got & truth) / len(got) >= 0.9
    # The page says how much of the blast radius lies outside its member clusters.
    elsewhere = last.below_baseline_count - sum(m.below_baseline_count for m in last.members)
    assert elsewhere >= 0.8 * len(late)
    assert f"{elsewhere} of them in other clusters, by answers there that retrieved doc-c7 v1." in last.summary
    # The evidence and the waiting answers are state: a restart mid-incident gives the same future.
    half = len(data) // 2
    d1, ev1, _ = run(data[:half])
    _, ev2, _ = run(data[half:], d=restored(d1))
    assert [e.model_dump() for e in ev1 + ev2] == [e.model_dump() for e in events]


def test_a_cause_document_healthy_intents_also_retrieve_takes_none_of_their_failures():
    # Every c8 answer reads doc-c7 too, and c8 holds none of the pattern: its noise failures
    # retrieved the cause, but most of its answers that did pass, so none of them joins.
    data = spread_stream(doc_in_c8="doc-c7", in_c8=False)
    _, events, _ = run(data)
    last = events[-1]
    assert "c8" not in last.clusters
    noise = {i.session_id for i, cid, _, p in data if cid == "c8" and p is None}
    assert not noise & set(last.session_ids)


def rare_stream(n=12_000, start=3000, count=6000, seed=7, second_in_c9=False):
    """Round-robin over c7, c8, c9. Every 12th answer of c8 and of c9 is a rare intent's (its
    phrasings land with other intents' clusters; its own session each) that retrieves doc-rare
    first; from answer ``start`` for ``count`` answers 90 % of those fail. Neither c8's nor c9's
    test can see one failure in twelve answers; neither family holds both. With
    ``second_in_c9`` c9's own answers retrieve doc-rare too, second."""
    rng = random.Random(seed)
    out = []
    t = T0
    clusters = ("c7", "c8", "c9")
    for k in range(n):
        t += timedelta(seconds=30)
        cid = clusters[k % 3]
        rare = cid != "c7" and (k // 3) % 12 == 0
        failing = 0 if rare and start <= k < start + count and rng.random() < 0.9 else None
        wrong = failing is not None or rng.random() < 0.03
        f = rng.uniform(0.1, 0.4) if wrong else min(1.0, max(0.0, rng.gauss(0.85, 0.05)))
        i = Interaction(interaction_id=f"i{k}", session_id=f"r{k}" if rare else f"s{k // 27}-{cid}",
                        customer_id=f"u{k // 90}", timestamp=t, query="q", response="a",
                        confidence=0.84 if wrong else 0.9,
                        contexts=(ctx("doc-rare"),) if rare else (
                            (ctx(DOC_OF[cid]), ctx("doc-rare")) if second_in_c9 and cid == "c9"
                            else (ctx(DOC_OF[cid]),)))
        out.append((i, cid, f, failing))
    return out


def test_the_document_test_finds_a_rare_intent_spread_over_other_intents_clusters():
    data = rare_stream()
    truth = sessions_of(data, 0)
    d, events, _ = run(data)
    assert len({e.incident_id for e in events}) == 1, [(e.incident_id, e.clusters) for e in events]
    opened = next(e for e in events if e.event == "opened")
    assert opened.level == "document" and opened.incident_id.startswith("inc-d")
    assert opened.cause is not None and opened.cause.doc_id == "doc-rare"
    # Found after a handful of the rare intent's failing answers.
    failing_before = [i for i, _, _, p in data if p == 0 and i.timestamp <= opened.detected_at]
    assert len(failing_before) <= 8
    # Neither cluster is mostly the rare intent: the headline cluster is the one member, the
    # other stays free (its own intent's answers keep their baseline and their test), and the
    # rare intent's failing answers in both are the incident's sessions, nothing else.
    final = [e for e in events if e.event == "resolved"][-1]
    assert len(final.clusters) == 1 and final.clusters[0] in ("c8", "c9")
    other = ({"c8", "c9"} - set(final.clusters)).pop()
    assert d.monitors[other].incident_id is None
    got = set(final.session_ids)
    assert len(got & truth) / len(truth) >= 0.9 and len(got & truth) / len(got) >= 0.9
    # It resolves on its readers: once the rare intent's answers pass again, not while they fail.
    end = max(i.timestamp for i, _, _, p in data if p == 0)
    # (Back as of resolved_at; the event comes once it has stayed back for resolve_hold_minutes:
    # one rare intent's answers among others, it has shown a failure rate below p1.)
    assert final.resolved_at is not None and end <= final.resolved_at <= end + timedelta(hours=4)
    assert final.event_at >= final.resolved_at + timedelta(minutes=DetectConfig().resolve_hold_minutes)
    # The page says which test found it and which document its readers share.
    text = incident_text(opened.to_json_dict())
    assert "1 member cluster (opened by its cause document's test" in text and "doc-rare" in text
    assert '(readers of doc-rare v1)' in label(opened)
    # Without the document level nothing finds it.
    alone = run(data, detector(config=DetectConfig(document_share=0.0)))[1]
    assert not [e for e in alone if set(e.clusters) & {"c8", "c9"}]
    # Its test, the readers' shares and the incident are state: a restart gives the same future.
    for cut in (3400, 4600):
        d1, ev1, _ = run(data[:cut])
        _, ev2, _ = run(data[cut:], d=restored(d1))
        assert [e.model_dump() for e in ev1 + ev2] == [e.model_dump() for e in events]


def test_a_document_s_incident_takes_no_failures_of_answers_that_read_it_lower_down():
    # c9's own intent retrieves doc-rare second: another intent, whose noise is not the rare one's.
    data = rare_stream(second_in_c9=True)
    truth = sessions_of(data, 0)
    _, events, _ = run(data)
    final = [e for e in events if e.event == "resolved"][-1]
    assert final.level == "document"
    c9_noise = {i.session_id for i, cid, _, p in data if cid == "c9" and p is None and i.session_id.startswith("s")}
    got = set(final.session_ids)
    assert not got & c9_noise
    assert len(got & truth) / len(truth) >= 0.9 and len(got & truth) / len(got) >= 0.9


def test_a_noise_failure_in_a_sibling_minutes_before_a_family_s_spike_is_not_its_start():
    # A spike over c1-c4 (every answer wrong) from answer 5400 on; one round before, a noise
    # failure in c2. Against the tested rate the family's three passing answers in between weigh
    # little and its excursion starts there; at the rate the spike shows they do not.
    start = 5400  # a round of the nine clusters and a new block of sessions (27 answers) start here
    data = stream(patterns=((("c1", "c2", "c3", "c4"), start, 400, None, False),), seed=4)
    k = start - 8  # c2's answer in the round before
    i, cid, _, _ = data[k]
    assert cid == "c2"
    data[k] = (i, cid, 0.2, None)
    for j in range(start, start + 40):  # the spike: every answer of its clusters fails
        i, cid, f, p = data[j]
        if cid in ("c1", "c2", "c3", "c4"):
            data[j] = (i, cid, 0.2, 0)
    events = about(run(data)[1], ("c1", "c2", "c3", "c4"))
    opened = next(e for e in events if e.event == "opened")
    assert len({e.incident_id for e in events}) == 1 and opened.level == "family"
    assert opened.onset_at == data[start][0].timestamp
    assert data[k][0].session_id not in events[-1].session_ids
