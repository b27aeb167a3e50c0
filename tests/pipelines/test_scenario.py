"""The demo stream must tell the stale pricing-table story faithfully, and nothing else."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines import knowledge_base as kb
from pipelines.interaction import parse_record
from pipelines.scenario import (
    INCIDENT_KINDS,
    PRICING_INTENTS,
    IncidentSpec,
    ScenarioConfig,
    _hallucinate,
    generate,
    to_jsonl_lines,
)
from services.datasets import load_banking77

CONFIG = ScenarioConfig()


@pytest.fixture(scope="module")
def queries():
    return load_banking77("train")


@pytest.fixture(scope="module")
def scenario(queries):
    return generate(queries, CONFIG)


@pytest.fixture(scope="module")
def clean(queries):
    return generate(queries, replace(CONFIG, incident=None))


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def is_stale(ctx: dict) -> bool:
    return ts(ctx["doc_updated_at"]) > ts(ctx["indexed_at"])


def by_id(scenario, ids):
    return [r for r in scenario.records if r["interaction_id"] in ids]


def numbers_supported(record: dict) -> bool:
    stated = {float(n) for n in kb.numbers_in(record["response"])}
    known = {float(n) for c in record["contexts"] for n in kb.numbers_in(c["text"])}
    return stated <= known


# --- contract and shape -----------------------------------------------------------------------

@pytest.mark.parametrize("which", ["scenario", "clean"])
def test_every_record_passes_the_contract(which, request):
    records = request.getfixturevalue(which).records
    assert len(records) == CONFIG.days * CONFIG.per_day
    parsed = [parse_record(r) for r in records]
    assert len({p.interaction_id for p in parsed}) == len(parsed)
    for p in parsed:
        assert p.session_id and p.customer_id and p.response and p.model
        assert 1 <= len(p.contexts) <= 3
        assert p.intent_hint is None and p.faithfulness is None  # the service must work these out
        assert p.confidence is not None


def test_timestamps_are_sorted_utc_event_times(scenario):
    stamps = [r["timestamp"] for r in scenario.records]
    assert all(s.endswith("Z") for s in stamps)
    moments = [ts(s) for s in stamps]
    assert moments == sorted(moments)
    assert CONFIG.start <= moments[0] and moments[-1] < CONFIG.start + timedelta(days=CONFIG.days)


def test_same_seed_same_bytes_other_seed_differs(queries, scenario):
    again = generate(queries, CONFIG)
    assert list(to_jsonl_lines(again.records)) == list(to_jsonl_lines(scenario.records))
    assert again.truth == scenario.truth
    other = generate(queries, replace(CONFIG, seed=8))
    assert other.records[0] != scenario.records[0]


def test_jsonl_lines_round_trip(scenario):
    lines = list(to_jsonl_lines(scenario.records[:50]))
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert [json.loads(line) for line in lines] == scenario.records[:50]


# --- the incident -----------------------------------------------------------------------------

def test_incident_hits_exactly_the_requested_sessions_after_onset(queries, scenario):
    truth = scenario.truth
    hit = by_id(scenario, truth.incident_interaction_ids)
    assert len(truth.incident_session_ids) == CONFIG.incident.sessions
    assert {r["session_id"] for r in hit} == truth.incident_session_ids
    assert {r["customer_id"] for r in hit} == truth.incident_customer_ids
    assert truth.onset_at == CONFIG.start + timedelta(days=CONFIG.incident.onset_day)
    assert truth.fixed_at is not None and truth.onset_at < truth.fixed_at
    pricing_queries = {q for i in CONFIG.incident.intents for q in queries[i]}
    for r in hit:
        assert truth.onset_at <= ts(r["timestamp"]) < truth.fixed_at
        assert r["query"] in pricing_queries
    assert truth.incident_intents == CONFIG.incident.intents
    assert set(CONFIG.incident.intents) <= set(PRICING_INTENTS)
    assert truth.stale_doc == ("pricing-table", "v3")


def test_every_pricing_answer_inside_the_window_is_wrong(scenario):
    truth = scenario.truth
    for r in scenario.records:
        inside = truth.onset_at <= ts(r["timestamp"]) < truth.fixed_at
        cites_table = any(c["doc_id"] == kb.PRICING_DOC for c in r["contexts"])
        if inside and cites_table:
            assert r["interaction_id"] in truth.incident_interaction_ids


def test_stale_share_and_what_stale_answers_look_like(scenario):
    truth = scenario.truth
    share = len(truth.stale_interaction_ids) / len(truth.incident_interaction_ids)
    assert share == pytest.approx(CONFIG.incident.stale_share, abs=0.05)
    stale_anywhere = {r["interaction_id"] for r in scenario.records
                      if any(is_stale(c) for c in r["contexts"])}
    assert stale_anywhere == truth.stale_interaction_ids
    for r in by_id(scenario, truth.stale_interaction_ids):
        top = r["contexts"][0]
        assert (top["doc_id"], top["doc_version"]) == ("pricing-table", "v3")
        assert ts(top["doc_updated_at"]) == truth.onset_at > ts(top["indexed_at"])
        # The v3 passage was indexed about two weeks before v4 went live.
        assert timedelta(days=13) < truth.onset_at - ts(top["indexed_at"]) < timedelta(days=15)
        assert top["text"] in r["response"]  # quotes the old prices, faithfully to the context
        assert numbers_supported(r)


def test_the_other_incident_answers_state_figures_no_context_has(scenario):
    truth = scenario.truth
    others = by_id(scenario, truth.incident_interaction_ids - truth.stale_interaction_ids)
    assert others
    for r in others:
        assert not numbers_supported(r)
        assert not any(is_stale(c) for c in r["contexts"])


def test_incident_answers_are_confident_enough_to_pass_the_gate(scenario):
    confidences = [r["confidence"] for r in by_id(scenario, scenario.truth.incident_interaction_ids)]
    assert 0.82 <= statistics.mean(confidences) <= 0.86
    assert sum(c >= CONFIG.gate for c in confidences) / len(confidences) >= 0.8


def test_pricing_table_versions_before_onset_and_after_the_fix(scenario):
    truth = scenario.truth
    before = after = 0
    for r in scenario.records:
        moment = ts(r["timestamp"])
        for c in r["contexts"]:
            if c["doc_id"] != kb.PRICING_DOC or r["interaction_id"] in truth.incident_interaction_ids:
                continue
            assert not is_stale(c)
            if moment < truth.onset_at:
                before += 1
                assert c["doc_version"] == "v3"
            else:
                after += 1
                assert moment >= truth.fixed_at
                assert c["doc_version"] == "v4" and ts(c["indexed_at"]) == truth.fixed_at
    assert before > 100 and after > 100


# --- the clean stream and background noise ----------------------------------------------------

def test_clean_stream_has_no_stale_context_and_empty_truth(scenario, clean):
    truth = clean.truth
    assert not truth.incident_interaction_ids and not truth.incident_session_ids
    assert not truth.incident_customer_ids and not truth.stale_interaction_ids
    assert truth.onset_at is None and truth.stale_doc is None and truth.incident_intents == ()
    assert not any(is_stale(c) for r in clean.records for c in r["contexts"])
    # Same traffic: the incident changes answers, never who asked what and when.
    assert [(r["interaction_id"], r["timestamp"], r["query"]) for r in clean.records] == [
        (r["interaction_id"], r["timestamp"], r["query"]) for r in scenario.records]
    changed = {a["interaction_id"] for a, b in zip(clean.records, scenario.records, strict=True)
               if a != b}
    assert scenario.truth.incident_interaction_ids <= changed
    assert all(ts(r["timestamp"]) >= scenario.truth.onset_at for r in by_id(scenario, changed))


@pytest.mark.parametrize("which", ["scenario", "clean"])
def test_noise_rate_and_noise_is_hallucinated_figures(which, request):
    s = request.getfixturevalue(which)
    noise = s.truth.noise_interaction_ids
    assert not noise & s.truth.incident_interaction_ids
    others = len(s.records) - len(s.truth.incident_interaction_ids)
    assert len(noise) / others == pytest.approx(CONFIG.noise_rate, abs=0.01)
    wrong = noise | s.truth.incident_interaction_ids
    for r in s.records:
        if r["interaction_id"] in noise:
            assert not numbers_supported(r)
        elif r["interaction_id"] not in wrong:
            assert numbers_supported(r), r["response"]
    # Noise reaches the pricing intents too, so a cluster's baseline is never spotless.
    assert any(c["doc_id"] == kb.PRICING_DOC for r in by_id(s, noise) for c in r["contexts"])
    noise_conf = [r["confidence"] for r in by_id(s, noise)]
    assert 0.8 <= statistics.mean(noise_conf) <= 0.95  # stated with normal confidence


# --- realism ----------------------------------------------------------------------------------

def test_daily_cycle_busy_afternoons_quiet_nights(clean):
    hours = Counter(ts(r["timestamp"]).hour for r in clean.records)
    assert hours[14] > 4 * hours[3]


def test_sessions_are_short_bursts_and_customers_return(clean):
    sessions: dict[str, list[datetime]] = defaultdict(list)
    customers: dict[str, set[str]] = defaultdict(set)
    for r in clean.records:
        sessions[r["session_id"]].append(ts(r["timestamp"]))
        customers[r["customer_id"]].add(r["session_id"])
    sizes = Counter(len(v) for v in sessions.values())
    assert set(sizes) <= {1, 2, 3, 4, 5} and sizes[1] > sizes[5] > 0
    spans = [max(v) - min(v) for v in sessions.values()]
    assert statistics.median(spans) < timedelta(minutes=15)
    assert statistics.mean(len(v) for v in customers.values()) >= 2


def test_intents_are_skewed_and_their_confidence_differs(queries, clean):
    intent_of = {q: i for i, qs in queries.items() for q in qs}
    counts = Counter(intent_of[r["query"]] for r in clean.records)
    assert len(counts) == CONFIG.intents
    assert set(CONFIG.incident.intents) <= set(counts)
    # The incident's intent is among the most asked (the stream must reach 23 sessions quickly).
    assert all(counts[i] >= sorted(counts.values())[-3] for i in CONFIG.incident.intents)
    assert max(counts.values()) > 8 * min(counts.values())
    confidence: dict[str, list[float]] = defaultdict(list)
    for r in clean.records:
        confidence[intent_of[r["query"]]].append(r["confidence"])
    means = [statistics.mean(v) for v in confidence.values() if len(v) >= 30]
    assert max(means) - min(means) > 0.04


def test_producer_faithfulness_is_high_for_right_and_low_for_wrong(queries, scenario):
    scored = generate(queries, replace(CONFIG, producer_faithfulness=True))
    wrong = scenario.truth.incident_interaction_ids | scenario.truth.noise_interaction_ids
    right_scores, wrong_scores = [], []
    for plain, r in zip(scenario.records, scored.records, strict=True):
        assert {k: v for k, v in r.items() if k != "faithfulness"} == plain
        (wrong_scores if r["interaction_id"] in wrong else right_scores).append(r["faithfulness"])
    assert statistics.mean(right_scores) > 0.85 and statistics.mean(wrong_scores) < 0.45


# --- configuration errors and properties ------------------------------------------------------

@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ScenarioConfig(start=datetime(2026, 11, 2)), "timezone"),  # noqa: DTZ001
        (ScenarioConfig(incident=IncidentSpec(kind="outage")), "unknown incident kind"),
        (ScenarioConfig(incident=IncidentSpec(intents=("card_arrival",))), "pricing table"),
        (ScenarioConfig(incident=IncidentSpec(onset_day=5)), "onset_day"),
        (ScenarioConfig(days=1, per_day=200, incident=IncidentSpec(onset_day=0.9, sessions=500)),
         "only"),
        (ScenarioConfig(noise_rate=1.5), "noise_rate"),
    ],
)
def test_unusable_configs_are_refused(queries, config, message):
    with pytest.raises(ValueError, match=message):
        generate(queries, config)


def test_missing_incident_intent_queries_are_refused():
    with pytest.raises(ValueError, match="no queries"):
        generate({"card_arrival": ["where is my card"]}, ScenarioConfig())


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), sessions=st.integers(1, 8), onset=st.floats(0.2, 1.2),
       start_hour=st.integers(0, 23))
def test_any_seed_gives_a_valid_stream_with_the_exact_blast_radius(queries, seed, sessions, onset,
                                                                     start_hour):
    config = ScenarioConfig(seed=seed, days=2, per_day=400,
                            start=datetime(2026, 3, 1, start_hour, tzinfo=UTC),
                            incident=IncidentSpec(onset_day=onset, sessions=sessions))
    s = generate(queries, config)
    moments = [ts(parse_record(r).to_record()["timestamp"]) for r in s.records]
    assert moments == sorted(moments)
    assert len(s.truth.incident_session_ids) == sessions
    assert all(ts(r["timestamp"]) >= s.truth.onset_at
               for r in by_id(s, s.truth.incident_interaction_ids))


@settings(max_examples=60, deadline=None)
@given(text=st.sampled_from(sorted(t for v in kb.PRICING_TABLE.values() for t in v.values())),
       seed=st.integers(0, 2**31))
def test_a_hallucinated_figure_is_stated_by_no_passage(text, seed):
    import numpy as np

    changed = _hallucinate(text, np.random.default_rng(seed))
    before, after = kb.numbers_in(text), kb.numbers_in(changed)
    assert len(before) == len(after)
    new = [b for a, b in zip(before, after, strict=True) if a != b]
    assert len(new) == 1 and new[0] not in kb.KNOWN_NUMBERS


# --- the other incident kinds, on the three data sets -----------------------------------------

KIND_CONFIG = ScenarioConfig(seed=11, days=3, per_day=900, intents=25)


@pytest.fixture(scope="module")
def datasets(queries):
    from services.datasets import load_clinc150, load_hwu64

    return {"banking77": queries, "clinc150": load_clinc150("train"), "hwu64": load_hwu64("train")}


def kind_spec(kind: str, dataset: str) -> IncidentSpec:
    if kind == "stale_document" and dataset == "banking77":
        return IncidentSpec(onset_day=1.6, sessions=15)  # the pricing-table path
    return IncidentSpec.of(kind, onset_day=1.2 if kind == "low_volume" else 1.6,
                           **({"sessions": 15} if kind in ("stale_document", "high_confidence") else {}))


KIND_CASES = [(k, d) for k in INCIDENT_KINDS for d in ("banking77", "clinc150", "hwu64")]


@pytest.fixture(scope="module")
def kinds(datasets):
    return {(k, d): generate(datasets[d], replace(KIND_CONFIG, incident=kind_spec(k, d)))
            for k, d in KIND_CASES}


@pytest.mark.parametrize(("kind", "dataset"), KIND_CASES)
def test_each_kind_gives_contract_records_and_exact_truth(kinds, datasets, kind, dataset):
    s = kinds[(kind, dataset)]
    truth = s.truth
    parsed = [parse_record(r) for r in s.records]
    assert len({p.interaction_id for p in parsed}) == len(parsed) == KIND_CONFIG.days * KIND_CONFIG.per_day
    assert [r["timestamp"] for r in s.records] == sorted(r["timestamp"] for r in s.records)
    assert truth.kind == kind and len(truth.incident_intents) == 1
    intent = truth.incident_intents[0]
    intent_queries = set(datasets[dataset][intent])
    hit = by_id(s, truth.incident_interaction_ids)
    assert hit and {r["session_id"] for r in hit} == truth.incident_session_ids
    assert {r["customer_id"] for r in hit} == truth.incident_customer_ids
    end = truth.fixed_at or KIND_CONFIG.start + timedelta(days=KIND_CONFIG.days)
    for r in hit:
        assert r["query"] in intent_queries
        assert truth.onset_at <= ts(r["timestamp"]) < end
    if kind != "spike":
        assert len(truth.incident_session_ids) == s_sessions(kind, dataset)
    # Exact: an answer states a figure no context supports iff it is noise or a non-stale
    # incident answer; stale answers quote their (out of date) passage faithfully.
    unsupported = {r["interaction_id"] for r in s.records if not numbers_supported(r)}
    assert unsupported == (truth.noise_interaction_ids
                           | (truth.incident_interaction_ids - truth.stale_interaction_ids))
    assert not truth.noise_interaction_ids & truth.incident_interaction_ids
    stale_anywhere = {r["interaction_id"] for r in s.records if any(is_stale(c) for c in r["contexts"])}
    assert stale_anywhere == truth.stale_interaction_ids
    if kind == "stale_document":
        assert truth.stale_doc is not None
        assert len(truth.stale_interaction_ids) >= 0.7 * len(truth.incident_interaction_ids)
        for r in by_id(s, truth.stale_interaction_ids):
            top = r["contexts"][0]
            assert (top["doc_id"], top["doc_version"]) == truth.stale_doc and top["text"] in r["response"]
    else:
        assert truth.stale_doc is None and not truth.stale_interaction_ids
    json.dumps(truth.to_json())  # JSON-safe


def s_sessions(kind: str, dataset: str) -> int:
    return kind_spec(kind, dataset).sessions


def intent_answers(s, datasets, dataset):
    qs = set(datasets[dataset][s.truth.incident_intents[0]])
    return [r for r in s.records if r["query"] in qs]


@pytest.mark.parametrize("dataset", ["banking77", "hwu64"])
def test_gradual_failing_share_ramps_up(kinds, datasets, dataset):
    s = kinds[("gradual", dataset)]
    truth = s.truth
    inside = [r for r in intent_answers(s, datasets, dataset)
              if truth.onset_at <= ts(r["timestamp"]) < truth.fixed_at]
    half = len(inside) // 2
    share = [sum(r["interaction_id"] in truth.incident_interaction_ids for r in part) / len(part)
             for part in (inside[:half], inside[half:])]
    assert share[0] < share[1] and share[1] < 1.0  # ramps, and never every answer


def test_spike_hits_every_answer_of_its_intent_during_the_burst(kinds, datasets):
    s = kinds[("spike", "clinc150")]
    truth = s.truth
    assert truth.fixed_at - truth.onset_at == timedelta(minutes=IncidentSpec.of("spike").duration_minutes)
    inside = {r["interaction_id"] for r in intent_answers(s, datasets, "clinc150")
              if truth.onset_at <= ts(r["timestamp"]) < truth.fixed_at}
    assert inside == set(truth.incident_interaction_ids)


def test_low_volume_picks_the_rarest_intent(kinds, datasets):
    s = kinds[("low_volume", "hwu64")]
    intent_of = {q: i for i, qs in datasets["hwu64"].items() for q in qs}
    counts = Counter(intent_of[r["query"]] for r in s.records)
    assert counts[s.truth.incident_intents[0]] <= sorted(counts.values())[2]


def test_high_confidence_answers_sit_well_above_the_gate(kinds):
    s = kinds[("high_confidence", "banking77")]
    conf = [r["confidence"] for r in by_id(s, s.truth.incident_interaction_ids)]
    assert statistics.mean(conf) >= 0.93 and min(conf) > KIND_CONFIG.gate + 0.05


def test_generated_stale_document_serves_the_new_revision_after_the_fix(kinds):
    s = kinds[("stale_document", "hwu64")]
    truth = s.truth
    doc_id, old = truth.stale_doc
    after = [c for r in s.records if ts(r["timestamp"]) >= truth.fixed_at
             for c in r["contexts"] if c["doc_id"] == doc_id]
    assert after and all(c["doc_version"] != old and not is_stale(c) for c in after)
    assert all(ts(c["indexed_at"]) == truth.fixed_at for c in after)


@pytest.mark.parametrize("kind", INCIDENT_KINDS)
def test_each_kind_is_deterministic_per_seed(datasets, kind):
    config = replace(KIND_CONFIG, days=2, per_day=600, incident=IncidentSpec.of(
        kind, onset_day=0.6 if kind == "low_volume" else 1.6, **({"sessions": 1} if kind != "spike" else {})))
    a, b = generate(datasets["hwu64"], config), generate(datasets["hwu64"], config)
    assert list(to_jsonl_lines(a.records)) == list(to_jsonl_lines(b.records)) and a.truth == b.truth
    c = generate(datasets["hwu64"], replace(config, seed=config.seed + 1))
    assert c.records[0] != a.records[0]


def test_producer_scores_differ_between_intents(queries):
    s = generate(queries, replace(CONFIG, incident=None, producer_faithfulness=True))
    intent_of = {q: i for i, qs in queries.items() for q in qs}
    scores: dict[str, list[float]] = defaultdict(list)
    for r in s.records:
        if r["interaction_id"] not in s.truth.noise_interaction_ids:
            scores[intent_of[r["query"]]].append(r["faithfulness"])
    means = [statistics.mean(v) for v in scores.values() if len(v) >= 50]
    assert max(means) - min(means) > 0.04


def test_generated_passages_are_stable_and_revisions_change_every_figure():
    p = kb.passage_for("calendar_set")
    assert p == kb.passage_for("calendar_set") and p.doc_id == "kb-calendar-set"
    new = kb.generic_passage("calendar_set", revision=1)
    assert new.doc_id == p.doc_id and new.version != p.version
    old_numbers, new_numbers = kb.numbers_in(p.text), kb.numbers_in(new.text)
    assert len(old_numbers) == len(new_numbers) >= 3
    assert all(a != b for a, b in zip(old_numbers, new_numbers, strict=True))
    assert set(old_numbers) | set(new_numbers) <= kb.GENERIC_NUMBERS
    assert kb.neighbours_of("calendar_set", among=("calendar_query", "music_play")) == (
        kb.passage_for("calendar_query"),)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (IncidentSpec.of("stale_document", intents=("card_arrival",)), "pricing table or a generated"),
        (IncidentSpec.of("gradual", peak_share=0), "peak_share"),
        (IncidentSpec.of("spike", duration_minutes=-1), "duration_minutes"),
        (IncidentSpec.of("spike", onset_day=0.05, duration_minutes=1), "during the spike"),
    ],
)
def test_unusable_kind_specs_are_refused(queries, spec, message):
    with pytest.raises(ValueError, match=message):
        generate(queries, replace(CONFIG, incident=spec))


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown incident kind"):
        IncidentSpec.of("outage")


# --- issue #10: one cause behind several intents, two causes at once --------------------------

SHARED = ("bill_balance", "reminder", "weather")  # CLINC150 intents of unrelated domains


@pytest.fixture(scope="module")
def shared(datasets):
    spec = IncidentSpec(intents=SHARED, onset_day=1.6, sessions=18, document="kb-account-help")
    return generate(datasets["clinc150"], replace(KIND_CONFIG, incident=spec))


def test_shared_document_is_read_by_all_its_intents_and_goes_stale_once(shared):
    truth = shared.truth
    assert truth.stale_doc == ("kb-account-help", kb.document("kb-account-help").version)
    assert len(truth.patterns) == 1 and truth.patterns[0].stale_doc == truth.stale_doc
    assert len(truth.incident_session_ids) == 18
    records = {r["interaction_id"]: r for r in shared.records}
    # Every stale answer cites the one shared document, stale, and the hit spans its intents.
    for iid in truth.stale_interaction_ids:
        top = records[iid]["contexts"][0]
        assert top["doc_id"] == "kb-account-help" and is_stale(top)
    hit_queries = {records[i]["query"] for i in truth.incident_interaction_ids}
    assert len(hit_queries) > 3
    # No record cites the generated per-intent documents of the shared intents.
    cited = {c["doc_id"] for r in shared.records for c in r["contexts"]}
    assert not cited & {kb.generic_doc(i) for i in SHARED}
    # Before onset the document is current; after the fix its next version is served.
    onset, fixed = truth.onset_at, truth.fixed_at
    for r in shared.records:
        for c in r["contexts"]:
            if c["doc_id"] != "kb-account-help":
                continue
            if ts(r["timestamp"]) < onset:
                assert not is_stale(c) and c["doc_version"] == truth.stale_doc[1]
            elif fixed and ts(r["timestamp"]) >= fixed:
                assert not is_stale(c) and c["doc_version"] != truth.stale_doc[1]
    assert all(parse_record(r) for r in shared.records[:200])


def test_two_patterns_have_their_own_intents_causes_and_truth(datasets):
    q = datasets["clinc150"]
    one = IncidentSpec(intents=("bill_balance",), onset_day=1.6, sessions=12)
    two = IncidentSpec(intents=("play_music",), onset_day=1.7, sessions=12)
    s = generate(q, replace(KIND_CONFIG, incident=one, incidents=(two,)))
    a, b = s.truth.patterns
    assert (a.intents, b.intents) == (("bill_balance",), ("play_music",))
    assert a.stale_doc[0] == "kb-bill-balance" and b.stale_doc[0] == "kb-play-music"
    assert len(a.session_ids) == len(b.session_ids) == 12
    assert not a.interaction_ids & b.interaction_ids
    assert s.truth.incident_interaction_ids == a.interaction_ids | b.interaction_ids
    assert s.truth.onset_at == a.onset_at < b.onset_at and a.fixed_at > b.onset_at  # they overlap
    records = {r["interaction_id"]: r for r in s.records}
    assert {records[i]["contexts"][0]["doc_id"] for i in b.stale_interaction_ids} == {"kb-play-music"}
    doc = s.truth.to_json()
    assert [p["intents"] for p in doc["patterns"]] == [["bill_balance"], ["play_music"]]
    json.dumps(doc)
    # One pattern: the truth file keeps its one-incident shape.
    alone = generate(q, replace(KIND_CONFIG, incident=one))
    assert len(alone.truth.patterns) == 1 and "patterns" not in alone.truth.to_json()


def test_a_second_pattern_picks_an_intent_of_its_own(datasets):
    s = generate(datasets["hwu64"], replace(KIND_CONFIG, incident=IncidentSpec.of("gradual", onset_day=1.6),
                                            incidents=(IncidentSpec.of("spike", onset_day=1.6),)))
    a, b = s.truth.patterns
    assert a.intents != b.intents and a.kind == "gradual" and b.kind == "spike"


@pytest.mark.parametrize(("config", "message"), [
    (replace(KIND_CONFIG, incident=IncidentSpec(intents=("weather",), onset_day=1.6),
             incidents=(IncidentSpec(intents=("weather",), onset_day=1.7),)), "same intent"),
    (replace(KIND_CONFIG, incident=IncidentSpec.of("gradual", intents=("weather",), document="kb-x")),
     "stale_document incidents only"),
    (replace(KIND_CONFIG, incident=IncidentSpec(intents=("weather",), document="pricing-table")),
     "new document id"),
    (replace(KIND_CONFIG, incident=IncidentSpec(intents=("weather",), document="kb-x", onset_day=1.6),
             incidents=(IncidentSpec(intents=("reminder",), document="kb-x", onset_day=1.6),)),
     "same document"),
])
def test_unusable_pattern_combinations_are_refused(datasets, config, message):
    with pytest.raises(ValueError, match=message):
        generate(datasets["clinc150"], config)
