"""services.flow: the order and the fan-out every driver shares (the drivers' own tests check that
they give the same incidents: tests/services/kafka/test_kafka_worker.py, tests/test_end_to_end.py)."""

from __future__ import annotations

import json

from pipelines.interaction import parse_record
from services.flow import JsonLines, event_key, event_order


def record(iid: str, ts: str) -> bytes:
    return json.dumps({"interaction_id": iid, "session_id": "s", "timestamp": ts, "query": "q?",
                       "response": "a.", "retrieved_docs": []}).encode()


def test_equal_timestamps_are_ordered_by_interaction_id_and_repeats_keep_their_order():
    rows = [parse_record(record(i, ts)) for i, ts in [("b", "2026-11-02T10:00:00Z"), ("a", "2026-11-02T10:00:00Z"),
                                                      ("c", "2026-11-02T09:00:00Z"), ("a", "2026-11-02T10:00:00Z")]]
    rows[3] = rows[3].model_copy(update={"query": "again?"})
    ordered = sorted(rows, key=event_order)
    assert [(r.interaction_id, r.query) for r in ordered] == [("c", "q?"), ("a", "q?"), ("a", "again?"), ("b", "q?")]


class Row:
    def __init__(self, **d):
        self.d = d

    def to_json_dict(self) -> dict:
        return self.d


def test_json_lines_append_skips_what_the_file_holds(tmp_path):
    path = tmp_path / "alerts.jsonl"
    first = JsonLines(path, append=True, key=event_key)
    assert first.write([Row(incident_id="i", sequence=0), Row(incident_id="i", sequence=1)]) == 2
    assert first.write([Row(incident_id="i", sequence=1)]) == 0
    first.close()
    again = JsonLines(path, append=True, key=event_key)  # a restarted worker re-emitting
    assert again.write([Row(incident_id="i", sequence=1), Row(incident_id="i", sequence=2)]) == 1
    again.close()
    assert [json.loads(line)["sequence"] for line in path.read_text().splitlines()] == [0, 1, 2]
    fresh = JsonLines(path)  # replay: a new file
    fresh.close()
    assert path.read_text() == ""
