"""services.body: a request body split into records without one record failing the others."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.errors import InvalidRecord
from pipelines.interaction import parse_record
from services.body import BatchBody, BodyError, TooManyRecords

BIG_INT = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000
GOOD = {"interaction_id": "a", "timestamp": "2026-11-02T10:00:00Z", "query": "fee?"}


def split(body: bytes, kind: str = "application/json", max_records: int = 100, chunk: int = 7) -> list:
    batch = BatchBody(kind, max_records)
    for k in range(0, len(body), chunk):
        batch.feed(body[k:k + chunk])
    return list(batch.records())


def reason(raw) -> str:
    with pytest.raises(InvalidRecord) as caught:
        parse_record(raw)
    return caught.value.reason


@pytest.mark.parametrize("element,words", [
    (f'{{"interaction_id": "big", "n": {BIG_INT}}}', "4300 digits"),
    (f'{{"interaction_id": "deep", "m": {DEEP}}}', "nested too deeply"),
    (DEEP, "nested too deeply"),
    ('{"interaction_id": "x", "q": }', "malformed JSON"),
    ('{"a": "quoted \\" ] } , inside", "b": tru}', "malformed JSON"),  # brackets inside strings skipped
])
def test_an_undecodable_element_is_handed_on_as_its_text(element, words):
    good = json.dumps(GOOD)
    body = f"[{good}, {element} ,{good}]".encode()
    records = split(body, chunk=4096)
    assert [index for index, _, _ in records] == [0, 1, 2]
    assert records[0][2] == records[2][2] == GOOD
    assert records[1][2] == element
    assert words in reason(records[1][2])


def test_ndjson_lines_with_the_same_records():
    lines = [json.dumps(GOOD), "", f'{{"n": {BIG_INT}}}', "   ", DEEP, json.dumps(GOOD) + "\r"]
    records = split("\n".join(lines).encode(), "application/x-ndjson", chunk=1000)
    assert [(index, line) for index, line, _ in records] == [(0, 1), (1, 3), (2, 5), (3, 6)]
    assert "4300 digits" in reason(records[1][2]) and "nested too deeply" in reason(records[2][2])
    assert parse_record(records[3][2]).interaction_id == "a"


@pytest.mark.parametrize("body,status,words", [
    (b"", 400, "empty"), (b'{"a": 1}', 400, "JSON object"), (b"[1, 2", 400, "expected ',' or ']'"),
    (b"[1,,2]", 400, "value is missing"), (b"[1,]", 400, "value is missing"), (b"[1] 2", 400, "extra data"),
    (b'[{"a": "open]', 400, "never closed"), (b"[[1, 2", 400, "never closed"), (b"[\xff]", 400, "not UTF-8"),
])
def test_a_body_that_is_no_array_is_refused_whole(body, status, words):
    with pytest.raises(BodyError) as caught:
        split(body)
    assert caught.value.status == status and words in str(caught.value)


def test_other_content_types_are_refused():
    with pytest.raises(BodyError) as caught:
        BatchBody("text/csv", 10)
    assert caught.value.status == 415


def test_the_record_bound_stops_ndjson_while_it_arrives():
    batch = BatchBody("application/x-ndjson", max_records=3)
    batch.feed(b"a\nb\n\n\nc\n")
    with pytest.raises(TooManyRecords, match="more than 3 records"):
        batch.feed(b"d\n")
    json_batch = BatchBody("application/json", max_records=3)
    json_batch.feed(b"[1, 2, 3, 4]")
    with pytest.raises(TooManyRecords) as caught:
        list(json_batch.records())
    assert caught.value.status == 413


def test_empty_array():
    assert split(b"  [ ]  ") == []


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_values, max_size=8), st.integers(1, 64), st.sampled_from(["", " ", "\n", " \t\r\n"]))
def test_fuzz_any_json_array_splits_into_its_elements(values, chunk, ws):
    body = ("[" + ws + ("," + ws).join(json.dumps(v) for v in values) + ws + "]").encode()
    assert [raw for _, _, raw in split(body, chunk=chunk)] == values


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 32), st.sampled_from(["application/json", "application/x-ndjson"]))
def test_fuzz_any_bytes_give_records_or_a_body_error_and_every_record_parses_or_is_refused(body, chunk, kind):
    try:
        records = split(body, kind, max_records=1000, chunk=chunk)
    except BodyError as exc:
        assert exc.status in (400, 413)
        return
    for _, _, raw in records:
        try:
            parse_record(raw)
        except InvalidRecord as exc:
            assert exc.reason
