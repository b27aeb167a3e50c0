"""Detection benchmark: faithwatch against the monitors today's tools offer, on the same streams.

Streams come from :mod:`pipelines.scenario` (real BANKING77, CLINC150 and HWU64 training queries,
30 intents, 1,500 interactions a day, daily cycle, bursty sessions, 3 % background noise) with one
injected incident of each kind, over several seeds, plus incident-free streams of the same daily
volume for false alarms. Each stream goes through faithwatch's embedded driver in-process
(:func:`services.embedded.replay`, real all-MiniLM-L6-v2, built-in faithfulness scorer, no
store); the scored interactions it writes (same scores, same cluster assignments) are then fed
in event order to the baselines of :mod:`benchmarks.baselines`:

- fixed threshold: per cluster, mean faithfulness over the last 15 minutes below 0.7, with at
  least 3 (or 5) answers in the window, one alert per episode;
- global mean: the whole stream's mean faithfulness over the last 60 minutes (at least 20
  answers) below a threshold calibrated on separate clean streams (the lowest windowed mean seen,
  minus 0.01), one alert per episode.

One embedder with a cache on disk serves every run (queries and answer sentences repeat).

    python -m benchmarks.bench_detection           # full run, writes benchmarks/results/detection.md
    python -m benchmarks.bench_detection --quick   # one small BANKING77 stream per kind (smoke test)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from benchmarks.baselines import (
    FixedThresholdMonitor,
    GlobalMeanMonitor,
    Scored,
    calibrate_global_threshold,
)
from benchmarks.common import write_fragment
from benchmarks.embedding_cache import DiskCachedEmbedder
from pipelines.scenario import INCIDENT_KINDS, GroundTruth, IncidentSpec, ScenarioConfig, generate, to_jsonl_lines
from services.datasets import INTENT_SETS, load_intents
from services.embedded import DeadLetterFile, replay
from services.settings import Settings, load_settings
from services.wiring import build_pipeline

# Each data set's training queries by intent (the streams are built from them).
DATASETS: dict[str, Callable[[], dict[str, list[str]]]] = {name: partial(load_intents, name) for name in INTENT_SETS}
FIXED = {"fixed 0.7/15 min, n>=3": 3, "fixed 0.7/15 min, n>=5": 5, "fixed 0.7/15 min, n>=8": 8}
MONITORS = ("faithwatch", *FIXED, "global mean/60 min")
GLOBAL_WINDOW, GLOBAL_MIN = 60.0, 20
GRACE = timedelta(hours=6)  # an alert this long after the incident ended no longer detects it


# Which faithfulness each kind is scored with. A stale passage is only visible to a scorer that reads
# indexed_at/doc_updated_at (the built-in one); a made-up figure is what any evaluator flags, and the
# producer's scores replay about 4x faster than the built-in scorer (no answer sentences to embed).
MODES = ("built-in", "producer")
MODE_OF_KIND = {k: ("built-in" if k == "stale_document" else "producer") for k in INCIDENT_KINDS}


@dataclass(frozen=True)
class Plan:
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    clean_seeds: dict[str, tuple[int, ...]]  # per scoring mode
    calibration_seed: int
    days: float
    clean_days: float
    per_day: int
    intents: int
    quick: bool


FULL = Plan(datasets=("banking77", "clinc150", "hwu64"), seeds=(1, 2, 3),
            clean_seeds={"built-in": (101,), "producer": (101, 102, 103)},
            calibration_seed=900, days=4.0, clean_days=12.0, per_day=1500, intents=30, quick=False)
QUICK = Plan(datasets=("banking77",), seeds=(1,), clean_seeds={"built-in": (101,), "producer": (101,)},
             calibration_seed=900, days=2.0,
             clean_days=2.0, per_day=400, intents=10, quick=True)


def incident_spec(kind: str, dataset: str, plan: Plan) -> IncidentSpec:
    """The kind's defaults; BANKING77's stale document is the product story's pricing table."""
    if plan.quick:
        small = {"stale_document": {"sessions": 8}, "gradual": {"sessions": 10, "ramp_hours": 4.0},
                 "spike": {"duration_minutes": 240.0, "onset_day": 1.55},
                 "low_volume": {"sessions": 4, "onset_day": 0.6},
                 "high_confidence": {"sessions": 8}}[kind]
        onset = {"onset_day": 1.3} if kind not in ("low_volume", "spike") else {}
        if kind == "stale_document" and dataset == "banking77":
            return IncidentSpec(onset_day=1.3, sessions=8)
        return IncidentSpec.of(kind, **{**onset, **small})
    if kind == "stale_document" and dataset == "banking77":
        return IncidentSpec()
    return IncidentSpec.of(kind)


