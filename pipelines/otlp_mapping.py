"""Trace spans to interactions: OpenTelemetry GenAI semantic conventions and OpenInference.

Pure: decoded spans in (:class:`Span`, attributes already plain Python values), interactions and
rejections out. ``services/otlp.py`` decodes OTLP requests and holds traces until their spans
have arrived; this module only knows what the attributes mean.

A span is read on its own by :func:`read_span`:

- an **LLM span** (GenAI ``gen_ai.operation.name`` = chat / text_completion / generate_content,
  or a span with the deprecated ``gen_ai.prompt`` / ``gen_ai.completion`` content; OpenInference
  ``openinference.span.kind`` = LLM) becomes an :class:`Answer`: the interaction without its
  contexts, already checked against the contract, or a :class:`Rejected` with the field and
  reason when it cannot be one (no user message, no end time, a bad value);
- a **retrieval span** (GenAI ``gen_ai.operation.name`` = retrieval with
  ``gen_ai.retrieval.documents``; OpenInference RETRIEVER with ``retrieval.documents.N.document.*``)
  becomes a :class:`Retrieval`: its documents as contexts;
- every other span: None (counted and ignored by the caller).

:func:`complete` then gives an answer the contexts of the retrieval spans of its trace that ended
no later than it did, in the order they ended (documents in the order the retriever gave them).

>>> span = Span(trace_id="0af7651916cd43dd8448eb211c80319c", span_id="b7ad6b7169203331",
...             name="chat gpt-4o", end_unix_nano=1_793_613_600_000_000_000,
...             attributes={"gen_ai.operation.name": "chat", "gen_ai.conversation.id": "conv-1",
...                         "gen_ai.request.model": "gpt-4o", "faithwatch.confidence": 0.9,
...                         "gen_ai.input.messages": '[{"role": "user", "parts": [{"type": "text", '
...                                                  '"content": "What is the fee?"}]}]',
...                         "gen_ai.output.messages": '[{"role": "assistant", "parts": [{"type": '
...                                                   '"text", "content": "2%."}]}]'})
>>> answer = read_span(span)
>>> i = complete(answer, [])
>>> i.interaction_id, i.session_id, i.query, i.response, i.model, i.confidence, i.timestamp.isoformat()
('0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331', 'conv-1', 'What is the fee?', '2%.', 'gpt-4o', 0.9, \
'2026-11-02T10:00:00+00:00')
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.errors import InvalidRecord
from pipelines.interaction import Interaction, parse_record

GENAI_LLM_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
GENAI_RETRIEVAL = "retrieval"
EVALUATION_EVENT = "gen_ai.evaluation.result"
# Evaluation names read as faithfulness (case-insensitive), in both conventions.
FAITHFULNESS_NAMES = frozenset({"faithfulness", "groundedness"})
# faithwatch's own span attributes (documented in docs/ingest.md).
CONFIDENCE = "faithwatch.confidence"
FAITHFULNESS = "faithwatch.faithfulness"
INTENT_HINT = "faithwatch.intent_hint"
CUSTOMER_ID = "faithwatch.customer_id"
ACTION_NAME = "faithwatch.action.name"
ACTION_REVERSIBLE = "faithwatch.action.reversible"
# The contract's limits: longer texts are cut (and said so in metadata), more contexts dropped.
MAX_QUERY, MAX_RESPONSE, MAX_CONTEXT_TEXT, MAX_CONTEXTS = 16384, 65536, 32768, 64
_INDEXED = re.compile(r"^(\d+)\.(.+)$")


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_unix_nano: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    """One span as OTLP carries it; ids in lowercase hex, attribute values as plain Python values
    (AnyValue arrays as lists, key-value lists as dicts)."""

    trace_id: str
    span_id: str
    name: str = ""
    start_unix_nano: int = 0
    end_unix_nano: int = 0
    attributes: Mapping[str, Any] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    resource: Mapping[str, Any] = field(default_factory=dict)
    parent_span_id: str | None = None

    @property
    def interaction_id(self) -> str:
        return f"{self.trace_id}-{self.span_id}"


@dataclass(frozen=True)
class Answer:
    """An LLM span read on its own: the interaction's record without contexts (valid)."""

    trace_id: str
    span_id: str
    end_unix_nano: int
    record: Mapping[str, Any]
    convention: str


