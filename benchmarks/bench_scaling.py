"""Scale-out of the ordered stage, simulated in process: throughput and incidents against partitions.

The layout simulated (docs/scaling.md): one *model owner* runs the clusterer and the intent
families in stream order, exactly as the embedded driver does; detection (baselines, CUSUMs,
incidents) is split into P partitions by intent family (``crc32(family id) % P`` of the cluster's
family when detection first sees it; the cluster stays there). Every ``BATCH`` interactions (one
sequence batch: a *watermark*) the partitions exchange what they committed to the global baseline
(the cold-start prior), so each partition's prior equals the embedded one at every watermark and
lags it by less than one batch in between, and advance their clocks to the watermark (quiet
incidents resolve). A *correlator* downstream merges incidents of different partitions that share
a cause (same cause document, or no conflicting cause and a shared family): what on-call is paged
for (*pages*).

One pass per stream: the real :class:`~pipelines.engine.Pipeline` runs the stream (the embedded
driver's results, and the CPU time of each of its parts: :mod:`benchmarks.stage_clock`), and every
call of its detector is also handed, with the same arguments, to one :class:`PatternDetector` per
partition of each simulated layout (P = 1, 2, 4, 8, 16), timed per partition. From that:

- throughput of the layout: ``N / max(model owner CPU, busiest partition CPU + its records + the
  watermark exchange)``; the owner's CPU is the clusterer's and the families' parts (and, with
  *versioned assignment*, without the nearest-centroid search, which the prepare workers would do
  against the model published at the last watermark; how often that placement agrees with the
  embedded assignment is measured with :meth:`Pipeline.cluster_model` and
  :meth:`ClusterModel.place`);
- incidents: the partitions' events against the embedded driver's (same ids, clusters, sessions)
  and, on the pattern streams of :mod:`benchmarks.bench_incidents`, incidents per pattern counted
  as that benchmark counts them, for the embedded driver, the partitions' raw incidents and the
  correlated pages.

Streams: the three of :mod:`benchmarks.bench_sequence` (real ONNX embeddings, cached) for
throughput; pattern streams (:mod:`pipelines.scenario`, prepared once with the tree's default
embedder and scorer, cached under ``~/.cache/faithwatch/bench_scaling``) for incidents.

    python -m benchmarks.bench_scaling                 # everything (about 10-15 min on a quiet machine)
    python -m benchmarks.bench_scaling --quick         # two small pattern streams (smoke)
    python -m benchmarks.bench_scaling --only 1,000    # one throughput stream
    python -m benchmarks.bench_scaling --patterns-only # only the incident comparison
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.bench_sequence import CACHE, STREAMS, prepared
from benchmarks.sequence_runner import load_prepared
from benchmarks.stage_clock import StageClock
from pipelines.detector import PatternDetector, failure_of
from pipelines.engine import UNASSIGNED, Pipeline, Prepared
from pipelines.incident import DocKey, Failure
from pipelines.records import IncidentEvent

PARTITIONS = (1, 2, 4, 8, 16)
BATCH = 256  # a sequence batch: the watermark interval of the simulated layout
SCALING_CACHE = CACHE.parent / "bench_scaling"


def partition_of(family_id: str, partitions: int) -> int:
    """The partition that detects a family (stable across processes and runs).

    >>> [partition_of(f, 4) for f in ("f001", "f002", "f017")]
    [2, 0, 2]
    """
    return zlib.crc32(family_id.encode()) % partitions


class PartitionedDetection:
    """Detection split into ``partitions`` detectors by intent family, fed as that layout would be.

    :meth:`observe` takes what the pipeline hands its detector and passes it to the partition of
    the cluster's home (its family's partition when first seen); :meth:`watermark` is the stream
    position every ``BATCH`` interactions where the partitions exchange their global-baseline
    commits and the cause broadcast, and advance their clocks. With one partition it is the
    embedded detector, exactly.

    The cause broadcast (docs/scaling.md, (ii)): at each watermark every partition learns the
    cause documents of all partitions' open incidents; a failing answer of a free cluster that
    retrieved one of another partition's causes *stale* (what ``PatternDetector._joinable`` joins
    at once in the embedded driver) is forwarded to that incident, whose session list takes it at
    the next watermark. Only its session: in the embedded driver its cluster also becomes a
    member (its later answers are the incident's), which would need a member whose monitor lives
    in another partition; that part is not simulated.
    """

    def __init__(self, partitions: int, template: PatternDetector, family_of, family_size):
        self.partitions = partitions
        self.detectors = [PatternDetector(template.baseline_config, template.config, family_of, family_size)
                          for _ in range(partitions)]
        self.family_of = family_of
        self.home: dict[str, int] = {}
        self.cpu = [0.0] * partitions  # thread CPU seconds of each partition's detector
        self.count = [0] * partitions  # interactions each partition observed
        # CPU of the watermark exchanges, per partition: each applies every partition's commits
        # (timed once) and takes the result (timed for all, so divided by their number).
        self.exchange_cpu = 0.0
        self.events: list[tuple[int, IncidentEvent]] = []  # (partition, event) in emission order
        self.page_of: dict[str, str] = {}  # incident id -> its page (the correlator's), see correlate
        self.last_at: datetime | None = None
        self._master = copy.deepcopy(self.detectors[0].global_baseline)
        self._commits: list[tuple[datetime, float, float | None, bool]] = []
        self._expired: datetime | None = None
        self._causes: dict[DocKey, tuple[int, str]] = {}  # the broadcast: cause -> (partition, incident id)
        self._forwarded: list[tuple[int, str, Failure]] = []  # since the last watermark
        self.forwarded = 0  # failing answers forwarded by the cause broadcast, in all
        for d in self.detectors:
            self._record(d)

    def _record(self, d: PatternDetector) -> None:
        """Make ``d``'s global baseline log what it is fed (replayed into the others at a watermark)."""
        g = d.global_baseline
        observe, expire = g.observe, g.expire

        def logged_observe(at, f, c, below):
            self._commits.append((at, f, c, below))
            return observe(at, f, c, below)

        def logged_expire(now):
            if self._expired is None or now > self._expired:
                self._expired = now
            return expire(now)

        g.observe, g.expire = logged_observe, logged_expire

    def observe(self, interaction, *, cluster_id: str, **kwargs) -> None:
        p = self.home.get(cluster_id)
        if p is None:
            p = self.home[cluster_id] = partition_of(self.family_of(cluster_id), self.partitions)
        t0 = time.thread_time()
        j = self.detectors[p].observe(interaction, cluster_id=cluster_id, **kwargs)
        if j.below and j.incident_id is None and self._causes:
            self.forward(p, failure_of(interaction, kwargs["faithfulness"], j.confident_wrong, cluster_id))
        self.cpu[p] += time.thread_time() - t0
        self.count[p] += 1
        self.last_at = interaction.timestamp
        self.events += [(p, e) for e in j.events]
        for e in j.events:
            if e.event == "opened":
                self.correlate(p, e.incident_id)

    def forward(self, p: int, failure: Failure) -> None:
        """The cause broadcast's sending side: ``failure``, a failing answer of partition ``p``
        that joined no incident there, goes to the open incident of another partition (as of the
        last watermark) whose cause it retrieved stale, if any."""
        for d in failure.docs:
            owner = self._causes.get((d.doc_id, d.doc_version)) if d.stale else None
            if owner is not None and owner[0] != p:
                self._forwarded.append((*owner, failure))
                self.forwarded += 1
                return

    def watermark(self) -> None:
        """The forwarded failing answers join their incidents' session lists (if still open), the
        partitions' global baselines become the embedded one's (every commit of every partition
        since the last watermark, in any order: histogram counts add up), each partition resolves
        what has been quiet until the watermark, and the cause broadcast is renewed."""
        if self.last_at is None:
            return
        for q, incident_id, failure in self._forwarded:
            inc = self.detectors[q].incidents.get(incident_id)
            if inc is not None:
                t0 = time.thread_time()
                PatternDetector._add_sessions(inc, {failure.cluster_id: [failure]})
                self.cpu[q] += time.thread_time() - t0
        self._forwarded = []
        if self.partitions > 1:
            t0 = time.thread_time()
            master = self._master
            for at, f, c, below in self._commits:
                master.observe(at, f, c, below)
            if self._expired is not None:
                master.expire(self._expired)
            t1 = time.thread_time()
            for d in self.detectors:
                d.global_baseline = copy.deepcopy(master)
                self._record(d)
            self.exchange_cpu += (t1 - t0) + (time.thread_time() - t1) / self.partitions
        self._commits = []
        for p, d in enumerate(self.detectors):
            t1 = time.thread_time()
            self.events += [(p, e) for e in d.advance(self.last_at)]
            self.cpu[p] += time.thread_time() - t1
        if self.partitions > 1:  # the first opened holds a cause, as PatternDetector._joinable looks
            open_ = sorted(((inc.detected_at, inc.incident_id, p, inc.cause) for p, d in enumerate(self.detectors)
                            for inc in d.incidents.values() if inc.cause is not None))
            self._causes = {}
            for _, incident_id, p, cause in open_:
                self._causes.setdefault(cause, (p, incident_id))

    def correlate(self, p: int, incident_id: str) -> None:
        """The correlator: put the incident that just opened in partition ``p`` on the page of an
        incident *of another partition* that shares its cause, by the rule one detector applies
        (``PatternDetector._correlated``: the same cause document, else at least half of its
        sessions another incident's, else no conflicting cause and a shared family; open incidents
        first, then those resolved in the last ``rejoin_hours``).
        Incidents of one partition were kept apart by its detector (two causes in one family) and
        are never merged. (It reads the other partitions' incidents as they are now; a correlator
        fed by their events would see them up to one watermark later.)"""
        d = self.detectors[p]
        inc = d.incidents[incident_id]
        families = {self.family_of(cid) for cid in inc.members}
        sessions = set(inc.sessions)
        others = [o for q, o in enumerate(self.detectors) if q != p]
        match, _ = d._correlated(inc.cause, families, sessions, [i for o in others for i in o.incidents.values()])
        if match is None:
            match, _ = d._correlated(inc.cause, families, sessions,
                                     [i for o in others for i in reversed(o.resolved.values())])
        self.page_of[incident_id] = self.page_of.get(match.incident_id, match.incident_id) if match else incident_id

    @property
    def split_clusters(self) -> int:
        """Clusters whose family is now detected in another partition than theirs (a family the
        families' re-link merged across partitions: its test is split)."""
        return sum(1 for cid, p in self.home.items() if partition_of(self.family_of(cid), self.partitions) != p)


def paged_events(events: list[dict], page_of: dict[str, str]) -> list[dict]:
    """One event per page (as :func:`benchmarks.bench_incidents.incidents_of` reads them): the
    union of its incidents' final clusters and sessions, opened when its first incident opened."""
    from benchmarks.bench_incidents import incidents_of

    merged: dict[str, dict] = {}
    for inc in incidents_of(events):
        page = page_of.get(inc.incident_id, inc.incident_id)
        m = merged.setdefault(page, {"incident_id": page, "sequence": 0, "event": "opened",
                                     "detected_at": inc.opened_at.isoformat(), "cluster_id": page,
                                     "clusters": [], "session_ids": []})
        m["clusters"] = sorted(set(m["clusters"]) | inc.clusters)
        m["session_ids"] = sorted(set(m["session_ids"]) | inc.sessions)
    return list(merged.values())


def digest(events: Sequence[IncidentEvent]) -> str:
    h = hashlib.sha256()
    for e in events:
        h.update(e.model_dump_json().encode())
    return h.hexdigest()[:12]


@dataclass
class Run:
    """One stream through the pipeline, with every simulated layout beside it."""

    interactions: int
    clusters: int
    families: int
    parts: dict[str, float]  # CPU seconds per part of the embedded sequence half
    total_cpu: float
    events: list[IncidentEvent]
    scored_cluster: dict[str, str]
    layouts: dict[int, PartitionedDetection]
    versioned_agree: float  # share of interactions the last watermark's model places where the pipeline did
    model_cpu: float  # CPU of publishing a model version at every watermark


def simulate(pipeline: Pipeline, stream: Sequence[Prepared], partitions: Sequence[int] = PARTITIONS,
             batch: int = BATCH) -> Run:
    """Run ``stream`` through ``pipeline`` in batches of ``batch`` (its detector's calls fanned out
    to one :class:`PartitionedDetection` per entry of ``partitions``) and measure it."""
    clock = StageClock().attach(pipeline)
    # The families as the pipeline has them now (the model owner's, published with each version).
    layouts = {n: PartitionedDetection(n, pipeline.detector, lambda c: pipeline.intent_families.family_of(c),
                                       lambda f: pipeline.intent_families.size(f)) for n in partitions}
    observe = pipeline.detector.observe

    def fanned(interaction, **kwargs):
        j = observe(interaction, **kwargs)
        t0 = time.thread_time()
        for lay in layouts.values():
            lay.observe(interaction, **kwargs)
        clock.exclude(time.thread_time() - t0)
        return j

    pipeline.detector.observe = fanned  # type: ignore[method-assign]
    events: list[IncidentEvent] = []
    scored: dict[str, str] = {}
    agree = placed = 0
    model_cpu = total = 0.0
    version = 0
    for k in range(0, len(stream), batch):
        b = list(stream[k:k + batch])
        if pipeline.clusterer.fitted:  # the model the prepare workers hold: the last watermark's
            t0 = time.thread_time()
            model = pipeline.cluster_model(version)
            version += 1
            model_cpu += time.thread_time() - t0
            places = model.place(np.stack([p.embedding for p in b]), pipeline.policy.default)
        else:
            places = None
        t0 = time.thread_time()
        out = pipeline.sequence(b)
        total += time.thread_time() - t0
        if places is not None:
            where = {p.interaction.interaction_id: pl.cluster_id or UNASSIGNED for p, pl in zip(b, places, strict=True)}
            for s in out.scored:
                if s.interaction_id in where:
                    placed += 1
                    agree += where[s.interaction_id] == s.cluster_id
        events += out.events
        scored |= {s.interaction_id: s.cluster_id for s in out.scored}
        for lay in layouts.values():
            lay.watermark()
    t0 = time.thread_time()
    out = pipeline.flush()
    total += time.thread_time() - t0
    events += out.events
    scored |= {s.interaction_id: s.cluster_id for s in out.scored}
    for lay in layouts.values():
        lay.watermark()
    return Run(interactions=len(scored), clusters=len(pipeline.clusters), families=len(pipeline.families),
               parts=clock.split(total), total_cpu=total - clock.excluded, events=events, scored_cluster=scored,
               layouts=layouts,
               versioned_agree=agree / placed if placed else float("nan"), model_cpu=model_cpu)


@dataclass(frozen=True)
class Throughput:
    """What one layout reaches, per interaction of the whole stream (CPU ms) and in interactions/s.

    Three layouts (docs/scaling.md): ``exact`` (the model owner runs the clusterer as the embedded
    driver does; detection and records in the partitions), ``versioned`` (the prepare workers find
    the nearest centroid in the last watermark's model, the partitions move their clusters'
    centroids; the owner keeps the pool, refits and families), ``async refit`` (as ``versioned``,
    with refits fitted on a snapshot on a core of their own and applied at a watermark)."""

    partitions: int
    owner_ms: tuple[float, float, float]  # model owner, per layout (exact, versioned, async refit)
    refit_ms: float  # the refit core of ``async refit``
    busiest_ms: tuple[float, float]  # busiest partition (exact; versioned and async refit), exchange included
    busiest_share: float  # share of the interactions the busiest partition sees
    exchange_ms: float  # the watermark exchange, per partition
    rate: tuple[float, float, float]  # interactions/s per layout


def busiest(lay: PartitionedDetection, per_interaction: float) -> tuple[float, int]:
    """The busiest partition's CPU seconds (its detector, ``per_interaction`` for each interaction
    it sees, the watermark exchange) and how many interactions it sees."""
    loads = [cpu + per_interaction * cnt for cpu, cnt in zip(lay.cpu, lay.count, strict=True)]
    q = max(range(lay.partitions), key=lambda k: loads[k])
    return loads[q] + lay.exchange_cpu, lay.count[q]


def throughput(run: Run) -> list[Throughput]:
    """What each layout would reach, from the CPU each part measured in ``run``."""
    n = run.interactions
    part = run.parts
    exact = sum(part[k] for k in ("assign", "nearest", "centroids", "pool", "refit", "families", "other"))
    versioned = exact - part["nearest"] - part["centroids"] + run.model_cpu
    async_refit = versioned - part["refit"]
    out = []
    for p, lay in run.layouts.items():
        busy_a, count = busiest(lay, part["records"] / n)
        busy_v, _ = busiest(lay, (part["records"] + part["centroids"]) / n)
        rates = (n / max(exact, busy_a), n / max(versioned, busy_v), n / max(async_refit, part["refit"], busy_v))
        out.append(Throughput(p, tuple(1000 * x / n for x in (exact, versioned, async_refit)),  # type: ignore[arg-type]
                              1000 * part["refit"] / n, (1000 * busy_a / n, 1000 * busy_v / n),
                              count / max(sum(lay.count), 1), 1000 * lay.exchange_cpu / n, rates))
    return out


def comparison(run: Run) -> dict[int, dict]:
    """Per layout: are its incident events the embedded driver's (hash), and how many of the
    embedded incidents it has with the same final clusters and sessions."""
    from benchmarks.bench_incidents import incidents_of

    ref = {i.incident_id: i for i in incidents_of([e.model_dump(mode="json") for e in run.events])}
    out = {}
    for p, lay in run.layouts.items():
        evs = [e for _, e in lay.events]
        got = {i.incident_id: i for i in incidents_of([e.model_dump(mode="json") for e in evs])}
        same = sum(1 for iid, i in ref.items() if iid in got and got[iid].clusters == i.clusters
                   and got[iid].sessions == i.sessions)
        out[p] = {"identical": digest(evs) == digest(run.events), "incidents": len(got),
                  "same_as_embedded": same, "embedded": len(ref), "split_clusters": lay.split_clusters}
    return out


# --- streams -------------------------------------------------------------------------------

def build(settings=None, cut: tuple[float, float] | None = None, embedder=None) -> Pipeline:
    from services.settings import load_settings
    from services.wiring import build_pipeline

    settings = settings or load_settings(None)
    if cut:
        settings = settings.model_copy(update={"cluster": settings.cluster.model_copy(
            update={"distance_threshold": cut[0], "assign_threshold": cut[1]})})
    return build_pipeline(settings, embedder=embedder)


def pattern_streams(quick: bool):
    """The pattern streams of :mod:`benchmarks.bench_incidents` used here: its quick ones, or its
    split, shared-document and two-cause streams."""
    from benchmarks import bench_incidents

    if quick:
        return bench_incidents.streams(quick=True)
    return [s for s in bench_incidents.streams() if s.group in ("split", "shared document", "two causes")]


def prepared_scenario(st, seed: int, pipeline: Pipeline):
    """The stream's scenario and its prepared records (``pipeline.prepare``: the tree's default
    embedder and scorer), prepared once and cached."""
    from benchmarks.bench_detection import DATASETS
    from pipelines.interaction import Interaction
    from pipelines.scenario import ScenarioConfig, generate, to_jsonl_lines
    from services.flow import event_order

    config = ScenarioConfig(seed=seed, days=st.days, per_day=st.per_day, intents=st.intents,
                            incident=st.specs[0], incidents=st.specs[1:], producer_faithfulness=st.producer)
    scenario = generate(DATASETS[st.dataset](), config)
    lines = [line.rstrip("\n") for line in to_jsonl_lines(scenario.records)]
    key = hashlib.sha256(("\n".join(lines) + pipeline.embedder.name).encode()).hexdigest()[:12]
    folder = SCALING_CACHE / key
    if not (folder / "faithfulness.json").exists():
        interactions = sorted((Interaction.model_validate_json(line) for line in lines), key=event_order)
        done = [p for k in range(0, len(interactions), BATCH) for p in pipeline.prepare(interactions[k:k + BATCH])]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stream.jsonl").write_text("\n".join(p.interaction.model_dump_json() for p in done) + "\n",
                                             encoding="utf-8")
        np.save(folder / "embeddings.npy", np.stack([p.embedding for p in done]).astype(np.float32))
        (folder / "faithfulness.json").write_text(json.dumps([[p.faithfulness, p.source] for p in done]),
                                                  encoding="utf-8")
        print(f"prepared {st.name} seed {seed} -> {folder}", file=sys.stderr)
    return scenario, load_prepared(folder)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- the report ----------------------------------------------------------------------------

