"""The pipeline: every stage composed, one interaction after another in event-time order.

:class:`Pipeline` is what both drivers run. A driver hands it batches of valid interactions
(already ordered by event time); it drops duplicates (``interaction_id`` is the idempotency key),
embeds the batch's queries in one call, computes faithfulness where the producer sent none,
assigns each query to an intent cluster, asks the :class:`~pipelines.detector.PatternDetector`
whether the answer is below its cluster's baseline and whether a pattern has formed, and returns
the scored interactions, the incident events and the clusters whose description changed.

Until the clusterer is bootstrapped the interactions wait in a buffer (``bootstrap_size`` of
them); ``flush()`` at the end of a stream fits on what is there. ``seed(queries)`` fits on example
queries instead (a seed file), so nothing waits.

``to_state()`` / ``from_state()`` save and restore everything the stream has built (clusters,
baselines, detectors and open incidents, the ids seen, what waits for the bootstrap): a restored
pipeline continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import chain, compress, islice, repeat
from operator import is_not

import numpy as np
from threadpoolctl import ThreadpoolController

from pipelines.clustering import Assignment, OnlineClusterer
from pipelines.config import BaselineConfig, ClusterConfig, DetectConfig, InputConfig
from pipelines.detector import Judgement, PatternDetector
from pipelines.embedding import Embedder
from pipelines.errors import FaithwatchError, InvalidRecord
from pipelines.event_clock import EventClock
from pipelines.faithfulness import FaithfulnessScorer
from pipelines.family import NO_CHANGE, FamilyChange, IntentFamilies, cluster_age
from pipelines.gating import ClusterModel, OpenIncident
from pipelines.incident import strictest
from pipelines.interaction import DeadLetter, Interaction
from pipelines.labels import CategoryIndex, decode_array, encode_array
from pipelines.policy import CategoryPolicy
from pipelines.records import ClusterInfo, ContextRef, FamilyInfo, IncidentEvent, ScoredInteraction
from pipelines.state import check_envelope, envelope

UNASSIGNED = "unassigned"
UNASSIGNED_LABEL = "unassigned queries"
# Cluster labels are recomputed (c-TF-IDF over all clusters) every this many interactions and
# whenever clusters are created: labels drift slowly, and recomputing per event costs O(clusters).
LABEL_REFRESH_EVERY = 500
_SOURCES = frozenset(("producer", "computed", "none"))  # ScoredInteraction.faithfulness_source


_BLAS: ThreadpoolController | None = None


def _reported(info: ClusterInfo) -> tuple:
    """What a change of makes a cluster's description worth writing again."""
    return (info.label, info.category, info.centroid_version, info.representative_query,
            info.family_id, info.family_label, info.family_category, info.family_aliases)


def _described_anew(current: dict[str, ClusterInfo], before: dict[str, ClusterInfo]) -> list[str]:
    """The clusters whose description in ``current`` is not the object ``before`` had (new
    clusters included), in creation order. ``current`` is ``before`` with clusters appended (the
    clusterer never drops one), so the two are compared row by row in C, not by a lookup per
    cluster: this runs whenever a cluster is created, over every cluster."""
    if list(islice(current, len(before))) != list(before):
        return [cid for cid, info in current.items() if before.get(cid) is not info]
    return list(compress(current, map(is_not, current.values(), chain(before.values(), repeat(None)))))


def one_blas_thread():
    """A context in which BLAS (numpy's OpenBLAS) runs on one thread.

    The sequence half multiplies small matrices (a query against the centroids, a few pooled
    queries against a few centroids) many times; a second BLAS thread costs more to wake than it
    saves, and when the cores are shared (the embedding runtime's own threads, other processes) its
    spinning made the sequence half 2-5x slower. Results do not depend on it: OpenBLAS splits a
    product by rows and columns, never along the summed dimension.
    """
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