@dataclass(frozen=True)
class Retrieval:
    """A retrieval span: its documents as contexts (contract dicts), best first."""

    trace_id: str
    span_id: str
    end_unix_nano: int
    contexts: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Rejected:
    """An LLM span that cannot be an interaction, and why."""

    trace_id: str
    span_id: str
    field: str
    reason: str
    raw: Mapping[str, Any]

    @property
    def interaction_id(self) -> str:
        return f"{self.trace_id}-{self.span_id}"


def convention_of(span: Span) -> tuple[str, str] | None:
    """``(convention, role)``: ("genai" | "openinference", "llm" | "retrieval"), or None."""
    a = span.attributes
    kind = a.get("openinference.span.kind")
    if isinstance(kind, str):
        if kind.upper() == "LLM":
            return "openinference", "llm"
        if kind.upper() == "RETRIEVER":
            return "openinference", "retrieval"
    op = a.get("gen_ai.operation.name")
    if op in GENAI_LLM_OPERATIONS:
        return "genai", "llm"
    if op == GENAI_RETRIEVAL:
        return "genai", "retrieval"
    if op is None and (_has_prefix(a, "gen_ai.prompt") or _has_prefix(a, "gen_ai.completion")
                       or any(e.name == "gen_ai.content.prompt" for e in span.events)):
        return "genai", "llm"  # the deprecated content attributes, before gen_ai.operation.name
    return None


def read_span(span: Span) -> Answer | Retrieval | Rejected | None:
    """What ``span`` is for faithwatch (see the module docstring)."""
    found = convention_of(span)
    if found is None:
        return None
    convention, role = found
    if role == "retrieval":
        docs = _genai_documents(span) if convention == "genai" else _indexed(span.attributes, "retrieval.documents")
        return Retrieval(span.trace_id, span.span_id, span.end_unix_nano,
                         tuple(c for c in (_context(d) for d in docs) if c is not None))
    try:
        record = _genai_record(span) if convention == "genai" else _openinference_record(span)
        parse_record(dict(record))
    except InvalidRecord as exc:
        return Rejected(span.trace_id, span.span_id, exc.field, exc.reason, raw_of(span))
    return Answer(span.trace_id, span.span_id, span.end_unix_nano, record, convention)


def complete(answer: Answer, retrievals: Iterable[Retrieval]) -> Interaction | Rejected:
    """The interaction of ``answer`` with the contexts of its trace's retrievals that ended no
    later than it did. Documents without content are kept (text "") only when the answer carries a
    faithfulness score: the service would otherwise score the answer against empty passages."""
    contexts: list[Mapping[str, Any]] = []
    for r in sorted((r for r in retrievals if r.trace_id == answer.trace_id
                     and r.end_unix_nano <= answer.end_unix_nano), key=lambda r: (r.end_unix_nano, r.span_id)):
        contexts.extend(c for c in r.contexts if c.get("text") or answer.record.get("faithfulness") is not None)
    record = dict(answer.record)
    if contexts:
        record["contexts"] = [dict(c, text=c.get("text") or "") for c in contexts[:MAX_CONTEXTS]]
        if len(contexts) > MAX_CONTEXTS:
            _note(record, f"{len(contexts) - MAX_CONTEXTS} contexts beyond {MAX_CONTEXTS} dropped")
    try:
        return parse_record(record)
    except InvalidRecord as exc:
        return Rejected(answer.trace_id, answer.span_id, exc.field, exc.reason, record)


def raw_of(span: Span) -> dict[str, Any]:
    """``span`` as a JSON-safe dict (what a dead letter keeps)."""
    return {"trace_id": span.trace_id, "span_id": span.span_id, "parent_span_id": span.parent_span_id,
            "name": span.name, "start_unix_nano": span.start_unix_nano, "end_unix_nano": span.end_unix_nano,
            "attributes": dict(span.attributes),
            "events": [{"name": e.name, "time_unix_nano": e.time_unix_nano, "attributes": dict(e.attributes)}
                       for e in span.events],
            "resource": dict(span.resource)}