# --- running a stream -----------------------------------------------------------------------

@dataclass
class Run:
    scored: list[Scored]
    cluster_of: dict[str, str]
    opened: list  # faithwatch's opened events
    final_sessions: dict[str, set[str]]  # incident id -> sessions of its last event
    final_clusters: dict[str, tuple[str, ...]]  # incident id -> member clusters of its last event
    start: datetime
    end: datetime
    seconds: float


def run_stream(records: list[dict], settings: Settings, embedder, work: Path) -> Run:
    path = work / "stream.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        fh.writelines(to_jsonl_lines(records))
    scored_path = work / "scored.jsonl"
    pipeline = build_pipeline(settings, embedder=embedder)
    t0 = time.perf_counter()
    stats = replay(pipeline, path, store=None, dead_letters=DeadLetterFile(work / "dead_letters.jsonl"),
                   scored_out=scored_path, batch_size=settings.replay.batch_size, progress=False)
    seconds = time.perf_counter() - t0
    scored: list[Scored] = []
    cluster_of: dict[str, str] = {}
    with scored_path.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            at = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
            cluster_of[r["interaction_id"]] = r["cluster_id"]
            if r["faithfulness"] is not None:
                scored.append(Scored(at, r["cluster_id"], r["faithfulness"], r["session_id"],
                                     r["interaction_id"]))
    scored.sort(key=lambda s: s.at)  # event order (the driver's order; stable for ties)
    final: dict[str, set[str]] = {}
    members: dict[str, tuple[str, ...]] = {}
    for ev in stats.events:
        final[ev.incident_id] = set(ev.session_ids)
        members[ev.incident_id] = ev.clusters or (ev.cluster_id,)
    opened = [ev for ev in stats.events if ev.event == "opened"]
    return Run(scored, cluster_of, opened, final, members, scored[0].at, scored[-1].at, seconds)


@dataclass(frozen=True)
class Found:
    """One alert as the evaluation sees it, whatever monitor raised it."""

    at: datetime
    cluster_id: str | None
    sessions: frozenset[str]
    clusters: tuple[str, ...] = ()  # every cluster the alert names (faithwatch: the incident's members)


def alerts_of(run: Run, global_threshold: float) -> dict[str, list[Found]]:
    out = {"faithwatch": [Found(ev.detected_at, ev.cluster_id, frozenset(run.final_sessions[ev.incident_id]),
                                run.final_clusters[ev.incident_id]) for ev in run.opened]}
    for name, n in FIXED.items():
        out[name] = [Found(a.at, a.cluster_id, frozenset(a.sessions))
                     for a in FixedThresholdMonitor(0.7, 15, n).run(run.scored)]
    out["global mean/60 min"] = [Found(a.at, None, frozenset(a.sessions)) for a in
                                 GlobalMeanMonitor(global_threshold, GLOBAL_WINDOW, GLOBAL_MIN).run(run.scored)]
    return out


# --- scoring an incident stream -------------------------------------------------------------

@dataclass
class Outcome:
    detected: bool
    delay_sessions: int | None = None
    delay_minutes: float | None = None
    right_cluster: bool | None = None
    precision: float | None = None
    recall: float | None = None
    false_alerts: int = 0  # alerts unrelated to the incident, in the incident stream
    injected_sessions: int = 0
    alerts: int = 0  # alerts about the incident (more than one: it was split across clusters or re-opened)