@dataclass
class Output:
    scored: list[ScoredInteraction] = field(default_factory=list)
    events: list[IncidentEvent] = field(default_factory=list)
    clusters: list[ClusterInfo] = field(default_factory=list)
    duplicates: int = 0
    # Valid records the stream refuses (a timestamp too far ahead): the driver dead-letters them.
    rejected: list[tuple[Interaction, InvalidRecord]] = field(default_factory=list)

    def extend(self, other: Output) -> Output:
        self.scored += other.scored
        self.events += other.events
        self.clusters += other.clusters
        self.duplicates += other.duplicates
        self.rejected += other.rejected
        return self

    def dead_letters(self, received_at: datetime, source: str) -> list[DeadLetter]:
        """:attr:`rejected` as dead letters (position: the interaction id, so the same refusal
        twice is one row)."""
        return [DeadLetter.of(error, i.to_record(), received_at=received_at, source=source,
                              position=f"interaction {i.interaction_id}") for i, error in self.rejected]


@dataclass(frozen=True)
class Prepared:
    """An interaction with what the stateless half computed: its query's embedding and its
    faithfulness (given by the producer, computed, or none) with where that came from."""

    interaction: Interaction
    embedding: np.ndarray
    faithfulness: float | None
    source: str


_Prepared = Prepared  # the name before the prepare/sequence split


