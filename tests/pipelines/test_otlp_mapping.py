"""Span -> interaction mapping (pure): each convention's variants, contexts, rejections; the trace hold."""

from __future__ import annotations

import json

import pytest

from pipelines.otlp_mapping import MAX_QUERY, Answer, Rejected, Retrieval, Span, SpanEvent, complete, read_span
from pipelines.trace_hold import TraceHold

TRACE, END = "0af7651916cd43dd8448eb211c80319c", 1_793_613_600_000_000_000


def span(attributes: dict, span_id: str = "b7ad6b7169203331", end: int = END, events=()) -> Span:
    return Span(trace_id=TRACE, span_id=span_id, name="s", end_unix_nano=end, attributes=attributes,
                events=tuple(events))


def mapped(attributes: dict, events=(), retrievals=()):
    answer = read_span(span(attributes, events=events))
    assert isinstance(answer, Answer), answer
    out = complete(answer, retrievals)
    assert not isinstance(out, Rejected), out
    return out


USER_PARTS = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "fee?"}]}])
OUT_PARTS = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "2%"}]}])


@pytest.mark.parametrize("attributes", [
    # GenAI, current: structured messages as JSON strings, or as AnyValue structures
    {"gen_ai.operation.name": "chat", "gen_ai.input.messages": USER_PARTS, "gen_ai.output.messages": OUT_PARTS},
    {"gen_ai.operation.name": "generate_content", "gen_ai.input.messages": json.loads(USER_PARTS),
     "gen_ai.output.messages": json.loads(OUT_PARTS)},
    {"gen_ai.operation.name": "text_completion", "gen_ai.input.messages": USER_PARTS,
     "gen_ai.output.messages": OUT_PARTS},
    # GenAI, deprecated: gen_ai.prompt / gen_ai.completion as JSON, Python literal, plain text, indexed
    {"gen_ai.operation.name": "chat", "gen_ai.prompt": '[{"role": "user", "content": "fee?"}]',
     "gen_ai.completion": '[{"role": "assistant", "content": "2%"}]'},
    {"gen_ai.prompt": "[{'role': 'user', 'content': 'fee?'}]", "gen_ai.completion": "[{'role': 'assistant', "
                                                                                     "'content': '2%'}]"},
    {"gen_ai.system": "openai", "gen_ai.prompt": "fee?", "gen_ai.completion": "2%"},
    {"gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "be kind", "gen_ai.prompt.1.role": "user",
     "gen_ai.prompt.1.content": "fee?", "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "2%"},
    # OpenInference: flattened messages, message contents, input/output values, completions API
    {"openinference.span.kind": "LLM", "llm.input_messages.0.message.role": "user",
     "llm.input_messages.0.message.content": "fee?", "llm.output_messages.0.message.role": "assistant",
     "llm.output_messages.0.message.content": "2%"},
    {"openinference.span.kind": "LLM", "llm.input_messages.0.message.role": "user",
     "llm.input_messages.0.message.contents.0.message_content.type": "text",
     "llm.input_messages.0.message.contents.0.message_content.text": "fee?",
     "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "2%"},
    {"openinference.span.kind": "LLM", "input.value": "fee?", "input.mime_type": "text/plain", "output.value": "2%"},
    {"openinference.span.kind": "LLM", "input.mime_type": "application/json", "output.mime_type": "application/json",
     "input.value": json.dumps({"messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "fee?"}],
                                "model": "m"}),
     "output.value": json.dumps({"choices": [{"message": {"role": "assistant", "content": "2%"}}]})},
    {"openinference.span.kind": "LLM", "llm.prompts.0.prompt.text": "fee?", "llm.choices.0.completion.text": "2%"},
], ids=lambda a: next(iter(a)) + "/" + str(len(a)))
def test_both_conventions_and_their_forms_give_query_and_answer(attributes):
    out = mapped(attributes)
    assert (out.query, out.response, out.interaction_id) == ("fee?", "2%", f"{TRACE}-b7ad6b7169203331")
    assert out.timestamp.isoformat() == "2026-11-02T10:00:00+00:00"


def test_the_deprecated_prompt_event_carries_the_content():
    events = [SpanEvent("gen_ai.content.prompt", 0, {"gen_ai.prompt": '[{"role": "user", "content": "fee?"}]'}),
              SpanEvent("gen_ai.content.completion", 0, {"gen_ai.completion": "2%"})]
    out = mapped({"gen_ai.system": "openai"}, events=events)
    assert (out.query, out.response) == ("fee?", "2%")


@pytest.mark.parametrize(("attributes", "events", "faithfulness"), [
    ({"gen_ai.operation.name": "chat"}, [SpanEvent("gen_ai.evaluation.result", 0, {
        "gen_ai.evaluation.name": "faithfulness", "gen_ai.evaluation.score.value": 0.4})], 0.4),
    ({"gen_ai.operation.name": "chat"}, [SpanEvent("gen_ai.evaluation.result", 0, {
        "gen_ai.evaluation.name": "Faithfulness", "gen_ai.evaluation.score.value": 4.0})], None),  # not in [0, 1]
    ({"gen_ai.operation.name": "chat"}, [SpanEvent("gen_ai.evaluation.result", 0, {
        "gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 0.4})], None),
    ({"gen_ai.operation.name": "chat", "faithwatch.faithfulness": 0.7}, [], 0.7),
    ({"openinference.span.kind": "LLM", "evaluations.0.evaluation.name": "groundedness",
      "evaluations.0.evaluation.score": 0.3}, [], 0.3),
    ({"openinference.span.kind": "LLM", "annotations.0.annotation.name": "faithfulness",
      "annotations.0.annotation.score": 0.8}, [], 0.8),
])
def test_faithfulness_from_evaluations(attributes, events, faithfulness):
    text = {"gen_ai.input.messages": USER_PARTS} if "gen_ai.operation.name" in attributes else {"input.value": "q"}
    assert mapped({**attributes, **text}, events=events).faithfulness == faithfulness


def retrieval(docs, end: int, span_id: str = "1111111111111111", convention: str = "openinference") -> Retrieval:
    if convention == "genai":
        attributes = {"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": docs}
    else:
        attributes = {"openinference.span.kind": "RETRIEVER"}
        for n, doc in enumerate(docs):
            attributes.update({f"retrieval.documents.{n}.document.{k}": v for k, v in doc.items()})
    out = read_span(span(attributes, span_id=span_id, end=end))
    assert isinstance(out, Retrieval)
    return out


def test_contexts_come_from_retrievals_that_ended_before_the_answer_in_order():
    first = retrieval([{"id": "a", "content": "A", "metadata": "{'version': 'v1', 'indexed_at': "
                                                                  "'2026-10-01T00:00:00+00:00', 'updated_at': "
                                                                  "'2026-10-02T00:00:00Z'}"}], END - 20)
    second = retrieval([{"id": "b", "content": "B", "version": "v2", "indexed_at": "2026-10-01T00:00:00"}],
                       END - 10, "2222222222222222", convention="genai")
    after = retrieval([{"id": "late", "content": "L"}], END + 1, "3333333333333333")
    no_text = retrieval([{"id": "no-text", "score": 0.2}], END - 5, "4444444444444444", convention="genai")
    out = mapped({"openinference.span.kind": "LLM", "input.value": "q"}, retrievals=[after, no_text, second, first])
    assert [(c.doc_id, c.doc_version, c.text, c.stale) for c in out.contexts] == [
        ("a", "v1", "A", True), ("b", "v2", "B", False)]
    assert out.contexts[1].indexed_at is None  # no UTC offset: ignored
    with_score = mapped({"openinference.span.kind": "LLM", "input.value": "q", "faithwatch.faithfulness": 0.5},
                        retrievals=[no_text])
    assert [(c.doc_id, c.text) for c in with_score.contexts] == [("no-text", "")]


@pytest.mark.parametrize(("attributes", "end", "field"), [
    ({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}, END, "query"),
    ({"gen_ai.operation.name": "chat", "gen_ai.input.messages": json.dumps([{"role": "system", "parts": []}])},
     END, "query"),
    ({"openinference.span.kind": "LLM", "llm.model_name": "m"}, END, "query"),
    ({"openinference.span.kind": "LLM", "input.value": "q"}, 0, "end_time_unix_nano"),
    ({"openinference.span.kind": "LLM", "input.value": "q", "faithwatch.confidence": "high"}, END, "confidence"),
    ({"openinference.span.kind": "LLM", "input.value": "q", "session.id": "s" * 200}, END, "session_id"),
])
def test_an_llm_span_that_cannot_be_an_interaction_is_rejected_with_its_reason(attributes, end, field):
    out = read_span(span(attributes, end=end))
    assert isinstance(out, Rejected) and out.field == field and out.reason
    assert out.raw["attributes"] == attributes


@pytest.mark.parametrize("attributes", [{}, {"http.route": "/x"}, {"openinference.span.kind": "CHAIN"},
                                        {"gen_ai.operation.name": "embeddings"},
                                        {"gen_ai.operation.name": "execute_tool"}])
def test_other_spans_are_ignored(attributes):
    assert read_span(span(attributes)) is None


def test_overlong_texts_are_cut_and_said_so():
    out = mapped({"openinference.span.kind": "LLM", "input.value": "q" * (MAX_QUERY + 5)})
    assert len(out.query) == MAX_QUERY
    assert out.metadata["otlp"]["notes"] == [f"query cut from {MAX_QUERY + 5} to {MAX_QUERY} characters"]


def test_the_hold_releases_by_age_and_by_room_and_keeps_arrival_order():
    hold = TraceHold(hold_seconds=10, max_traces=3)
    for n, t in enumerate(["a", "b", "a", "c"]):
        assert hold.add(t, n, now=float(n)) == []
    assert hold.due(now=9.9) == []
    assert [(t.trace_id, t.items) for t in hold.due(now=10.0)] == [("a", [0, 2])]
    assert [t.trace_id for t in hold.add("d", 4, now=11.0) + hold.add("e", 5, now=12.0)] == ["b"]
    assert hold.released_early == 1 and len(hold) == 3
    assert [t.trace_id for t in hold.drain()] == ["c", "d", "e"] and len(hold) == 0
    with pytest.raises(ValueError):
        TraceHold(hold_seconds=-1, max_traces=1)
