"""The gate's cluster model over Kafka without a broker: what the sequence stage publishes and how
a reader assembles it (services/kafka/gate_model.py). The broker path (a worker publishing, the
Kafka-mode API following) is in test_kafka_worker.py."""

from __future__ import annotations

import numpy as np

from pipelines.gating import ClusterModel
from services.kafka.gate_model import Assembler, Publisher, open_incident
from services.kafka.sequencer import MANIFEST_KEY


def model(n: int = 200, seed: int = 0, families: str = "f") -> ClusterModel:
    """``n`` clusters of 384-dim float64 centroids: 200 make a state of three chunks."""
    c = np.random.default_rng(seed).normal(size=(n, 384))
    return ClusterModel(tuple(f"c{i:03d}" for i in range(n)), c / np.linalg.norm(c, axis=1, keepdims=True),
                        tuple(f"{families}{i // 2:03d}" for i in range(n)), ("pricing", "other") * (n // 2),
                        0.8, 0.7)


def feed(reader: Assembler, entries) -> list[bool]:
    return [reader.add(k, v) for k, v in entries]


def test_a_model_round_trips_exactly_in_chunks_below_kafkas_message_size():
    m = model()
    entries = Publisher("hashing-384").entries(m)
    assert entries is not None and len(entries) >= 3  # several chunks, then the manifest
    assert entries[-1][0] == MANIFEST_KEY and all(k.startswith("state/1/") for k, _ in entries[:-1])
    assert max(len(v.encode()) for _, v in entries) < 512 * 1024
    reader = Assembler("hashing-384")
    assert feed(reader, entries) == [False] * (len(entries) - 1) + [True]  # complete only at the manifest
    got = reader.model
    assert got is not None and got.same_clusters(m) and got.version == 1
    assert np.array_equal(got.centroids, m.centroids) and got.centroids.dtype == np.float64
    assert (got.family_ids, got.categories, got.incidents) == (m.family_ids, m.categories, ())
    q = np.random.default_rng(5).normal(size=(50, 384))
    assert got.place(q, "other") == m.place(q, "other")


def test_only_a_changed_model_is_published_and_publications_alternate_slots():
    p = Publisher("e")
    m = model()
    first = p.entries(m)
    assert p.entries(model()) is None  # the same clusters, centroids, families: nothing to send
    assert p.entries(ClusterModel()) is None  # nothing fitted yet
    moved = m.centroids.copy()
    moved[7, 0] += 1e-9
    second = p.entries(ClusterModel(m.cluster_ids, moved, m.family_ids, m.categories, 0.8, 0.7))
    refamilied = p.entries(model(families="g"))
    assert first and second and refamilied and p.generation == 3
    assert {k.split("/")[1] for k, _ in first[:-1]} == {"1"} and {k.split("/")[1] for k, _ in second[:-1]} == {"0"}
    reader = Assembler("e")
    feed(reader, first + second + refamilied)
    assert reader.model is not None and reader.model.version == 3 and reader.model.family_ids[0] == "g000"


def test_a_reader_never_mixes_two_publications():
    # A worker published generation 1 (slot 1) and 2 (slot 0), died before its checkpoint kept
    # generation 2, and its successor publishes generation 2 again into slot 0 (another model).
    one, two, again = model(seed=1), model(seed=2), model(seed=3)
    old = Publisher("e")
    e1, e2 = old.entries(one), old.entries(two)
    e3 = Publisher("e", generation=1).entries(again)
    live = Assembler("e")
    feed(live, e1 + e2)
    assert live.model.same_clusters(two)
    # The successor's chunks overwrite slot 0; before its manifest the reader keeps model two.
    feed(live, e3[:-1])
    assert live.model.same_clusters(two)
    # A manifest re-read while the slot holds other chunks (compaction kept the old manifest):
    # refused, the model in hand stays.
    assert live.add(MANIFEST_KEY, e2[-1][1]) is False
    assert live.model.same_clusters(two) and "does not match" in live.problem
    assert live.add(*e3[-1]) is True and live.model.same_clusters(again) and live.problem is None
    # A reader starting on the compacted log at the bad moment (generation 2's chunks gone, the
    # successor's manifest not written yet) has no model rather than a mixed one.
    fresh = Assembler("e")
    feed(fresh, [*e1[:-1], (MANIFEST_KEY, e2[-1][1]), *e3[:-1]])
    assert fresh.model is None and "a chunk is missing" in fresh.problem
    assert fresh.add(*e3[-1]) is True and fresh.model.same_clusters(again)
    # A tombstone (a deleted key) takes the chunk away: that manifest can no longer be assembled.
    fresh.add("state/0/0", None)
    assert fresh.add(*e3[-1]) is False and fresh.model.same_clusters(again)


def test_a_model_from_workers_with_another_embedding_model_is_refused():
    reader = Assembler("all-MiniLM-L6-v2-onnx-fp32")
    feed(reader, Publisher("hashing-384").entries(model(n=4)))
    assert reader.model is None
    assert reader.problem == ("the workers embed with 'hashing-384' and this API with 'all-MiniLM-L6-v2-onnx-fp32': "
                              "give both the same embedding settings")


def test_open_incidents_come_from_store_rows():
    inc = open_incident({"incident_id": "inc-c004-x", "cluster_id": "c004", "clusters": ["c008", "c004"],
                         "family_ids": ["f004", None]})
    assert (inc.incident_id, inc.clusters, inc.family_ids) == ("inc-c004-x", {"c004", "c008"}, {"f004"})
    older = open_incident({"incident_id": "inc-c001-y", "cluster_id": "c001", "clusters": [], "family_ids": []})
    assert older.clusters == {"c001"} and older.family_ids == frozenset()


def test_catching_up_on_an_uncompacted_log_assembles_only_the_latest_publication():
    p = Publisher("e")
    log = p.entries(model(seed=1)) + p.entries(model(seed=2)) + p.entries(model(seed=3))
    reader = Assembler("e")
    assert not any(reader.add(k, v, assemble=False) for k, v in log)
    assert reader.model is None
    assert reader.assemble() is True and reader.model.same_clusters(model(seed=3)) and reader.model.version == 3