def evaluate(alerts: list[Found], truth: GroundTruth, records: list[dict], run: Run) -> Outcome:
    by_id = {r["interaction_id"]: r for r in records}
    first_hit: dict[str, datetime] = {}
    for iid in truth.incident_interaction_ids:
        r = by_id[iid]
        at = datetime.fromisoformat(r["timestamp"].replace("Z", "+00:00"))
        first_hit[r["session_id"]] = min(at, first_hit.get(r["session_id"], at))
    clusters = Counter(run.cluster_of[i] for i in truth.incident_interaction_ids)
    main_cluster = clusters.most_common(1)[0][0]
    last_hit = max(first_hit.values())
    end = max(truth.fixed_at or run.end, last_hit) + GRACE
    onset = truth.onset_at
    # About the incident: raised between onset and the end (plus grace) on a cluster holding incident
    # answers. An intent split over several clusters can raise one on each: counted, not false.
    related = [a for a in alerts if onset <= a.at <= end and (
        a.cluster_id is None or a.cluster_id in clusters or any(c in clusters for c in a.clusters))]
    false_alerts = len(alerts) - len(related)
    if not related:
        return Outcome(False, false_alerts=false_alerts, injected_sessions=len(first_hit))
    det = related[0]
    truth_sessions = set(first_hit)
    hit = det.sessions & truth_sessions
    return Outcome(
        detected=True,
        delay_sessions=sum(1 for t in first_hit.values() if t <= det.at),
        delay_minutes=(det.at - onset).total_seconds() / 60,
        right_cluster=None if det.cluster_id is None else det.cluster_id == main_cluster,
        precision=len(hit) / len(det.sessions) if det.sessions else 0.0,
        recall=len(hit) / len(truth_sessions),
        false_alerts=false_alerts,
        injected_sessions=len(first_hit),
        alerts=len(related),
    )


def cluster_days(run: Run) -> int:
    """(cluster, day) pairs with at least one scored answer."""
    return len({(s.cluster_id, (s.at - run.start).days) for s in run.scored})


# --- the whole benchmark --------------------------------------------------------------------

@dataclass
class Results:
    outcomes: dict[tuple[str, str, str], list[Outcome]] = field(default_factory=dict)  # kind, dataset, monitor
    false_alarms: dict[tuple[str, str], int] = field(default_factory=dict)  # (mode, monitor)
    cluster_days: dict[str, int] = field(default_factory=dict)  # per mode
    clean_streams: dict[str, int] = field(default_factory=dict)
    clean_interactions: dict[str, int] = field(default_factory=dict)
    interactions: int = 0
    replay_seconds: float = 0.0
    global_thresholds: dict[tuple[str, str], float] = field(default_factory=dict)  # (dataset, mode)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def clean_streams(plan: Plan, res: Results, dataset: str, mode: str, queries, base: ScenarioConfig,
                  settings: Settings, embedder, work: Path) -> float:
    """Calibrate the global monitor, then count every monitor's alerts on incident-free streams;
    returns the global threshold for this data set and scoring mode."""
    # The global monitor's threshold, set as an operator would: on clean traffic it has seen.
    # (--quick calibrates on its clean stream itself: one stream less, numbers not published.)
    cal_seed = plan.clean_seeds[mode][0] if plan.quick else plan.calibration_seed
    cal = generate(queries, replace(base, seed=cal_seed, days=plan.clean_days if plan.quick else plan.days,
                                    incident=None))
    cal_run = run_stream(cal.records, settings, embedder, work)
    res.global_thresholds[(dataset, mode)] = threshold = calibrate_global_threshold(
        [cal_run.scored], GLOBAL_WINDOW, GLOBAL_MIN)
    log(f"{dataset} {mode}: global threshold {threshold:.4f} ({cal_run.seconds:.0f} s)")
    for seed in plan.clean_seeds[mode]:
        clean = generate(queries, replace(base, seed=seed, days=plan.clean_days, incident=None))
        run = cal_run if plan.quick else run_stream(clean.records, settings, embedder, work)
        res.interactions += len(clean.records)
        res.replay_seconds += run.seconds
        res.clean_interactions[mode] = res.clean_interactions.get(mode, 0) + len(clean.records)
        res.clean_streams[mode] = res.clean_streams.get(mode, 0) + 1
        days = cluster_days(run)
        res.cluster_days[mode] = res.cluster_days.get(mode, 0) + days
        for name, found in alerts_of(run, threshold).items():
            res.false_alarms[(mode, name)] = res.false_alarms.get((mode, name), 0) + len(found)
        for ev in run.opened:
            log(f"  false incident {ev.incident_id} '{ev.cluster_label}': {ev.affected_sessions} sessions, "
                f"{ev.below_baseline_count} below, baseline rate {ev.baseline_below_rate}")
        log(f"{dataset} {mode} clean seed {seed}: {days} cluster-days, faithwatch "
            f"{len(run.opened)} incidents ({run.seconds:.0f} s)")
    embedder.save()
    return threshold


