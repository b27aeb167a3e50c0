"""The input contract (``contract/interaction.schema.json``) as pydantic models.

``parse_record`` turns one raw record (bytes, str or dict) into an :class:`Interaction` or raises
:class:`~pipelines.errors.InvalidRecord` naming the field and the reason. Unknown top-level fields
are kept in ``metadata``, never rejected.

>>> i = parse_record('{"interaction_id": "a1", "timestamp": "2026-11-02T10:00:00Z", "query": "fee?"}')
>>> i.interaction_id, i.timestamp.isoformat()
('a1', '2026-11-02T10:00:00+00:00')
>>> parse_record('{"interaction_id": "a1", "query": "fee?"}')
Traceback (most recent call last):
...
pipelines.errors.InvalidRecord: timestamp: field required
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pipelines.errors import InvalidRecord

# A record larger than this is refused before it is parsed: the schema's per-field limits
# add up to about 2.3 MB (64 contexts of 32 KiB plus the rest), so 4 MiB leaves headroom.
MAX_RECORD_BYTES = 4 * 1024 * 1024
# Objects and arrays inside unknown fields (metadata) nest at most this deep.
MAX_METADATA_DEPTH = 32


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must carry a UTC offset (RFC 3339), e.g. 2026-11-02T10:00:00Z")
    return value


def _number(value: Any) -> Any:
    """Refuse what JSON Schema's ``number`` refuses (strings, booleans) and NaN/infinity."""
    if isinstance(value, bool | str):
        raise ValueError(f"must be a number, not a {'boolean' if isinstance(value, bool) else 'string'}")
    if isinstance(value, float | int):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("must be a finite number, not NaN or infinity")
    return value


class Context(BaseModel):
    """One retrieved passage the answer was grounded on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    doc_id: str | None = Field(None, max_length=256)
    doc_version: str | None = Field(None, max_length=128)
    doc_updated_at: datetime | None = None
    indexed_at: datetime | None = None
    score: float | None = None
    text: str = Field(..., max_length=32768)

    @field_validator("doc_updated_at", "indexed_at")
    @classmethod
    def _tz(cls, v, info):
        return _aware(v, info.field_name)

    @field_validator("score", mode="before")
    @classmethod
    def _score_number(cls, v):
        return _number(v)

    @property
    def stale(self) -> bool:
        """The source changed upstream after this passage was indexed."""
        return (
            self.doc_updated_at is not None
            and self.indexed_at is not None
            and self.doc_updated_at > self.indexed_at
        )


class Action(BaseModel):
    """An action the model took rather than only answering."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str | None = Field(None, max_length=128)
    reversible: bool | None = None