class SeenIds:
    """The interaction ids seen, bounded (oldest forgotten first)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, iid: str) -> bool:
        """Remember ``iid``; False if it was already there (a duplicate)."""
        if iid in self._ids:
            return False
        self._ids[iid] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._ids)

    def to_state(self) -> list[str]:
        return list(self._ids)

    @classmethod
    def from_state(cls, ids: Sequence[str], capacity: int) -> SeenIds:
        s = cls(capacity)
        for iid in ids:
            s.add(iid)
        return s


class Pipeline:
    STATE_VERSION = 2
    KIND = "Pipeline"

    def __init__(self, *, embedder: Embedder, scorer: FaithfulnessScorer, policy: CategoryPolicy,
                 clusterer: OnlineClusterer, cluster_config: ClusterConfig,
                 baseline_config: BaselineConfig, detect_config: DetectConfig,
                 seen_capacity: int = 2_000_000, input_config: InputConfig | None = None):
        self.embedder = embedder
        self.input_config = input_config or InputConfig()
        self.event_clock = EventClock(timedelta(hours=self.input_config.max_ahead_hours))
        self.scorer = scorer
        self.policy = policy
        self.clusterer = clusterer
        self.cluster_config = cluster_config
        self.intent_families = IntentFamilies(cluster_config.family_threshold)
        self.detector = self._detector(PatternDetector(baseline_config, detect_config))
        self.seen = SeenIds(seen_capacity)
        self._buffer: list[Prepared] = []
        self._seed: tuple[np.ndarray, list[str]] | None = None
        self._labels: dict[str, ClusterInfo] = {}  # as last reported, with their families
        self._raw: dict[str, ClusterInfo] = {}  # the clusterer's descriptions behind _labels (derived)
        self._family_info: dict[str, FamilyInfo] = {}
        self._since_labels = 0
        self._since_families = 0
        self.processed = 0

    def _detector(self, detector: PatternDetector) -> PatternDetector:
        detector.family_of = self.intent_families.family_of
        detector.family_size = self.intent_families.size
        return detector

    # -- preparation (batched, stateless) ----------------------------------------------------
    def prepare(self, batch: Sequence[Interaction]) -> list[Prepared]:
        """The stateless half: embed the queries in one call, compute faithfulness where absent.

        Depends on nothing the stream built, so any number of workers can run it in parallel;
        :meth:`sequence` takes its output in event-time order.
        """
        if not batch:
            return []
        vectors = self.embedder.encode([i.query for i in batch])
        todo = [k for k, i in enumerate(batch) if i.faithfulness is None]
        results = self.scorer.score_many([(batch[k].response, batch[k].contexts) for k in todo])
        computed = dict(zip(todo, results, strict=True))
        out = []
        for k, i in enumerate(batch):
            if i.faithfulness is not None:
                f, src = i.faithfulness, "producer"
            elif computed.get(k) is not None:
                f, src = float(computed[k].score), "computed"
            else:
                f, src = None, "none"
            out.append(Prepared(i, vectors[k], f, src))
        return out

    def seed(self, queries: Sequence[str]) -> Pipeline:
        """Fit the clusters on these example queries instead of waiting for the stream's first ones.

        They are embedded now and fitted when the first interaction arrives (its time stamps them).
        """
        if self.clusterer.fitted or self._buffer:
            raise FaithwatchError("seed the pipeline before it processes anything")
        queries = [q for q in dict.fromkeys(q.strip() for q in queries) if q]
        if len(queries) < self.cluster_config.min_cluster_size:
            raise FaithwatchError(f"a seed needs at least {self.cluster_config.min_cluster_size} distinct queries")
        self._seed = (self.embedder.encode(queries), queries)
        return self

    # -- the stream --------------------------------------------------------------------------
    def process(self, batch: Sequence[Interaction], now: datetime | None = None) -> Output:
        """Both halves: drop duplicates, :meth:`prepare` the rest, then sequence them."""
        out = Output()
        return self.sequence_admitted(self.prepare(self.admit(batch, out, now)), out)

    def admit(self, batch: Sequence[Interaction], out: Output, now: datetime | None = None) -> list[Interaction]:
        """The first step of :meth:`process`: the interactions not seen before (the rest are
        counted in ``out.duplicates``) and not too far ahead of the stream (the rest go to
        ``out.rejected``; ``now``: the driver's time, see :class:`~pipelines.event_clock.EventClock`).
        Then :meth:`prepare` them (anywhere, any time) and hand the result with the same ``out``
        to :meth:`sequence_admitted`, batches in admission order."""
        return [i for i in batch if self._admissible(i, out, now)]

    def _admissible(self, i: Interaction, out: Output, now: datetime | None) -> bool:
        reason = self.event_clock.admit(i.timestamp, now)
        if reason is not None:
            out.rejected.append((i, InvalidRecord("timestamp", reason, i.interaction_id)))
            return False
        if not self.seen.add(i.interaction_id):
            out.duplicates += 1
            return False
        return True

    def sequence_admitted(self, prepared: list[Prepared], out: Output) -> Output:
        """The last step of :meth:`process`, for what :meth:`admit` let through, prepared."""
        return self._sequence(prepared, out)

    def sequence(self, prepared: Sequence[Prepared], now: datetime | None = None) -> Output:
        """The stateful half, for records :meth:`prepare` made (possibly elsewhere), in event-time
        order: drop duplicates and records too far ahead (as :meth:`admit`), wait for the
        bootstrap, assign clusters, detect. Fed the same records in the same order, it gives
        exactly what :meth:`process` gives."""
        out = Output()
        return self._sequence([p for p in prepared if self._admissible(p.interaction, out, now)], out)

    def _sequence(self, prepared: list[Prepared], out: Output) -> Output:
        with one_blas_thread():
            return self._sequence_all(prepared, out)

    def _sequence_all(self, prepared: list[Prepared], out: Output) -> Output:
        if not self.clusterer.fitted and self._seed is not None and prepared:
            vectors, queries = self._seed
            self._seed = None
            self.clusterer.bootstrap(vectors, queries, [prepared[0].interaction.timestamp] * len(queries))
            self._refresh_labels(out)
        if not self.clusterer.fitted:
            # Fit on exactly the first bootstrap_size interactions, wherever batches split them,
            # so results do not depend on the batch size.
            room = self.cluster_config.bootstrap_size - len(self._buffer)
            self._buffer += prepared[:room]
            prepared = prepared[room:]
            if len(self._buffer) < self.cluster_config.bootstrap_size:
                return out
            out.extend(self._bootstrap())
        for p in prepared:
            self._one(p, self.clusterer.assign(p.embedding, p.interaction.query,
                                               p.interaction.timestamp, p.interaction.intent_hint), out)
        return out

    def flush(self) -> Output:
        """End of stream: fit on whatever waits for the bootstrap and score it."""
        if self.clusterer.fitted or not self._buffer:
            return Output()
        with one_blas_thread():
            return self._bootstrap()

    def _bootstrap(self) -> Output:
        buf, self._buffer = self._buffer, []
        out = Output()
        assignments = self.clusterer.bootstrap(
            np.stack([p.embedding for p in buf]), [p.interaction.query for p in buf],
            [p.interaction.timestamp for p in buf], [p.interaction.intent_hint for p in buf])
        self._refresh_labels(out)
        for p, a in zip(buf, assignments, strict=True):
            self._one(p, a, out)
        return out

    def _refresh_labels(self, out: Output, change: FamilyChange = NO_CHANGE) -> None:
        """Describe again what changed since the last call, with its family: the clusters the
        clusterer describes anew, the clusters ``change`` (a re-link) or newly placed clusters moved,
        and the members of every family whose label, category or aliases changed. The families
        touched by any of that are described again first. Work in proportion to what changed, not
        to the number of clusters (every cluster was described again on any move: +75 % on the
        ordered stage at 914 clusters)."""
        current = self.clusterer.clusters
        families = self.intent_families
        changed = _described_anew(current, self._raw)
        families.moved(changed)  # the clusterer describes anew every cluster whose centroid moved
        if len(current) != families.placed or (current and next(reversed(current)) not in families):
            change = change | families.sync(*self.clusterer.centroid_rows())
        relabelled = self._describe_families(current, change.families | {families.family_of(c) for c in changed})
        redo = {*changed, *change.clusters}.union(*(families.members(f) for f in relabelled))
        for cid in sorted(redo.intersection(current), key=cluster_age):  # creation order, as `current`
            fid = families.family_of(cid)
            fam = self._family_info.get(fid)
            info = current[cid]
            info = info.model_copy(update={"family_id": fid, "family_label": fam.label if fam else info.label,
                                           "family_category": fam.category if fam else info.category,
                                           "family_aliases": families.aliases(fid)})
            old = self._labels.get(cid)
            if old is None or _reported(old) != _reported(info):
                out.clusters.append(info)
            self._labels[cid] = info
        if changed:
            self._raw = dict(current)
        self._since_labels = 0

    def _describe_families(self, current: dict[str, ClusterInfo], only: set[str]) -> set[str]:
        """Describe these families again: label (the largest member's), category (the strictest
        member's), members, aliases and size; a family without members is dropped. Returns those
        whose label, category or aliases changed (their members' descriptions carry them)."""
        families = self.intent_families
        described = self._family_info
        relabelled = set()
        for fid in only:
            infos = [current[c] for c in families.members(fid) if c in current]
            old = described.get(fid)
            if not infos:
                if described.pop(fid, None) is not None:
                    relabelled.add(fid)
                continue
            largest = max(infos, key=lambda i: i.size)  # ties: the oldest
            category = strictest([self.policy.get(i.category) for i in infos]).name
            new = FamilyInfo.model_construct(  # built from checked values: no validation
                family_id=fid, label=largest.label, category=category, clusters=families.members(fid),
                aliases=families.aliases(fid), size=sum(i.size for i in infos))
            if old is None or (old.label, old.category, old.aliases) != (new.label, new.category, new.aliases):
                relabelled.add(fid)
            described[fid] = new
        return relabelled

    def _one(self, p: Prepared, a: Assignment, out: Output) -> None:
        i = p.interaction
        self._since_labels += 1
        self._since_families += 1
        if self._since_families >= self.cluster_config.family_refresh_every:
            self._since_families = 0
            self._refresh_labels(out, self.intent_families.relink(*self.clusterer.centroid_rows()))
        elif a.created or self._since_labels >= LABEL_REFRESH_EVERY:
            self._refresh_labels(out)
        info = None
        if a.cluster_id is None:
            cid, label, category = UNASSIGNED, UNASSIGNED_LABEL, self.policy.get(self.policy.default)
        else:
            info = self._labels.get(a.cluster_id)
            cid = a.cluster_id
            label = info.label if info else cid
            category = self.policy.get(info.category if info else self.policy.default)
        j = self.detector.observe(i, cluster_id=cid, label=label, category=category,
                                  faithfulness=p.faithfulness)
        out.events += j.events
        self.processed += 1
        out.scored.append(self._scored(p, cid, label, category.name, j, info.family_id if info else None))

    @staticmethod
    def _scored(p: Prepared, cid: str, label: str, category: str, j: Judgement,
                family_id: str | None) -> ScoredInteraction:
        """The scored row, built from values that are already valid (the interaction was
        validated, the rest is the pipeline's own), so without validating them again."""
        i = p.interaction
        values = {
            "interaction_id": i.interaction_id, "session_id": i.session_id, "customer_id": i.customer_id,
            "timestamp": i.timestamp, "query": i.query, "response": i.response, "cluster_id": cid,
            "cluster_label": label, "category": category,
            "faithfulness": None if p.faithfulness is None else round(float(p.faithfulness), 6),
            "faithfulness_source": p.source, "confidence": i.confidence, "below_baseline": j.below,
            "baseline_low": None if j.baseline_low is None else round(j.baseline_low, 6),
            "confident_wrong": j.confident_wrong, "stale_context": any(c.stale for c in i.contexts),
            "contexts": tuple(ContextRef.trusted({"doc_id": c.doc_id, "doc_version": c.doc_version,
                                                  "stale": c.stale}) for c in i.contexts),
            "incident_id": j.incident_id, "family_id": family_id, "intent_hint": i.intent_hint,
            "model": i.model, "action_name": i.action.name if i.action else None,
            "action_reversible": i.action.reversible if i.action else None,
            "metadata": None if i.metadata is None else dict(i.metadata),
        }
        if p.source not in _SOURCES:  # only a Prepared made elsewhere can be wrong: say so as before
            return ScoredInteraction(**values)
        return ScoredInteraction.trusted(values)

    @property
    def waiting(self) -> int:
        """Interactions held until the clusters are first fitted."""
        return len(self._buffer)

    @property
    def clusters(self) -> dict[str, ClusterInfo]:
        """Every cluster's description with its family, as last reported."""
        return dict(self._labels) if self.clusterer.fitted else {}

    @property
    def families(self) -> dict[str, FamilyInfo]:
        """Every intent family with its members, label and category, as last reported, in id order
        (the order their founding clusters were created in)."""
        if not self.clusterer.fitted:
            return {}
        return dict(sorted(self._family_info.items(), key=lambda kv: (len(kv[0]), kv[0])))

    def cluster_model(self, version: int = 0) -> ClusterModel:
        """An immutable copy of what the confidence gate reads (pipelines/gating.py): centroids,
        ids, families and categories as last reported, and the open incidents. Build it on the
        thread that runs the pipeline and publish it; readers never touch the pipeline."""
        if not self.clusterer.fitted:
            return ClusterModel(version=version)
        ids, rows = self.clusterer.centroid_rows()
        infos = [self._labels.get(cid) for cid in ids]
        families = self.intent_families
        incidents = tuple(
            OpenIncident(iid, frozenset(inc.members) | {inc.cluster_id},
                         frozenset({m.family_id for m in inc.members.values() if m.family_id}
                                   | {families.family_of(c) for c in inc.members}))
            for iid, inc in self.detector.open_incidents.items())
        cfg = self.cluster_config
        return ClusterModel(
            cluster_ids=tuple(ids), centroids=rows.copy(),
            family_ids=tuple(info.family_id if info else families.family_of(cid)
                             for cid, info in zip(ids, infos, strict=True)),
            categories=tuple(info.category if info else self.policy.default for info in infos),
            assign_threshold=cfg.assign_threshold, attach_threshold=cfg.pool_attach_threshold,
            incidents=incidents, version=version)

    # -- state -------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """Everything the stream built, JSON-safe (vectors exact, base64)."""
        buf = self._buffer
        payload = {
            "clusterer": self.clusterer.to_state(),
            "detector": self.detector.to_state(),
            "seen": self.seen.to_state(),
            "buffer": {
                "interactions": [p.interaction.model_dump(mode="json") for p in buf],
                "embeddings": encode_array(np.stack([p.embedding for p in buf]) if buf
                                           else np.zeros((0, self.embedder.dim), dtype=np.float32)),
                "faithfulness": [p.faithfulness for p in buf],
                "sources": [p.source for p in buf],
            },
            "seed": None if self._seed is None else {
                "embeddings": encode_array(self._seed[0]), "queries": list(self._seed[1])},
            "labels": [info.model_dump(mode="json") for info in self._labels.values()],
            "since_labels": self._since_labels,
            "families": self.intent_families.to_state(),
            "family_info": [f.model_dump(mode="json") for f in self.families.values()],
            "since_families": self._since_families,
            "processed": self.processed,
            "event_clock": self.event_clock.to_state(),
        }
        return envelope(self.KIND, self.STATE_VERSION, {"seen_capacity": self.seen.capacity,
                                                        "embedder": self.embedder.name}, payload)

    @classmethod
    def from_state(cls, state: dict, *, embedder: Embedder, scorer: FaithfulnessScorer,
                   policy: CategoryPolicy, categories: CategoryIndex | None, cluster_config: ClusterConfig,
                   baseline_config: BaselineConfig, detect_config: DetectConfig,
                   seen_capacity: int = 2_000_000, input_config: InputConfig | None = None) -> Pipeline:
        """Restore :meth:`to_state`. Raises ``StateError`` if the state was written with another
        embedding model, capacity or stage configuration (each stage checks its own)."""
        p = check_envelope(state, cls.KIND, cls.STATE_VERSION,
                           {"seen_capacity": seen_capacity, "embedder": embedder.name})
        clusterer = OnlineClusterer.from_state(p["clusterer"], cluster_config, categories)
        self = cls(embedder=embedder, scorer=scorer, policy=policy, clusterer=clusterer,
                   cluster_config=cluster_config, baseline_config=baseline_config,
                   detect_config=detect_config, seen_capacity=seen_capacity, input_config=input_config)
        self.event_clock.restore(p.get("event_clock"))  # absent in states saved before it existed
        self.intent_families = IntentFamilies.from_state(p["families"], cluster_config.family_threshold)
        self.detector = self._detector(PatternDetector.from_state(p["detector"], baseline_config, detect_config))
        self.seen = SeenIds.from_state(p["seen"], seen_capacity)
        b = p["buffer"]
        vectors = decode_array(b["embeddings"])
        self._buffer = [Prepared(Interaction.model_validate(i), vectors[k], f, src) for k, (i, f, src)
                        in enumerate(zip(b["interactions"], b["faithfulness"], b["sources"], strict=True))]
        if p["seed"] is not None:
            self._seed = (decode_array(p["seed"]["embeddings"]), list(p["seed"]["queries"]))
        self._labels = {d["cluster_id"]: ClusterInfo.model_validate(d) for d in p["labels"]}
        self._since_labels = int(p["since_labels"])
        self._family_info = {d["family_id"]: FamilyInfo.model_validate(d) for d in p["family_info"]}
        self._since_families = int(p["since_families"])
        self.processed = int(p["processed"])
        return self