def bench(plan: Plan, embedder) -> Results:
    res = Results()
    with tempfile.TemporaryDirectory(prefix="faithwatch-bench-detection-") as tmp:
        work = Path(tmp)
        settings = load_settings(None, data_dir=work / "data")
        for dataset in plan.datasets:
            queries = DATASETS[dataset]()
            for mode in MODES:
                base = ScenarioConfig(days=plan.days, per_day=plan.per_day, intents=plan.intents,
                                      producer_faithfulness=mode == "producer")
                threshold = clean_streams(plan, res, dataset, mode, queries, base, settings, embedder, work)
                for kind in (k for k in INCIDENT_KINDS if MODE_OF_KIND[k] == mode):
                    for seed in plan.seeds:
                        scenario = generate(queries, replace(base, seed=seed,
                                                             incident=incident_spec(kind, dataset, plan)))
                        run = run_stream(scenario.records, settings, embedder, work)
                        res.interactions += len(scenario.records)
                        res.replay_seconds += run.seconds
                        for name, found in alerts_of(run, threshold).items():
                            o = evaluate(found, scenario.truth, scenario.records, run)
                            res.outcomes.setdefault((kind, dataset, name), []).append(o)
                        fw = res.outcomes[(kind, dataset, "faithwatch")][-1]
                        log(f"{dataset} {kind} seed {seed}: faithwatch "
                            f"{'after ' + str(fw.delay_sessions) + ' sessions' if fw.detected else 'missed'}"
                            f", {fw.false_alerts} unrelated ({run.seconds:.0f} s)")
                embedder.save()
    return res


# --- the report -----------------------------------------------------------------------------

def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(v: float | None, digits: int = 0, missed: bool = False) -> str:
    if v is None:
        return "missed" if missed else "-"
    return f"{v:.{digits}f}"


@dataclass
class Row:
    detected: int
    total: int
    med_sessions: float | None
    worst_sessions: float | None
    med_minutes: float | None
    worst_minutes: float | None
    right: str
    precision: float | None
    recall: float | None
    injected: float | None
    alerts: float | None

    @property
    def any_missed(self) -> bool:
        return self.detected < self.total


def summarise(outcomes: list[Outcome]) -> Row:
    hit = [o for o in outcomes if o.detected]
    named = [o.right_cluster for o in hit if o.right_cluster is not None]
    right = f"{sum(named)}/{len(hit)}" if named else ("n/a (names none)" if hit else "-")
    return Row(
        detected=len(hit), total=len(outcomes),
        med_sessions=_median([o.delay_sessions for o in hit]),
        worst_sessions=max((o.delay_sessions for o in hit), default=None),
        med_minutes=_median([o.delay_minutes for o in hit]),
        worst_minutes=max((o.delay_minutes for o in hit), default=None),
        right=right,
        precision=_median([o.precision for o in hit]),
        recall=_median([o.recall for o in hit]),
        injected=_median([o.injected_sessions for o in outcomes]),
        alerts=statistics.mean([o.alerts for o in hit]) if hit else None,
    )


def rate(n: int, days: int) -> float:
    return 1000 * n / days if days else float("nan")