def throughput_tables(rows: list[tuple[str, Run]]) -> list[str]:
    parts = ("assign", "nearest", "centroids", "pool", "refit", "families", "detect", "records", "other")
    lines = ["| stream | interactions | clusters | families | embedded CPU ms per interaction: "
             + "; ".join(parts) + " | embedded rate (CPU) | model owner ms: exact; versioned; async refit "
             "(+ refit core) | versioned placement = embedded |",
             "|---|---|---|---|---|---|---|---|"]
    for name, run in rows:
        n, p, t = run.interactions, run.parts, throughput(run)[0]
        lines.append(f"| {name} | {n:,} | {run.clusters:,} | {run.families:,} | "
                     + "; ".join(f"{1000 * p[k] / n:.3f}" for k in parts)
                     + f" | {n / run.total_cpu:,.0f}/s | " + "; ".join(f"{x:.3f}" for x in t.owner_ms)
                     + f" (+ {t.refit_ms:.3f}) | {run.versioned_agree:.1%} |")
    lines += ["", "| stream | P | busiest partition: share of interactions; ms exact; ms versioned | of which "
              "exchange ms | rate: exact | versioned | async refit | speed-up over embedded: exact; versioned; "
              "async refit |", "|---|---|---|---|---|---|---|---|"]
    for name, run in rows:
        base = run.interactions / run.total_cpu
        for t in throughput(run):
            lines.append(f"| {name} | {t.partitions} | {t.busiest_share:.0%}; {t.busiest_ms[0]:.3f}; "
                         f"{t.busiest_ms[1]:.3f} | {t.exchange_ms:.3f} | "
                         + " | ".join(f"{r:,.0f}/s" for r in t.rate) + " | "
                         + "; ".join(f"{r / base:.2f}x" for r in t.rate) + " |")
            name = ""
    return lines