# ---- the record both conventions fill --------------------------------------------------------

def _base(span: Span, convention: str) -> dict[str, Any]:
    a = span.attributes
    if span.end_unix_nano <= 0:
        raise InvalidRecord("end_time_unix_nano", "the span has no end time (the answer's timestamp)",
                            span.interaction_id)
    record: dict[str, Any] = {
        "interaction_id": span.interaction_id,
        "timestamp": datetime.fromtimestamp(span.end_unix_nano // 1_000_000_000, UTC).replace(
            microsecond=span.end_unix_nano % 1_000_000_000 // 1000).isoformat(),
        "customer_id": _text(a.get(CUSTOMER_ID)) or _text(a.get("user.id")),
        "confidence": a.get(CONFIDENCE),
        "faithfulness": a.get(FAITHFULNESS),
        "intent_hint": _text(a.get(INTENT_HINT)),
        "metadata": {"otlp": {"convention": convention, "trace_id": span.trace_id, "span_id": span.span_id,
                              "span_name": span.name,
                              **({"service": span.resource["service.name"]} if "service.name" in span.resource
                                 else {})}},
    }
    if a.get(ACTION_NAME) is not None:
        record["action"] = {"name": _text(a.get(ACTION_NAME)), "reversible": a.get(ACTION_REVERSIBLE)}
    return record


def _finish(record: dict[str, Any], span: Span, query: str | None, response: str | None, where: str) -> dict:
    if not query:
        raise InvalidRecord("query", f"no user message text in {where} (is content capture switched on in the "
                                     f"instrumentation?)", span.interaction_id)
    record["query"] = _cut(record, "query", query, MAX_QUERY)
    record["response"] = None if response is None else _cut(record, "response", response, MAX_RESPONSE)
    return {k: v for k, v in record.items() if v is not None}


def _genai_record(span: Span) -> dict[str, Any]:
    a = span.attributes
    record = _base(span, "genai")
    record["session_id"] = _text(a.get("gen_ai.conversation.id"))
    record["model"] = _text(a.get("gen_ai.response.model")) or _text(a.get("gen_ai.request.model"))
    score = _evaluation(span.events, "gen_ai.evaluation.name", "gen_ai.evaluation.score.value")
    if record.get("faithfulness") is None and score is not None:
        record["faithfulness"] = score
    inputs = _structured(a.get("gen_ai.input.messages"))
    outputs = _structured(a.get("gen_ai.output.messages"))
    if inputs is not None:
        query, where = _last_user(inputs), "gen_ai.input.messages"
    else:  # the deprecated forms: gen_ai.prompt as an attribute, indexed, or on a gen_ai.content.prompt event
        prompt = _deprecated(span, "gen_ai.prompt", "gen_ai.content.prompt")
        query, where = _last_user(prompt) if isinstance(prompt, list) else _text(prompt), "gen_ai.prompt"
    if outputs is not None:
        response = _first_answer(outputs)
    else:
        completion = _deprecated(span, "gen_ai.completion", "gen_ai.content.completion")
        response = _first_answer(completion) if isinstance(completion, list) else _text(completion)
    return _finish(record, span, query, response, where)


def _openinference_record(span: Span) -> dict[str, Any]:
    a = span.attributes
    record = _base(span, "openinference")
    record["session_id"] = _text(a.get("session.id"))
    record["model"] = (_text(a.get("llm.model_name")) or _text(a.get("llm.response.model_name"))
                       or _text(a.get("llm.request.model_name")))
    if record.get("faithfulness") is None:
        evaluations = [*_indexed(a, "evaluations"), *_indexed(a, "annotations")]
        record["faithfulness"] = _evaluation(
            [SpanEvent("", 0, {k.split(".", 1)[-1]: v for k, v in e.items()}) for e in evaluations], "name", "score",
            event_name=None)
    messages = [_oi_message(m) for m in _indexed(a, "llm.input_messages")]
    if messages:
        query, where = _last_user(messages), "llm.input_messages"
    elif prompts := _indexed(a, "llm.prompts"):
        query, where = _text(prompts[-1].get("prompt.text")), "llm.prompts"
    else:
        query, where = _from_value(a.get("input.value"), a.get("input.mime_type"), user=True), "input.value"
    outputs = [_oi_message(m) for m in _indexed(a, "llm.output_messages")]
    if outputs:
        response = _first_answer(outputs)
    elif choices := _indexed(a, "llm.choices"):
        response = _text(choices[0].get("completion.text"))
    else:
        response = _from_value(a.get("output.value"), a.get("output.mime_type"), user=False)
    return _finish(record, span, query, response, where)


# ---- messages --------------------------------------------------------------------------------

def _oi_message(m: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenInference flattened message (message.role, message.content or message.contents.N.*)."""
    content = m.get("message.content")
    if content is None:
        parts = _indexed(m, "message.contents")
        content = [{"type": p.get("message_content.type"), "text": p.get("message_content.text")} for p in parts]
    return {"role": m.get("message.role"), "content": content}


def _message_text(message: Any) -> str | None:
    """The text of one message in any of the shapes the conventions use: GenAI ``parts``
    (``{"type": "text", "content": ...}``), ``content`` as a string or a list of text parts."""
    if isinstance(message, str):
        return message
    if not isinstance(message, Mapping):
        return None
    pieces = message.get("parts")
    if pieces is None:
        pieces = message.get("content")
    if isinstance(pieces, str):
        return pieces
    texts = []
    for part in pieces if isinstance(pieces, list) else ():
        if isinstance(part, str):
            texts.append(part)
        elif isinstance(part, Mapping) and part.get("type") in (None, "text", "input_text", "output_text"):
            text = part.get("content") if isinstance(part.get("content"), str) else part.get("text")
            if isinstance(text, str):
                texts.append(text)
    return "\n".join(texts) or None


def _last_user(messages: Any) -> str | None:
    if isinstance(messages, Mapping):
        messages = [messages]
    if not isinstance(messages, list):
        return _text(messages)
    for message in reversed(messages):
        if isinstance(message, Mapping) and str(message.get("role", "")).lower() in ("user", "human"):
            return _message_text(message)
    return None


def _first_answer(messages: Any) -> str | None:
    """The first choice's text (assistant messages; a list of several is several choices)."""
    if isinstance(messages, Mapping):
        messages = [messages]
    if not isinstance(messages, list):
        return _text(messages)
    for message in messages:
        if not isinstance(message, Mapping) or str(message.get("role", "assistant")).lower() in (
                "assistant", "model", "ai"):
            text = _message_text(message)
            if text is not None:
                return text
    return None


def _from_value(value: Any, mime: Any, user: bool) -> str | None:
    """OpenInference ``input.value`` / ``output.value``: plain text, or JSON holding messages."""
    if not isinstance(value, str):
        return _text(value)
    data = _structured(value) if mime == "application/json" or value.lstrip()[:1] in ("{", "[") else None
    if data is None or isinstance(data, str):
        return value
    if isinstance(data, Mapping):
        if isinstance(data.get("messages"), list):
            return _last_user(data["messages"]) if user else _first_answer(data["messages"])
        if isinstance(data.get("choices"), list) and data["choices"]:
            choice = data["choices"][0]
            if isinstance(choice, Mapping):
                return _message_text(choice.get("message")) or _text(choice.get("text"))
        for key in ("query", "question", "input", "prompt") if user else ("answer", "output", "content", "text"):
            if isinstance(data.get(key), str):
                return data[key]
    if isinstance(data, list):
        return _last_user(data) if user else _first_answer(data)
    return value


def _deprecated(span: Span, name: str, event: str) -> Any:
    """``gen_ai.prompt`` / ``gen_ai.completion``: a JSON (or Python-literal) list of messages, a
    plain string, indexed attributes (``gen_ai.prompt.0.role`` / ``.content``) or the attribute on a
    ``gen_ai.content.prompt`` / ``gen_ai.content.completion`` event."""
    a = span.attributes
    if name in a:
        return _structured(a[name])
    indexed = _indexed(a, name)
    if indexed:
        return indexed
    for e in span.events:
        if e.name == event and name in e.attributes:
            return _structured(e.attributes[name])
    return None


# ---- documents -------------------------------------------------------------------------------

def _genai_documents(span: Span) -> list[Mapping[str, Any]]:
    docs = _structured(span.attributes.get("gen_ai.retrieval.documents"))
    return [d for d in docs if isinstance(d, Mapping)] if isinstance(docs, list) else []


def _context(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """A retrieved document as a contract context. OpenInference keys are ``document.*``; GenAI
    documents are objects (``id``, ``score``, and any more: ``content``/``text``, ``metadata``).
    Version and times come from the document or its metadata: ``version`` (or ``doc_version``),
    ``indexed_at``, ``updated_at`` (or ``doc_updated_at``); a time without a UTC offset is ignored."""
    doc = {k.removeprefix("document."): v for k, v in doc.items()}
    meta = _structured(doc.get("metadata"))
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    info = {**meta, **{k: v for k, v in doc.items() if k != "metadata"}}
    text = info.get("content") if isinstance(info.get("content"), str) else info.get("text")
    doc_id = info.get("id", info.get("doc_id"))
    if doc_id is None and not isinstance(text, str):
        return None
    context = {"doc_id": None if doc_id is None else str(doc_id)[:256],
               "doc_version": _text(info.get("version", info.get("doc_version"))),
               "indexed_at": _instant(info.get("indexed_at")),
               "doc_updated_at": _instant(info.get("updated_at", info.get("doc_updated_at"))),
               "score": _finite(info.get("score")),
               "text": text[:MAX_CONTEXT_TEXT] if isinstance(text, str) else ""}
    if context["doc_version"] is not None:
        context["doc_version"] = context["doc_version"][:128]
    return {k: v for k, v in context.items() if v is not None}


# ---- small readers ---------------------------------------------------------------------------

def _evaluation(events: Sequence[SpanEvent], name_key: str, score_key: str,
                event_name: str | None = EVALUATION_EVENT) -> float | None:
    """The last faithfulness/groundedness score in [0, 1] among ``events`` (others are ignored)."""
    found = None
    for e in events:
        if event_name is not None and e.name != event_name:
            continue
        name = e.attributes.get(name_key)
        score = _finite(e.attributes.get(score_key))
        if isinstance(name, str) and name.strip().lower() in FAITHFULNESS_NAMES and score is not None \
                and 0.0 <= score <= 1.0:
            found = score
    return found


def _indexed(attributes: Mapping[str, Any], prefix: str) -> list[dict[str, Any]]:
    """A list flattened into attributes (``prefix.0.key``, ``prefix.1.key``...) as dicts, in index
    order; a list value under ``prefix`` itself (AnyValue array of key-value lists) also works."""
    direct = attributes.get(prefix)
    if isinstance(direct, list):
        return [dict(d) for d in direct if isinstance(d, Mapping)]
    items: dict[int, dict[str, Any]] = {}
    start = prefix + "."
    for key, value in attributes.items():
        if key.startswith(start) and (m := _INDEXED.match(key[len(start):])):
            items.setdefault(int(m.group(1)), {})[m.group(2)] = value
    return [items[k] for k in sorted(items)]


def _has_prefix(attributes: Mapping[str, Any], name: str) -> bool:
    return name in attributes or any(k.startswith(name + ".") and _INDEXED.match(k[len(name) + 1:])
                                     for k in attributes)


def _structured(value: Any) -> Any:
    """An attribute that carries structure: already a list/dict, a JSON string, or a Python
    literal (the conventions' own examples use single quotes); other strings stay strings."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text[:1] not in ("[", "{"):
        return value
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float):
        return str(value)
    return None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def _instant(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.isoformat() if parsed.tzinfo is not None else None


def _cut(record: dict[str, Any], name: str, text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    _note(record, f"{name} cut from {len(text)} to {limit} characters")
    return text[:limit]


def _note(record: dict[str, Any], note: str) -> None:
    record.setdefault("metadata", {}).setdefault("otlp", {}).setdefault("notes", []).append(note)