def report(plan: Plan, res: Results, wall: float) -> str:
    lines = []
    ds = ", ".join(d.upper() for d in plan.datasets)
    lines.append(
        f"Streams: {ds} training queries, {plan.intents} intents, {plan.per_day} interactions a day, "
        f"{plan.days:g} days per incident stream; seeds {', '.join(map(str, plan.seeds))} per kind and data set "
        f"({len(plan.seeds) * len(plan.datasets)} streams per kind), onset on day 2-3. Scores: the "
        "stale-document streams carry no faithfulness, so faithwatch's built-in scorer computes it: a "
        "stale passage is only visible to a scorer that reads `indexed_at`/`doc_updated_at`, which is "
        "the point of that story. The other kinds (a made-up figure, the error any evaluator flags) "
        "carry the producer's own score (right answers 0.86-0.96 by intent with drift, wrong ones "
        "0.3 +- 0.12): faithwatch takes a producer score as given, which tests the detector on "
        "per-intent score distributions that differ and drift, and replays about 4x faster than the "
        "built-in scorer. Every monitor reads faithwatch's own scored output (same scores, same "
        "cluster ids).")
    lines.append("")
    lines.append("Delay is counted from the injected onset to the first alert that names a cluster holding "
                 "incident answers (any alert, for the global monitor), between onset and 6 h after the "
                 "last injected answer. *Sessions* = injected sessions already hit when the alert fired. "
                 "Precision/recall compare the sessions the alert lists (faithwatch: its last event; "
                 "baselines: below-0.7 answers in the alerting scope during the episode) with the "
                 "injected sessions. Medians over the detected streams; *worst* over them too (a miss is "
                 "counted in the detected column). *Alerts per incident*: alerts about the injected incident "
                 "(on any cluster holding its answers); above 1 when the intent was split over several "
                 "clusters or the incident was re-opened. *Unrelated alerts*: on other clusters, or outside "
                 "the incident's time.")
    lines.append("")
    lines.append("| kind | monitor | detected | injected sessions | median delay (sessions) | worst | "
                 "median delay (min) | worst (min) | right cluster | session precision | session recall "
                 "| alerts per incident |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows: dict[tuple[str, str], Row] = {}
    for kind in INCIDENT_KINDS:
        for name in MONITORS:
            outs = [o for d in plan.datasets for o in res.outcomes.get((kind, d, name), [])]
            r = rows[(kind, name)] = summarise(outs)
            lines.append(
                f"| {kind} | {name} | {r.detected}/{r.total} | {_fmt(r.injected)} | "
                f"{_fmt(r.med_sessions, 1, True)} | {_fmt(r.worst_sessions, 0, True)} | "
                f"{_fmt(r.med_minutes, 0, True)} | {_fmt(r.worst_minutes, 0, True)} | {r.right} | "
                f"{_fmt(r.precision, 2)} | {_fmt(r.recall, 2)} | {_fmt(r.alerts, 1)} |")
    lines.append("")
    if len(plan.datasets) > 1:
        lines.append("faithwatch per data set (median delay in sessions / minutes, detected):")
        lines.append("")
        lines.append("| kind | " + " | ".join(plan.datasets) + " |")
        lines.append("|---|" + "---|" * len(plan.datasets))
        for kind in INCIDENT_KINDS:
            cells = []
            for d in plan.datasets:
                r = summarise(res.outcomes.get((kind, d, "faithwatch"), []))
                cells.append(f"{_fmt(r.med_sessions, 1, True)} / {_fmt(r.med_minutes, 0, True)} min, "
                             f"{r.detected}/{r.total}")
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append("False incidents on incident-free streams of the same daily volume, "
                 f"{plan.clean_days:g} days each (a cluster-day = one discovered cluster on one day with at least "
                 "one answer; every monitor is divided by the same count, the global one included). Built-in: "
                 "scored by faithwatch's scorer, the setting of the stale-document rows; producer: the "
                 "stream's own scores, the setting of the other kinds.")
    lines.append("")
    lines.append("| scores | monitor | streams | interactions | false incidents | cluster-days "
                 "| per 1,000 cluster-days | unrelated alerts in incident streams |")
    lines.append("|---|---|---|---|---|---|---|---|")
    fa: dict[tuple[str, str], float] = {}
    for mode in MODES:
        days = res.cluster_days.get(mode, 0)
        for name in MONITORS:
            unrelated = sum(o.false_alerts for k in INCIDENT_KINDS if MODE_OF_KIND[k] == mode
                            for d in plan.datasets for o in res.outcomes.get((k, d, name), []))
            n = res.false_alarms.get((mode, name), 0)
            fa[(mode, name)] = rate(n, days)
            lines.append(f"| {mode} | {name} | {res.clean_streams.get(mode, 0)} | "
                         f"{res.clean_interactions.get(mode, 0):,} | {n} | {days:,} | {fa[(mode, name)]:.2f} | "
                         f"{unrelated} |")
    lines.append("")
    lines.append("Global-monitor thresholds (calibrated per data set and scores on one clean stream, seed "
                 f"{plan.calibration_seed}): "
                 + ", ".join(f"{d} {m} {t:.3f}" for (d, m), t in res.global_thresholds.items()) + ".")
    lines.append("")
    # Targets.
    fw = rows[("stale_document", "faithwatch")]
    lines.append("Targets:")
    lines.append("")
    med = fw.med_sessions
    ok1 = med is not None and med <= 6 and not fw.any_missed
    lines.append(f"- median delay <= 6 failing sessions on the stale-document incident: "
                 f"{_fmt(med, 1, True)} -> **{'met' if ok1 else 'not met'}**")
    # Equal or lower false-alarm rate: compare with the fastest fixed-threshold variant whose
    # false-alarm rate on the clean streams is no higher than faithwatch's.
    def fixed_delay(name: str) -> float | None:
        # A miss counts as every injected session (the incident ran its course unseen).
        return _median([o.delay_sessions if o.detected else o.injected_sessions for d in plan.datasets
                        for o in res.outcomes[("stale_document", d, name)]])

    for name in FIXED:
        fx_med = fixed_delay(name)
        ratio = fx_med / med if med and fx_med is not None else float("nan")
        lines.append(f"- vs {name}: {_fmt(fx_med, 1)} vs {_fmt(med, 1, True)} sessions = {ratio:.1f}x; "
                     f"false incidents {fa[('built-in', name)]:.2f} vs faithwatch "
                     f"{fa[('built-in', 'faithwatch')]:.2f} per 1,000 cluster-days (built-in scores)")
    bfa = {name: fa[("built-in", name)] for name in MONITORS}
    matched = [n for n in FIXED if bfa[n] <= bfa["faithwatch"]]
    if not matched:
        lines.append("- >= 3x faster than the fixed-threshold monitor at an equal or lower false-alarm rate: no "
                     "fixed-threshold variant gets down to faithwatch's false-alarm rate, so there is no matched "
                     "pair; against the variants above, faithwatch has fewer false alarms at the delays shown "
                     "-> **not measurable as stated** (see the ratios above)")
    else:
        best = min(matched, key=lambda n: fixed_delay(n) or float("inf"))
        ratio = (fixed_delay(best) or 0) / med if med else float("nan")
        lines.append(f"- >= 3x faster than the fixed-threshold monitor at an equal or lower false-alarm rate "
                     f"(its fastest variant with at most faithwatch's rate: {best}): {ratio:.1f}x -> "
                     f"**{'met' if ratio >= 3 else 'not met'}**")
    for mode in MODES:
        n, days = res.false_alarms.get((mode, "faithwatch"), 0), res.cluster_days.get(mode, 0)
        ok3 = fa[(mode, "faithwatch")] <= 1.0
        lines.append(f"- <= 1 false incident per 1,000 cluster-days ({mode} scores): {fa[(mode, 'faithwatch')]:.2f} "
                     f"({n} in {days:,}) -> **{'met' if ok3 else 'not met'}**"
                     + ("" if days >= 3000 else f" (only {days:,} cluster-days: too few to resolve 1 per 1,000)"))
    lines.append("")
    lines.append(f"Cost: {res.interactions:,} interactions replayed in {res.replay_seconds:.0f} s of replay "
                 f"({res.interactions / max(res.replay_seconds, 1e-9):,.0f}/s with the embedding cache warm "
                 f"after the first streams); whole run {wall / 60:.1f} min.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small BANKING77 stream per kind")
    parser.add_argument("--seeds", type=int, help="seeds per kind and data set (full run: 4)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.seeds:
        plan = replace(plan, seeds=tuple(range(1, args.seeds + 1)))
    embedder = DiskCachedEmbedder("detection")
    t0 = time.perf_counter()
    res = bench(plan, embedder)
    body = report(plan, res, time.perf_counter() - t0)
    command = "python -m benchmarks.bench_detection" + (" --quick" if args.quick else "")
    path = write_fragment("detection", "Detection: faithwatch against fixed-threshold and global monitors",
                          command, body, quick=args.quick)
    print(body)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