def incidents_table(rows: list[dict]) -> list[str]:
    lines = ["| stream | data set | P | incidents per pattern: embedded | partitions | pages | same incidents as "
             "embedded (ids, clusters, sessions) | identical events | session recall (embedded; pages) | "
             "false (embedded; pages) | split clusters | forwarded (cause broadcast) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stream']} | {r['dataset']} | {r['P']} | {r['embedded']} | {r['partitions']} | "
                     f"{r['pages']} | {r['same']}/{r['of']} | {'yes' if r['identical'] else 'no'} | "
                     f"{r['recall_embedded']}; {r['recall_pages']} | {r['false_embedded']}; {r['false_pages']} | "
                     f"{r['split_clusters']} | {r['forwarded']} |")
    return lines


def recall(outcome) -> str:
    """Each pattern's session recall over all its incidents (or pages), as bench_incidents reads it."""
    return "[" + ", ".join("-" if o.recall_all is None else f"{o.recall_all:.2f}" for o in outcome.patterns) + "]"


def incident_rows(st, scenario, run: Run) -> list[dict]:
    from benchmarks.bench_incidents import evaluate

    records = scenario.records
    embedded = evaluate(scenario.truth, records, [e.model_dump(mode="json") for e in run.events], run.scored_cluster)
    cmp = comparison(run)
    rows = []
    for p, lay in run.layouts.items():
        raw = [e.model_dump(mode="json") for _, e in lay.events]
        part = evaluate(scenario.truth, records, raw, run.scored_cluster)
        paged = evaluate(scenario.truth, records, paged_events(raw, lay.page_of), run.scored_cluster)
        c = cmp[p]
        rows.append({"stream": st.name, "dataset": st.dataset, "P": p,
                     "embedded": [o.incidents for o in embedded.patterns],
                     "partitions": [o.incidents for o in part.patterns],
                     "pages": [o.incidents for o in paged.patterns],
                     "same": c["same_as_embedded"], "of": c["embedded"], "identical": c["identical"],
                     "recall_embedded": recall(embedded), "recall_pages": recall(paged),
                     "false_embedded": embedded.false_incidents, "false_pages": paged.false_incidents,
                     "split_clusters": c["split_clusters"], "forwarded": lay.forwarded})
    return rows