class Interaction(BaseModel):
    """One model interaction as producers send it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interaction_id: str = Field(..., min_length=1, max_length=128)
    session_id: str | None = Field(None, max_length=128)
    customer_id: str | None = Field(None, max_length=128)
    timestamp: datetime
    query: str = Field(..., min_length=1, max_length=16384)
    response: str | None = Field(None, max_length=65536)
    contexts: tuple[Context, ...] = Field(default=(), max_length=64)
    confidence: float | None = Field(None, ge=0, le=1)
    faithfulness: float | None = Field(None, ge=0, le=1)
    intent_hint: str | None = Field(None, max_length=128)
    action: Action | None = None
    model: str | None = Field(None, max_length=128)
    metadata: dict[str, Any] | None = None

    @field_validator("timestamp")
    @classmethod
    def _ts(cls, v):
        return _aware(v, "timestamp")

    @field_validator("query")
    @classmethod
    def _query_text(cls, v):
        if not v.strip():
            raise ValueError("must hold some text, not only whitespace")
        return v

    @field_validator("confidence", "faithfulness", mode="before")
    @classmethod
    def _scores_number(cls, v):
        return _number(v)

    @property
    def session_key(self) -> str:
        """The unit of blast radius: the session, or the interaction when no session is given."""
        return self.session_id or f"interaction:{self.interaction_id}"

    def to_record(self) -> dict[str, Any]:
        """The JSON-safe record this interaction was parsed from (unknown fields in metadata)."""
        return self.model_dump(mode="json", exclude_none=True)


_KNOWN = set(Interaction.model_fields)


def _field_of(error: dict) -> str:
    loc = [str(p) for p in error.get("loc", ())]
    return ".".join(loc) if loc else "<record>"


def _reason_of(error: dict) -> str:
    if error.get("type") == "missing":
        return "field required"
    msg = error.get("msg", "invalid")
    return msg.removeprefix("Value error, ")


def _check_metadata(metadata: dict[str, Any], iid: str | None) -> None:
    """Unknown fields are kept as they came, so they must stay plain JSON: no NaN or infinity
    (stored as non-standard JSON otherwise) and no nesting deeper than :data:`MAX_METADATA_DEPTH`
    (deep values fail to encode downstream, and would fail the batch they are in)."""
    stack: list[tuple[str, Any, int]] = [("metadata", metadata, 1)]
    while stack:
        where, value, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidRecord(where, "must be a finite number, not NaN or infinity", iid)
        if isinstance(value, dict | list):
            if depth > MAX_METADATA_DEPTH:
                raise InvalidRecord(where, f"nested deeper than {MAX_METADATA_DEPTH} levels", iid)
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack += [(f"{where}.{key}", item, depth + 1) for key, item in items]


def parse_record(raw: bytes | str | dict[str, Any]) -> Interaction:
    """Validate one record against the contract; raise :class:`InvalidRecord` on any breach."""
    if isinstance(raw, bytes | bytearray):
        if len(raw) > MAX_RECORD_BYTES:
            raise InvalidRecord("<record>", f"record is {len(raw)} bytes, limit {MAX_RECORD_BYTES}")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRecord("<record>", f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    if isinstance(raw, str):
        if len(raw) > MAX_RECORD_BYTES:
            raise InvalidRecord("<record>", f"record is {len(raw)} chars, limit {MAX_RECORD_BYTES}")
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidRecord("<record>", f"malformed JSON: {exc.msg} at char {exc.pos}") from None
        except RecursionError:
            raise InvalidRecord("<record>", "JSON nested too deeply to decode") from None
        except ValueError as exc:  # e.g. an integer of more than 4,300 digits
            raise InvalidRecord("<record>", f"JSON value cannot be decoded: {str(exc).split(';')[0]}") from None
    if not isinstance(raw, dict):
        raise InvalidRecord("<record>", f"expected a JSON object, got {type(raw).__name__}")
    iid = raw.get("interaction_id") if isinstance(raw.get("interaction_id"), str) else None
    extra = {k: v for k, v in raw.items() if k not in _KNOWN}
    data = {k: v for k, v in raw.items() if k in _KNOWN}
    if extra:
        meta = data.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise InvalidRecord("metadata", "must be an object or null", iid)
        data["metadata"] = {**(meta or {}), **extra}
    if isinstance(data.get("metadata"), dict):
        _check_metadata(data["metadata"], iid)
    try:
        return Interaction.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise InvalidRecord(_field_of(err), _reason_of(err), iid) from None


class DeadLetter(BaseModel):
    """A record that broke the contract, kept with the reason so nothing is silently lost."""

    model_config = ConfigDict(frozen=True)

    received_at: datetime
    source: str
    position: str
    interaction_id: str | None
    field: str
    reason: str
    raw: str

    @classmethod
    def of(cls, error: InvalidRecord, raw: Any, *, received_at: datetime, source: str,
           position: str) -> DeadLetter:
        if isinstance(raw, bytes | bytearray):
            text = raw.decode("utf-8", errors="replace")
        elif isinstance(raw, str):
            text = raw
        else:
            text = json.dumps(raw, default=str)
        return cls(received_at=received_at, source=source, position=position,
                   interaction_id=error.interaction_id, field=error.field, reason=error.reason,
                   raw=text[:MAX_RECORD_BYTES])
