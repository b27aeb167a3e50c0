from __future__ import annotations

import json

import pytest

from pipelines.errors import InvalidRecord
from pipelines.interaction import MAX_RECORD_BYTES, parse_record

OK = {"interaction_id": "a1", "timestamp": "2026-11-02T10:00:00Z", "query": "What is the fee?"}


def rec(**kw):
    r = dict(OK)
    for k, v in kw.items():
        if v is ...:
            r.pop(k)
        else:
            r[k] = v
    return r


@pytest.mark.parametrize("raw,field,reason", [
    (b'{"interaction_id": "a1", "timestamp": ', "<record>", "malformed JSON"),
    (b"\xff\xfe not utf8", "<record>", "not UTF-8"),
    (b"[1, 2]", "<record>", "expected a JSON object"),
    (rec(interaction_id=...), "interaction_id", "field required"),
    (rec(timestamp=...), "timestamp", "field required"),
    (rec(query=...), "query", "field required"),
    (rec(query=""), "query", "at least 1 character"),
    (rec(interaction_id=12), "interaction_id", "valid string"),
    (rec(timestamp="yesterday"), "timestamp", "datetime"),
    (rec(timestamp="2026-11-02T10:00:00"), "timestamp", "UTC offset"),
    (rec(confidence="0.9"), "confidence", "not a string"),
    (rec(confidence=True), "confidence", "not a boolean"),
    (rec(confidence=1.5), "confidence", "less than or equal to 1"),
    (rec(faithfulness=-0.1), "faithfulness", "greater than or equal to 0"),
    ('{"interaction_id": "a", "timestamp": "2026-11-02T10:00:00Z", "query": "q", "confidence": NaN}',
     "confidence", "finite"),
    ('{"interaction_id": "a", "timestamp": "2026-11-02T10:00:00Z", "query": "q", "faithfulness": Infinity}',
     "faithfulness", "finite"),
    (rec(query="x" * 16385), "query", "at most 16384"),
    (rec(response="x" * 65537), "response", "at most 65536"),
    (rec(contexts=[{"doc_id": "d"}]), "contexts.0.text", "field required"),
    (rec(contexts=[{"text": "t", "score": float("nan")}]), "contexts.0.score", "finite"),
    (rec(contexts=[{"text": "t"}] * 65), "contexts", "at most 64"),
    (rec(contexts=[{"text": "t", "indexed_at": "2026-01-01T00:00:00"}]), "contexts.0.indexed_at", "UTC offset"),
    (rec(metadata=[1]), "metadata", "dictionary"),
    (rec(metadata=[1], tenant="x"), "metadata", "object"),
    (rec(action={"name": "refund", "reversible": "perhaps"}), "action.reversible", "boolean"),
    # Issue #12: whitespace-only query; NaN/infinity or deep nesting in unknown fields; undecodable JSON.
    (rec(query=" \t\n "), "query", "only whitespace"),
    ('{"interaction_id": "a", "timestamp": "2026-11-02T10:00:00Z", "query": "q", "score": NaN}',
     "metadata.score", "finite"),
    ('{"interaction_id": "a", "timestamp": "2026-11-02T10:00:00Z", "query": "q", "x": {"y": [1, -Infinity]}}',
     "metadata.x.y.1", "finite"),
    (rec(metadata={"z": float("inf")}), "metadata.z", "finite"),
    (rec(metadata={"deep": json.loads("[" * 40 + "]" * 40)}), "metadata.deep" + ".0" * 31, "deeper than 32"),
    ('{"interaction_id": "a", "n": ' + "9" * 5000 + "}", "<record>", "4300 digits"),
    ("[" * 100_000 + "]" * 100_000, "<record>", "nested too deeply"),
])
def test_bad_records_name_the_field_and_the_reason(raw, field, reason):
    if isinstance(raw, dict):
        raw = json.dumps(raw, allow_nan=True)
    with pytest.raises(InvalidRecord) as e:
        parse_record(raw)
    assert e.value.field == field
    assert reason.lower() in e.value.reason.lower()


def test_invalid_record_keeps_its_id_for_the_dead_letter():
    with pytest.raises(InvalidRecord) as e:
        parse_record(rec(confidence=7))
    assert e.value.interaction_id == "a1"


def test_oversized_record_is_refused_before_parsing():
    raw = b'{"query": "' + b"x" * MAX_RECORD_BYTES + b'"}'
    with pytest.raises(InvalidRecord, match="limit"):
        parse_record(raw)


def test_unknown_fields_are_kept_in_metadata():
    i = parse_record(rec(tenant="acme", metadata={"plan": "pro"}))
    assert i.metadata == {"plan": "pro", "tenant": "acme"}


def test_full_record_round_trips():
    full = rec(session_id="s", customer_id="u", response="£1", confidence=0.84, faithfulness=None,
               contexts=[{"doc_id": "pricing-table", "doc_version": "v3", "text": "£1",
                          "indexed_at": "2026-10-01T00:00:00Z", "doc_updated_at": "2026-10-20T00:00:00+00:00"}],
               action={"name": "refund", "reversible": False}, model="m", intent_hint="fees")
    i = parse_record(full)
    assert i.contexts[0].stale and i.session_key == "s"
    assert parse_record(i.to_record()) == i


def test_session_key_falls_back_to_the_interaction():
    assert parse_record(OK).session_key == "interaction:a1"


def test_metadata_at_the_depth_limit_and_finite_numbers_are_kept():
    nested = json.loads("[" * 31 + "1.5" + "]" * 31)
    i = parse_record(rec(tenant="t", metadata={"deep": nested, "n": 10 ** 100}))
    assert i.metadata["deep"] == nested and i.metadata["n"] == 10 ** 100 and i.metadata["tenant"] == "t"
    assert parse_record(rec(query="  fee?  ")).query == "  fee?  "