def main(argv: Sequence[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small pattern streams, no throughput streams")
    ap.add_argument("--only", help="only the throughput streams whose name contains this (no pattern streams)")
    ap.add_argument("--seed", type=int, default=11, help="seed of the pattern streams")
    ap.add_argument("--patterns-only", action="store_true", help="only the pattern streams (incidents)")
    args = ap.parse_args(argv)
    from services.settings import load_settings
    from services.wiring import build_embedder

    settings = load_settings(None)
    embedder = build_embedder(settings)
    t_rows: list[tuple[str, Run]] = []
    if not args.quick and not args.patterns_only:
        for name, n, intents, cut in STREAMS:
            if args.only and args.only not in name:
                continue
            stream = load_prepared(prepared(name, n, intents))
            run = simulate(build(settings, cut, embedder), stream)
            label = name + (f" (cut {cut[0]}/{cut[1]})" if cut else "")
            t_rows.append((label, run))
            log(f"{label}: {run.interactions} interactions, {run.clusters} clusters, "
                f"{run.interactions / run.total_cpu:.0f}/s embedded; "
                + ", ".join(f"P={t.partitions} {t.rate[0]:.0f}/{t.rate[1]:.0f}/{t.rate[2]:.0f}/s"
                            for t in throughput(run)))
    i_rows: list[dict] = []
    if not args.only:
        for st in pattern_streams(args.quick):
            pipeline = build(settings, None, embedder)
            scenario, stream = prepared_scenario(st, args.seed, pipeline)
            run = simulate(pipeline, stream)
            rows = incident_rows(st, scenario, run)
            i_rows += rows
            log(f"{st.name}: " + "; ".join(f"P={r['P']} {r['embedded']}/{r['partitions']}/{r['pages']}"
                                            for r in rows))
            if args.quick:
                t_rows.append((f"{st.name} (pattern stream)", run))
    body = report(t_rows, i_rows, args.seed)
    command = "python -m benchmarks.bench_scaling" + (" --quick" if args.quick else "") + \
        (f" --only '{args.only}'" if args.only else "") + (" --patterns-only" if args.patterns_only else "")
    path = common.write_fragment("scaling", "Scale-out of the ordered stage, simulated (issue #16)", command, body,
                                 quick=args.quick)
    print(body)
    return path


def report(t_rows: list[tuple[str, Run]], i_rows: list[dict], seed: int) -> str:
    parts = [
        "In-process simulation (docs/scaling.md): the real pipeline runs each stream; its detector's calls are "
        f"also fed to P detectors split by intent family (watermark every {BATCH} interactions: global-baseline "
        "exchange, clocks advanced, cause broadcast renewed). CPU times are thread CPU (the machine is shared). "
        "Throughput of a layout = interactions / max(model owner CPU, busiest partition CPU + its records + "
        "exchange); coordination over a broker (messages, checkpoints) is not included.",
        "",
    ]
    if t_rows:
        parts += ["Throughput (real ONNX all-MiniLM-L6-v2 embeddings, precomputed; CPU ms per interaction of the "
                  "whole stream). *Versioned placement = embedded*: share of interactions that the model published "
                  "at the last watermark (`ClusterModel.place`) places in the cluster the embedded driver gave "
                  "them:", "", *throughput_tables(t_rows), ""]
    if i_rows:
        parts += [f"Incidents (pattern streams of bench_incidents, seed {seed}; incidents per pattern counted as "
                  "bench_incidents counts them; *pages*: after the correlator merges incidents of different "
                  "partitions that share a cause; *split clusters*: clusters whose family moved to another "
                  "partition after they were first seen; *forwarded*: failing answers the cause broadcast sent "
                  "to another partition's incident, whose session list took them at the next watermark if it "
                  "was still open):", "", *incidents_table(i_rows), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    print(main())
