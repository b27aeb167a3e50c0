"""Message encodings of the Kafka driver: JSON values, UTF-8 keys.

The internal ``prepared`` topic carries two kinds of message, both JSON objects:

- ``{"type": "record", "interaction": {...}, "embedding": {...}, "faithfulness": f | null,
  "source": "producer" | "computed" | "none", "partition": p, "offset": o}``: an interaction the
  score stage parsed and prepared (embedding exact: float32, base64), with where it was read;
- ``{"type": "watermark", "partition": p, "event_time": "..."}``: the highest event time the
  score stage has processed in source partition ``p`` of the interactions topic;
- ``{"type": "tick"}``: nothing; sent on assignment so that the new owner wakes up and restores.

>>> from datetime import UTC, datetime
>>> w = decode(watermark(3, datetime(2026, 11, 2, 10, tzinfo=UTC)))
>>> w["type"], w["partition"], w["event_time"]
('watermark', 3, '2026-11-02T10:00:00+00:00')
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pipelines.engine import Prepared
from pipelines.interaction import DeadLetter, Interaction
from pipelines.labels import decode_array, encode_array
from pipelines.records import ClusterInfo, IncidentEvent, ScoredInteraction

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def decode(value: bytes) -> dict[str, Any]:
    return json.loads(value)


def record(p: Prepared, partition: int, offset: int) -> bytes:
    return _dumps({
        "type": "record", "interaction": p.interaction.model_dump(mode="json"),
        "embedding": encode_array(p.embedding), "faithfulness": p.faithfulness, "source": p.source,
        "partition": partition, "offset": offset}).encode()


def prepared_of(msg: dict[str, Any]) -> Prepared:
    """The :class:`Prepared` a ``record`` message carries (exactly what the score stage made)."""
    return Prepared(Interaction.model_validate(msg["interaction"]), decode_array(msg["embedding"]),
                    msg["faithfulness"], msg["source"])


def watermark(partition: int, event_time: datetime) -> bytes:
    return _dumps({"type": "watermark", "partition": partition, "event_time": event_time.isoformat()}).encode()


def tick() -> bytes:
    """A no-op message: the owner of the sequence stage sends one when it is assigned."""
    return b'{"type":"tick"}'


def row(r: ScoredInteraction | IncidentEvent | ClusterInfo | DeadLetter) -> bytes:
    """A scored interaction, incident event, cluster or dead letter as a JSON value."""
    data = r.model_dump(mode="json") if isinstance(r, DeadLetter) else r.to_json_dict()
    return _dumps(data).encode()


def scored_of(value: bytes) -> ScoredInteraction:
    return ScoredInteraction.model_validate_json(value)


def event_of(value: bytes) -> IncidentEvent:
    return IncidentEvent.model_validate_json(value)


def cluster_of(value: bytes) -> ClusterInfo:
    return ClusterInfo.model_validate_json(value)


def dead_letter_of(value: bytes) -> DeadLetter:
    return DeadLetter.model_validate_json(value)
