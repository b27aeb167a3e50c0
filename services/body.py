"""A request body as records, one at a time: NDJSON lines or the elements of a JSON array.

:class:`BatchBody` is fed the body chunk by chunk as it arrives and yields ``(index, line, raw)``
per record, where ``raw`` is what :func:`~pipelines.interaction.parse_record` takes. What one
record holds never fails the others: an element Python's ``json`` cannot decode (an integer of
5,000 digits, nesting 100,000 deep, a syntax error inside it) is handed on as its text, and
``parse_record`` turns it into a dead letter with the reason. Only a body that is not a batch at
all (no array, an unterminated string or bracket, a missing comma) is refused whole.

The count of records is bounded (``max_records``): NDJSON is counted while it arrives, so a body
of a million one-character lines is refused after ``max_records`` of them, before the rest is
read, parsed or dead-lettered.

>>> body = BatchBody("application/json", max_records=10)
>>> body.feed(b'[{"a": 1}, ' + b'9' * 5000 + b', [] ]')
>>> [(index, len(raw) if isinstance(raw, str) else raw) for index, _, raw in body.records()]
[(0, {'a': 1}), (1, 5000), (2, [])]
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from pipelines.errors import FaithwatchError
from pipelines.interaction import MAX_RECORD_BYTES

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl",
                          "application/x-jsonlines"})
JSON_TYPES = frozenset({"application/json", ""})

_WS = re.compile(r"[ \t\n\r]*")
_SIGNIFICANT = re.compile(r'["\[\]{},]')
_IN_STRING = re.compile(r'["\\]')
_DECODER = json.JSONDecoder()


class BodyError(FaithwatchError):
    """The body as a whole cannot be taken; ``status`` is the HTTP status that says why."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


class TooManyRecords(BodyError):
    def __init__(self, limit: int):
        super().__init__(413, f"more than {limit} records in one request (api.max_records_per_request): "
                              f"split the batch")


class BatchBody:
    """One POST body, fed in chunks; :meth:`records` once it is complete."""

    def __init__(self, content_type: str, max_records: int):
        if content_type in NDJSON_TYPES:
            self.kind = "ndjson"
        elif content_type in JSON_TYPES:
            self.kind = "json"
        else:
            raise BodyError(415, f"Content-Type {content_type!r}: send application/json (a JSON array of "
                                 f"interactions) or application/x-ndjson (one interaction per line)")
        self.max_records = max_records
        self._chunks: list[bytes] = []
        self._lines: list[tuple[int, bytes]] = []  # NDJSON: the complete non-blank lines so far
        self._tail = b""
        self._line_no = 0

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk; :class:`TooManyRecords` as soon as NDJSON passes the bound."""
        if self.kind == "json":
            self._chunks.append(chunk)
            return
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        self._take_lines(lines)

    def _take_lines(self, lines: list[bytes]) -> None:
        for line in lines:
            self._line_no += 1
            if line.strip():
                if len(self._lines) >= self.max_records:
                    raise TooManyRecords(self.max_records)
                self._lines.append((self._line_no, line.rstrip(b"\r")))

    def records(self) -> Iterator[tuple[int, int | None, Any]]:
        """``(index, line, raw)`` per record (line: 1-based, NDJSON only)."""
        if self.kind == "ndjson":
            tail, self._tail = self._tail, b""
            self._take_lines([tail])
            for index, (line, raw) in enumerate(self._lines):
                yield index, line, raw
            return
        body = b"".join(self._chunks)
        self._chunks = []
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _not_json(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        for index, raw in enumerate(json_array_elements(text)):
            if index >= self.max_records:
                raise TooManyRecords(self.max_records)
            yield index, None, raw


def json_array_elements(text: str) -> Iterator[Any]:
    """The elements of the JSON array ``text``, each decoded, or as its text where it cannot be
    (too large, too deep, malformed inside); :class:`BodyError` (400) if ``text`` is no array."""
    pos = _WS.match(text, 0).end()
    if pos == len(text) or text[pos] != "[":
        kind = "empty" if pos == len(text) else f"starts with {text[pos]!r}"
        if pos < len(text) and text[pos] == "{":
            kind = "a JSON object"
        raise BodyError(400, f"expected a JSON array of interactions, the body is {kind}; wrap a single "
                             f"interaction in [ ], or send NDJSON with Content-Type: application/x-ndjson")
    pos = _WS.match(text, pos + 1).end()
    if text.startswith("]", pos):
        _end_of_body(text, pos + 1)
        return
    while True:
        try:
            value, end = _DECODER.raw_decode(text, pos)
            raw: Any = value if end - pos <= MAX_RECORD_BYTES else text[pos:end]
        except (ValueError, RecursionError):
            end = _element_end(text, pos)
            raw = text[pos:end].rstrip(" \t\n\r")
            if not raw:
                raise _not_json(f"a value is missing at char {pos}") from None
        yield raw
        pos = _WS.match(text, end).end()
        if text.startswith(",", pos):
            pos = _WS.match(text, pos + 1).end()
        elif text.startswith("]", pos):
            _end_of_body(text, pos + 1)
            return
        else:
            raise _not_json(f"expected ',' or ']' at char {pos}")


def _end_of_body(text: str, pos: int) -> None:
    if _WS.match(text, pos).end() != len(text):
        raise _not_json(f"extra data after the array at char {pos}")


def _element_end(text: str, pos: int) -> int:
    """Where the element starting at ``pos`` ends: its closing bracket, or the ``,`` / ``]`` after
    a scalar. Strings are skipped whole; brackets are only counted (the element's own decoder
    says what is wrong inside)."""
    depth, at = 0, pos
    while True:
        found = _SIGNIFICANT.search(text, at)
        if found is None:
            raise _not_json(f"the array that starts before char {pos} is never closed")
        char, at = found.group(), found.end()
        if char == '"':
            while True:
                quote = _IN_STRING.search(text, at)
                if quote is None:
                    raise _not_json(f"a string is never closed after char {found.start()}")
                at = quote.end() + (1 if quote.group() == "\\" else 0)
                if quote.group() == '"':
                    break
        elif char in "[{":
            depth += 1
        elif depth == 0:  # "," or a closing bracket after a scalar: the element ends before it
            return found.start()
        elif char != ",":
            depth -= 1
            if depth == 0:
                return at


def _not_json(detail: str) -> BodyError:
    return BodyError(400, f"body is not valid JSON ({detail}); send a JSON array of interactions, or NDJSON "
                          f"with Content-Type: application/x-ndjson")
