"""Incidents per injected pattern (issue #10): does one cause open one incident?

Each stream comes from :mod:`pipelines.scenario` (real CLINC150, BANKING77 and HWU64 training
queries, 4 days, 1,500 interactions a day, 30 intents) with one or two injected patterns, and is
replayed through faithwatch in a subprocess (``benchmarks/replay_runner.py``) with
``PYTHONPATH=<tree>``: ``--code`` picks the tree whose pipeline runs (default: this one), so the
same streams and the same counting measure the code before a change and after it. The runner uses
the tree's default settings (ONNX all-MiniLM-L6-v2, faithwatch's built-in scorer unless the
stream carries producer scores).

Counting (every incident event the replay writes, grouped by incident id; an incident's member
clusters and sessions are its last event's, its time its opened event's ``detected_at``):

- an incident is *about* a pattern when it opened between the pattern's onset and 6 h after its
  end (the fix, or its last failing answer) and its sessions overlap the pattern's injected
  sessions or its member clusters hold the pattern's answers; it is attributed to the pattern it
  overlaps most (sessions first, then answers); incidents about no pattern are *false*;
- *incidents per pattern*: how many are attributed to it (1 is the goal; a split intent opens
  one per sub-cluster);
- session recall / precision: the first incident's own final session list against the pattern's
  injected sessions (*recall, all*: the union of all its incidents' sessions);
- extra sessions: the first incident's sessions beyond the injected ones, by where the session's
  first failing answer in the incident's clusters lies (before the onset; while the pattern lasts,
  in its own intents or in others; after its fix): what limits precision;
- delay: injected sessions already hit when the first incident about the pattern opened;
- two-cause streams: *2 separate* when each cause got exactly one incident of its own.

``--seeded``: each replay first fits its clusters on a seed file (``--seed-file``), the data set's
*test* queries of the stream's intents (past traffic the stream never repeats), as the README's
recipe for deployments with past queries.

    python -m benchmarks.bench_incidents                                  # this tree, the "after" column
    python -m benchmarks.bench_incidents --code /work/before --label before   # another tree's code
    python -m benchmarks.bench_incidents --quick                          # two small streams (smoke)
    python -m benchmarks.bench_incidents --seeded --label seeded          # clusters fitted on a seed file

Results of each label go to ``benchmarks/results/incidents/<label>.json``; the fragment
``benchmarks/results/detection_incidents.md`` shows every stored label side by side, and ends with
issue #10's targets for each label but ``before``, met or missed, naming every row that misses.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks import common
from benchmarks.bench_detection import DATASETS, FULL, MODE_OF_KIND, incident_spec
from pipelines.scenario import INCIDENT_KINDS, IncidentSpec, ScenarioConfig, generate, to_jsonl_lines
from services.datasets import load_intents

HERE = Path(__file__).resolve().parent
TREE = HERE.parent
RUNNER = HERE / "replay_runner.py"
GRACE = timedelta(hours=6)
PUBLISHED_SEEDS = (11, 12, 13)  # the lead tunes on seeds 1-2; these are kept aside for the numbers
FRAGMENT = "detection_incidents"
TITLE = "Detection: incidents per injected pattern (issue #10)"


@dataclass(frozen=True)
class Stream:
    """One stream configuration, replayed once per seed."""

    group: str  # split / shared document / two causes / existing kind
    name: str  # what the row says
    dataset: str
    specs: tuple[IncidentSpec, ...]
    producer: bool = False  # the stream carries the producer's scores (else the built-in scorer)
    days: float = 4.0
    per_day: int = 1500
    intents: int = 30


def stale(*intents: str, **kw) -> IncidentSpec:
    return IncidentSpec(intents=intents, **kw)


def made_up(*intents: str, **kw) -> IncidentSpec:
    """Every answer in the intents states a made-up figure (the high-confidence kind)."""
    return IncidentSpec.of("high_confidence", intents=intents, **kw)


# Intents that split over several clusters today: measured with the code before issue #10 (commit
# c5152f4) on a clean 4-day stream, seed 11, by how each intent's queries spread over cluster ids
# (BANKING77 age_limit 52 % / 44 % in two clusters, transfer_timing 65 / 16 / 15 % in three;
# HWU64 calendar_set 36 / 18 / 12 / 9 %, news_query 41 / 14 / 6 %). BANKING77's own intents read
# hand-written passages, so theirs is the made-up-figure kind; HWU64's go stale.
SPLIT_BANKING77 = ("age_limit", "transfer_timing")
SPLIT_HWU64 = ("calendar_set", "news_query")


def streams(quick: bool = False) -> list[Stream]:
    if quick:
        small = {"days": 2.0, "per_day": 700, "intents": 12}
        return [
            Stream("shared document", "stale kb-account-help: bill_balance, reminder", "clinc150",
                   (stale("bill_balance", "reminder", document="kb-account-help", onset_day=1.2, sessions=8),),
                   **small),
            Stream("two causes", "stale bill_balance + stale play_music", "clinc150",
                   (stale("bill_balance", onset_day=1.2, sessions=6), stale("play_music", onset_day=1.3, sessions=6)),
                   **small),
        ]
    out = [
        Stream("split", "made-up figure on weather, 60 sessions, built-in scorer", "clinc150",
               (made_up("weather", sessions=60),)),
        Stream("split", "stale bill_balance", "clinc150", (stale("bill_balance"),)),
        Stream("split", "stale reminder", "clinc150", (stale("reminder"),)),
        *(Stream("split", f"made-up figure on {i}, built-in scorer", "banking77", (made_up(i),))
          for i in SPLIT_BANKING77),
        *(Stream("split", f"stale {i}", "hwu64", (stale(i),)) for i in SPLIT_HWU64),
        Stream("shared document", "stale kb-account-help: bill_balance, reminder, weather", "clinc150",
               (stale("bill_balance", "reminder", "weather", document="kb-account-help"),)),
        Stream("shared document", "stale kb-home-help: alarm_set, weather_query, music_query", "hwu64",
               (stale("alarm_set", "weather_query", "music_query", document="kb-home-help"),)),
        Stream("two causes", "stale bill_balance + stale play_music (onset 2.4 h later)", "clinc150",
               (stale("bill_balance"), stale("play_music", onset_day=2.4))),
        Stream("two causes", "stale takeaway_order + stale weather_query (onset 2.4 h later)", "hwu64",
               (stale("takeaway_order"), stale("weather_query", onset_day=2.4))),
    ]
    for kind in INCIDENT_KINDS:
        for dataset in FULL.datasets:
            out.append(Stream("existing kind", kind, dataset, (incident_spec(kind, dataset, FULL),),
                              producer=MODE_OF_KIND[kind] == "producer"))
    return out


# --- one replay -----------------------------------------------------------------------------

def seed_queries(dataset: str, intents: set[str]) -> list[str]:
    """The seed of a ``--seeded`` replay: the data set's test queries of ``intents`` (the stream is
    built from training queries, so none of these is in it)."""
    test = load_intents(dataset, "test")
    return [q for intent in sorted(intents) for q in test[intent]]


def replay_with(code: Path, records: list[dict], work: Path,
                seed: Sequence[str] = ()) -> tuple[list[dict], dict[str, str], dict, frozenset[str]]:
    """Replay ``records`` with the pipeline of ``code`` (its clusters first fitted on ``seed``, if
    any); returns (events, cluster of each interaction, the runner's report, the below-baseline
    answers)."""
    work.mkdir(parents=True, exist_ok=True)
    stream, alerts, scored = work / "stream.jsonl", work / "alerts.jsonl", work / "scored.jsonl"
    with stream.open("w", encoding="utf-8") as fh:
        fh.writelines(to_jsonl_lines(records))
    seed_file = []
    if seed:
        (work / "seed.txt").write_text("".join(f"{q}\n" for q in seed), encoding="utf-8")
        seed_file = [str(work / "seed.txt")]
    env = {**os.environ, "PYTHONPATH": str(code), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(RUNNER), str(stream), str(alerts), str(scored), str(work / "run"),
                           *seed_file], env=env, cwd=work, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"replay with {code} failed:\n{done.stderr[-3000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(report["code"]).resolve() != code.resolve():
        raise RuntimeError(f"the replay ran {report['code']}, not {code}")
    events = [json.loads(line) for line in alerts.open(encoding="utf-8")] if alerts.exists() else []
    cluster_of, failing = {}, set()
    with scored.open(encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            cluster_of[r["interaction_id"]] = r["cluster_id"]
            if r.get("below_baseline"):
                failing.add(r["interaction_id"])
    return events, cluster_of, report, frozenset(failing)


# --- counting -------------------------------------------------------------------------------

def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Incident:
    incident_id: str
    opened_at: datetime
    clusters: frozenset[str]
    sessions: frozenset[str]
    reopened: int = 0  # times an event said open again after one said resolved (each pages again)


def incidents_of(events: list[dict]) -> list[Incident]:
    """Each incident with its last event's clusters and sessions, by opening time."""
    by_id: dict[str, list[dict]] = {}
    for ev in events:
        by_id.setdefault(ev["incident_id"], []).append(ev)
    out = []
    for iid, evs in by_id.items():
        evs.sort(key=lambda e: e["sequence"])
        last = evs[-1]
        opened = next((e for e in evs if e["event"] == "opened"), evs[0])
        clusters = tuple(last.get("clusters") or ()) or (last["cluster_id"],)
        reopened = sum(1 for a, b in itertools.pairwise(evs)
                       if a.get("status") == "resolved" and b.get("status") == "open")
        out.append(Incident(iid, ts(opened["detected_at"]), frozenset(clusters), frozenset(last["session_ids"]),
                            reopened))
    return sorted(out, key=lambda i: (i.opened_at, i.incident_id))


@dataclass
class PatternOutcome:
    incidents: int
    clusters_hit: int  # clusters holding the pattern's answers
    injected_sessions: int
    delay_sessions: int | None = None
    recall: float | None = None
    precision: float | None = None
    recall_all: float | None = None
    # The first incident's sessions beyond the injected ones, by where their first failing answer
    # in its clusters lies (see EXTRA_KINDS; None: not measured, an older run)
    extras: dict[str, int] | None = None
    # Times the first incident re-opened after it resolved: each is a page again for one cause
    # (None: not measured, an older run)
    reopened: int | None = None


# Where an incident's extra session comes from: before the pattern's onset; while it lasts, in the
# pattern's own intents (their background noise: no session list can tell it from the pattern)
# or in other intents sharing its clusters; after its fix.
EXTRA_KINDS = ("before", "during, its intents", "during, other intents", "after")


@dataclass
class StreamOutcome:
    patterns: list[PatternOutcome]
    false_incidents: int
    separate: bool | None  # two-cause streams: each cause got exactly one incident of its own
    seconds: float = 0.0
    interactions: int = 0


def evaluate(truth, records: list[dict], events: list[dict], cluster_of: dict[str, str],
             failing: frozenset[str] | None = None, intent_of: dict[str, str] | None = None) -> StreamOutcome:
    """``failing`` (the below-baseline answers) and ``intent_of`` (each answer's intent) add where
    the extra sessions come from."""
    at = {r["interaction_id"]: (ts(r["timestamp"]), r["session_id"]) for r in records}
    stream_end = max(t for t, _ in at.values())
    pats = []
    for p in truth.patterns:
        first_hit: dict[str, datetime] = {}
        for iid in p.interaction_ids:
            t, s = at[iid]
            first_hit[s] = min(t, first_hit.get(s, t))
        answers = Counter(cluster_of[i] for i in p.interaction_ids if i in cluster_of)
        end = max(p.fixed_at or stream_end, max(first_hit.values())) + GRACE
        pats.append((p, first_hit, answers, end))
    incidents = incidents_of(events)
    attributed: dict[int, list[Incident]] = {k: [] for k in range(len(pats))}
    false = 0
    for inc in incidents:
        best, best_key = None, (0, 0)
        for k, (p, _hits, answers, end) in enumerate(pats):
            if not p.onset_at <= inc.opened_at <= end:
                continue
            key = (len(inc.sessions & p.session_ids), sum(answers[c] for c in inc.clusters))
            if key > best_key:
                best, best_key = k, key
        if best is None:
            false += 1
        else:
            attributed[best].append(inc)
    by_session: dict[str, list[str]] = {}
    for r in records:
        by_session.setdefault(r["session_id"], []).append(r["interaction_id"])

    def extras(p, inc: Incident) -> dict[str, int]:
        kinds = Counter({kind: 0 for kind in EXTRA_KINDS})
        for s in inc.sessions - p.session_ids:
            ids = by_session.get(s, [])
            shown = [i for i in ids if i in failing] or ids  # (failing is not None here)
            inside = [i for i in shown if cluster_of.get(i) in inc.clusters] or shown
            if not inside:
                continue
            first = min(inside, key=lambda i: at[i][0])
            t = at[first][0]
            if t < p.onset_at:
                kinds["before"] += 1
            elif t > (p.fixed_at or stream_end):
                kinds["after"] += 1
            elif intent_of.get(first) in p.intents:
                kinds["during, its intents"] += 1
            else:
                kinds["during, other intents"] += 1
        return dict(kinds)

    outs = []
    for k, (p, first_hit, answers, _end) in enumerate(pats):
        about = attributed[k]
        o = PatternOutcome(incidents=len(about), clusters_hit=len(answers), injected_sessions=len(first_hit))
        if about:
            first = about[0]
            truth_sessions = set(first_hit)
            o.delay_sessions = sum(1 for t in first_hit.values() if t <= first.opened_at)
            o.recall = len(first.sessions & truth_sessions) / len(truth_sessions)
            o.precision = len(first.sessions & truth_sessions) / len(first.sessions) if first.sessions else 0.0
            o.recall_all = len(frozenset().union(*(i.sessions for i in about)) & truth_sessions) / len(truth_sessions)
            o.reopened = first.reopened
            if failing is not None and intent_of is not None:
                o.extras = extras(p, first)
        outs.append(o)
    separate = None
    if len(pats) == 2:
        separate = all(o.incidents == 1 for o in outs)
    return StreamOutcome(outs, false, separate)


# --- the run --------------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(code: Path, stream_list: list[Stream], seeds: Sequence[int],
        saved=lambda rows: None, done: dict[str, list[dict]] | None = None,
        seeded: bool = False) -> dict[str, list[dict]]:
    """Every stream once per seed; returns, per row key, the outcomes as dicts (``saved`` gets
    them after each stream configuration, so a long run that stops keeps what it measured; rows
    already in ``done`` with every seed are kept, not re-run; ``seeded``: see the module's doc)."""
    rows: dict[str, list[dict]] = dict(done or {})
    loaded: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="faithwatch-bench-incidents-") as tmp:
        for st in stream_list:
            queries = loaded.setdefault(st.dataset, DATASETS[st.dataset]())
            intents = {q: intent for intent, qs in queries.items() for q in qs}  # (a query two share: either)
            key = json.dumps([st.group, st.name, st.dataset])
            if len(rows.get(key, ())) == len(seeds):
                continue
            rows[key] = []
            for seed in seeds:
                config = ScenarioConfig(seed=seed, days=st.days, per_day=st.per_day, intents=st.intents,
                                        incident=st.specs[0], incidents=st.specs[1:],
                                        producer_faithfulness=st.producer)
                scenario = generate(queries, config)
                intent_of = {r["interaction_id"]: intent for r in scenario.records
                             if (intent := intents.get(r["query"])) is not None}
                seed_list = seed_queries(st.dataset, set(intent_of.values())) if seeded else ()
                t0 = time.perf_counter()
                events, cluster_of, _, failing = replay_with(code, scenario.records, Path(tmp) / "run", seed_list)
                out = evaluate(scenario.truth, scenario.records, events, cluster_of, failing, intent_of)
                out.seconds, out.interactions = time.perf_counter() - t0, len(scenario.records)
                rows.setdefault(key, []).append(asdict(out))
                log(f"{st.dataset} {st.name} seed {seed}: incidents per pattern "
                    f"{[p.incidents for p in out.patterns]}, clusters hit {[p.clusters_hit for p in out.patterns]}, "
                    f"{out.false_incidents} false ({out.seconds:.0f} s)")
            saved(rows)
    return rows


def code_commit(code: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        # What other benchmarks write into that tree (its results) is not its code.
        dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!benchmarks/results"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"
    return head + (" + uncommitted changes" if dirty else "")


# --- the report -----------------------------------------------------------------------------

def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _f(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def _patterns(outs: list[dict]) -> list[dict]:
    """Every pattern outcome of a row's streams."""
    return [p for o in outs for p in o["patterns"]]


def summary_cells(outs: list[dict]) -> dict[str, str]:
    pats = _patterns(outs)
    detected = [p for p in pats if p["incidents"]]
    per = [p["incidents"] for p in pats]
    seps = [o["separate"] for o in outs if o["separate"] is not None]
    return {
        "streams": str(len(outs)),
        "patterns detected": f"{len(detected)}/{len(pats)}",
        "clusters hit (median)": _f(_median([p["clusters_hit"] for p in pats]), 0),
        "incidents per pattern (mean)": _f(statistics.mean(per) if per else None, 1),
        "exactly 1": f"{sum(1 for n in per if n == 1)}/{len(per)}",
        "max": str(max(per) if per else "-"),
        "session recall": _f(_median([p["recall"] for p in pats])),
        "session precision": _f(_median([p["precision"] for p in pats])),
        "recall, all its incidents": _f(_median([p["recall_all"] for p in pats])),
        "median delay (sessions)": _f(_median([p["delay_sessions"] for p in pats]), 1),
        "false incidents": str(sum(o["false_incidents"] for o in outs)),
        "2 separate": f"{sum(seps)}/{len(seps)}" if seps else "n/a",
    }


COLUMNS = ("streams", "patterns detected", "clusters hit (median)", "incidents per pattern (mean)", "exactly 1",
           "max", "session recall", "session precision", "recall, all its incidents", "median delay (sessions)",
           "false incidents", "2 separate")


GROUPS = ("split", "shared document", "two causes", "existing kind")


def _stream_rank(key: str) -> int:
    """Rows in the order :func:`streams` lists them (rows of streams no longer listed last)."""
    names = [json.dumps([s.group, s.name, s.dataset]) for s in streams()]
    return names.index(key) if key in names else len(names)


def report(runs: dict[str, dict]) -> str:
    """The fragment body: every stored run (label -> its JSON) side by side, row by row."""
    # by date; among runs started the same minute, the untouched fresh column before the new code's
    labels = sorted(runs, key=lambda lb: (lb != "before", runs[lb]["date"], not lb.startswith("fresh-")))
    lines = ["Does one cause open one incident? Streams: real CLINC150, BANKING77 and HWU64 training queries, "
             "4 days, 1,500 interactions a day, 30 intents, one or two injected patterns; each replayed through "
             "the code named in the *code* column (a subprocess with that tree on PYTHONPATH, default settings, "
             "ONNX all-MiniLM-L6-v2; built-in scorer unless the row says producer scores). "
             "*Split*: intents whose answers spread over several clusters today. *Shared document*: one stale "
             "document behind 2-3 unrelated intents (expect 1 incident). *Two causes*: two intents, each "
             "its own stale document, onsets 2.4 h apart (expect 2). *Existing kind*: the detection "
             "benchmark's streams (stale document with the built-in scorer, the others with producer scores). "
             "Seeds 11-13 for every published column (the detection rules were tuned on seeds 1-6 and 21-30, "
             "though several were designed on a published stream, docs/families.md), but the fresh columns, "
             "the first two on the existing kinds only: *fresh-seeds*, seeds 7-9, run once on eb294dd on "
             "streams no rule was tuned or designed on (session 19's wait rule was then designed on its `low_volume` "
             "misses); *fresh-14-16*, seeds 14-16, first run on fc0f4ec, whose one split (CLINC150 `spike` "
             "seed 16, two incidents) led to the cause's tie-break; its other misses (a false incident, "
             "a re-opened one, two `low_volume` streams' recall) led to session 20's rules, on which the "
             "column was re-run; *fresh-17-19*, seeds 17-19, every group, first run on 8277ee3, whose "
             "three splits (a second incident opened by the fallback help page's test, on sessions an "
             "incident already had) led to session 21's sessions join, on which the column was re-run "
             "(docs/families.md, \"Measured\"); *fresh-20-31-32*, seeds 20, 31 and 32, every group, run "
             "once on 011a417 (that rule included): nothing was tuned or designed on them; *fresh-10-33-34*, "
             "seeds 10, 33 and 34, every group, run once on 74a98f7 (the detection code of 0e55942), likewise "
             "untouched (its one split then led to session 23's one-day rejoin window); *fresh-35-36-37*, "
             "seeds 35, 36 and 37, every group, run once on 505a251 (that window included), untouched; "
             "*fresh-38-39-40*, seeds 38, 39 and 40, every group, run once on 5ce3690 (the detection code of "
             "505a251), untouched (its HWU64 `spike` seed 40 then led to session 24's rule for a document's "
             "readers in other clusters); *fresh-41-42-43*, seeds 41, 42 and 43, every group, run once on "
             "ad2403a (the detection code of 7661a2e), untouched, beside *aside-41-42-43*, the same streams "
             "run once on 6df71dd (session 25's wait for failures over another document than the cause), and "
             "*open-41-42-43*, the same streams on 38b9e82 (session 26's rule for the evidence a test alarms "
             "on, designed on that column's BANKING77 `low_volume` seed 43); *fresh-44-45-46*, seeds 44, 45 "
             "and 46, every group, run once on 3eb4e75 (the detection code of 4848949), untouched, beside "
             "*open-44-45-46*, the same streams run once on 38b9e82; *seeded-44-45-46*, the same streams "
             "with `--seeded` on 603825f (whose fix to that rule came from 38b9e82's run there: a stale index's "
             "failures held back as another document's, and a second incident). "
             "Their misses are what a new user would meet. *seeded* (seeds 11-13) and "
             "*seeded-38-39-40*: the same code and streams with `--seeded`, each replay's clusters first "
             "fitted on a seed file (the data set's test queries of the stream's 30 intents: 1,200 for "
             "BANKING77, 900 for CLINC150, about 500 for HWU64), the README's recipe when past queries exist. "
             "The *weather* stream hits 60 sessions (a popular intent hit for longer: its city sub-clusters "
             "all see failing answers); the issue's 11 incidents came from a run we did not reproduce exactly.",
             "",
             "An incident is about a pattern when it opened between the pattern's onset and 6 h after its end "
             "and its final sessions overlap the injected ones or its final member clusters hold the "
             "pattern's answers (attributed to the pattern it overlaps most); *false*: about none. "
             "*Clusters hit*: clusters holding the pattern's answers. Recall/precision: the first incident's "
             "own final session list against the injected sessions; *recall, all*: the union over all the "
             "pattern's incidents. Delay: injected sessions hit before the first incident opened (medians "
             "over detected patterns). *2 separate*: each cause got exactly one incident of its own.",
             "", "Runs:", ""]
    for lb in labels:
        r = runs[lb]
        lines.append(f"- **{lb}**: code {r['code']} (commit {r['commit']}), seeds {', '.join(map(str, r['seeds']))}; "
                     f"machine {r['machine']}; run {r['date']}, {r['seconds'] / 60:.0f} min; command "
                     f"`{r['command']}`")
    lines += ["", "| group | stream | data set | code | " + " | ".join(COLUMNS) + " |",
              "|" + "---|" * (4 + len(COLUMNS))]
    keys: list[str] = []
    for lb in labels:
        keys += [k for k in runs[lb]["rows"] if k not in keys]
    order = {g: n for n, g in enumerate(GROUPS)}
    keys.sort(key=lambda k: (order.get(json.loads(k)[0], len(order)), _stream_rank(k)))
    for key in keys:
        group, name, dataset = json.loads(key)
        for lb in labels:
            outs = runs[lb]["rows"].get(key)
            if not outs:
                continue
            cells = summary_cells(outs)
            code = f"{lb} ({runs[lb]['commit']})"
            lines.append(f"| {group} | {name} | {dataset} | {code} | " + " | ".join(cells[c] for c in COLUMNS) + " |")
    lines.append("")
    for lb in labels:
        allouts = [o for outs in runs[lb]["rows"].values() for o in outs]
        cells = summary_cells(allouts)
        new = [o for k, outs in runs[lb]["rows"].items() if json.loads(k)[0] != "existing kind" for o in outs]
        c2 = summary_cells(new) if new else None
        lines.append(f"- {lb}: exactly 1 incident for {cells['exactly 1']} patterns over all streams"
                     + (f" ({c2['exactly 1']} on the split / shared-document / two-cause streams, "
                        f"two causes kept apart {c2['2 separate']})" if c2 else "")
                     + f"; {cells['false incidents']} false incidents.")
        measured = [p for p in _patterns(allouts) if p.get("reopened") is not None]
        if measured:
            again = [p for p in measured if p["reopened"]]
            lines.append(f"- {lb}: first incident re-opened after it resolved (a page again for one cause): "
                         f"{len(again)} of {len(measured)} patterns.")
    for lb in labels:
        if lb != "before":
            lines += ["", f"Issue #10's targets, {lb} ({runs[lb]['commit']}):", "", *targets(runs, lb)]
            lines += extras_table(runs[lb], lb)
    return "\n".join(lines)


def extras_table(run: dict, label: str) -> list[str]:
    """Where the first incidents' extra sessions come from, per row of ``run`` that has any
    (nothing for a run measured before this was counted)."""
    rows = []
    for key, outs in run["rows"].items():
        pats = [p for p in _patterns(outs) if p.get("extras") is not None]
        total = Counter()
        for p in pats:
            total.update(p["extras"])
        if pats and sum(total.values()):
            rows.append((key, total))
    if not rows:
        return []
    rows.sort(key=lambda kv: _stream_rank(kv[0]))
    out = ["", f"Where the first incident's sessions beyond the injected ones come from, {label} (every stream "
           "of the row; the session's first failing answer in the incident's clusters: before the pattern's "
           "onset, while it lasts in its own intents (their background noise, which no session list can tell "
           "from the pattern's answers) or in other intents, after its fix):", "",
           "| group | stream | data set | extra sessions | " + " | ".join(EXTRA_KINDS) + " |",
           "|" + "---|" * (4 + len(EXTRA_KINDS))]
    for key, total in rows:
        group, name, dataset = json.loads(key)
        out.append(f"| {group} | {name} | {dataset} | {sum(total.values())} | "
                   + " | ".join(str(total[k]) for k in EXTRA_KINDS) + " |")
    every = Counter()
    for _, total in rows:
        every.update(total)
    out.append(f"| all | | | {sum(every.values())} | " + " | ".join(str(every[k]) for k in EXTRA_KINDS) + " |")
    return out


RECALL_TARGET = PRECISION_TARGET = 0.9  # per row: the first incident's own final session list
STALE_DELAY_TARGET = 4.0  # median failing sessions before the stale-document incident opens


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def targets(runs: dict[str, dict], label: str) -> list[str]:
    """Issue #10's targets against the run ``label``, not ``before`` (compared with ``before`` where one is stored):
    every row that misses is named, so a miss shows in the table's own words."""
    rows = runs[label]["rows"]
    per = [p["incidents"] for outs in rows.values() for p in _patterns(outs)]
    one = sum(1 for n in per if n == 1)
    out = [f"- exactly 1 incident per pattern in >= 95 % of patterns: {one}/{len(per)} "
           f"({100 * one / max(len(per), 1):.0f} %) -> {_verdict(one >= 0.95 * len(per))}",
           f"- never more than 2 incidents for a pattern: max {max(per, default=0)} -> "
           f"{_verdict(max(per, default=0) <= 2)}"]

    def row_name(key: str) -> str:
        group, name, dataset = json.loads(key)
        return f"{group} {name} ({dataset})"

    for what, target in (("recall", RECALL_TARGET), ("precision", PRECISION_TARGET)):
        short = [(key, _median([p[what] for p in _patterns(outs)])) for key, outs in rows.items()]
        short = [(key, v) for key, v in short if v is not None and v < target]
        out.append(f"- session {what} >= {target} on every row (row medians): "
                   + ("; ".join(f"{row_name(k)} {v:.2f}" for k, v in short) + " below" if short else "all rows")
                   + f" -> {_verdict(not short)}")
    undetected = [(key, sum(1 for p in _patterns(outs) if not p["incidents"]), len(_patterns(outs)))
                  for key, outs in rows.items()]
    undetected = [(k, n, m) for k, n, m in undetected if n]
    out.append("- every pattern found: " + ("; ".join(f"{row_name(k)} {m - n}/{m}" for k, n, m in undetected)
                                             if undetected else "all") + f" -> {_verdict(not undetected)}")
    stale = [p["delay_sessions"] for key, outs in rows.items()
             if json.loads(key)[:2] == ["existing kind", "stale_document"] for p in _patterns(outs) if p["incidents"]]
    if stale:
        med = statistics.median(stale)
        out.append(f"- stale-document median delay <= {STALE_DELAY_TARGET:.0f} failing sessions: {med:.1f} -> "
                   f"{_verdict(med <= STALE_DELAY_TARGET)}")
    seeds, before_seeds = runs[label].get("seeds"), runs.get("before", {}).get("seeds")
    if "before" in runs and seeds != before_seeds:  # other streams: a delay there says nothing of a change
        out.append(f"- median delay no worse than before: not compared (seeds {', '.join(map(str, seeds or []))}"
                   f" here, {', '.join(map(str, before_seeds or []))} there)")
    elif "before" in runs:
        worse = []
        for key, outs in rows.items():
            old = runs["before"]["rows"].get(key)
            now = _median([p["delay_sessions"] for p in _patterns(outs)])
            then = _median([p["delay_sessions"] for p in _patterns(old or [])])
            if now is not None and then is not None and now > then:
                worse.append(f"{row_name(key)} {then:.1f} -> {now:.1f}")
        out.append("- median delay no worse than before on any row: " + ("; ".join(worse) if worse else "none worse")
                   + f" -> {_verdict(not worse)}")
    seps = [o["separate"] for outs in rows.values() for o in outs if o["separate"] is not None]
    if seps:
        out.append(f"- two causes kept apart: {sum(seps)}/{len(seps)} -> {_verdict(all(seps))}")
    false = sum(o["false_incidents"] for outs in rows.values() for o in outs)
    out.append(f"- false incidents on these pattern streams: {false} (the clean streams' rate per 1,000 "
               "cluster-days is bench_detection's)")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=TREE, help="the faithwatch tree whose pipeline replays")
    parser.add_argument("--label", default="after", help="the column's name (results/incidents/LABEL.json)")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default {' '.join(map(str, PUBLISHED_SEEDS))}")
    parser.add_argument("--quick", action="store_true", help="two small CLINC150 streams, one seed")
    parser.add_argument("--only", help="run only the streams whose group or name contains this")
    parser.add_argument("--groups", help="comma-separated groups to run (split, shared document, two causes, "
                        "existing kind); default all")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows LABEL's earlier (or interrupted) run measured with these seeds")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: rebuild the fragment from the stored runs")
    parser.add_argument("--seeded", action="store_true", help="fit each replay's clusters on a seed file first: "
                        "the data set's test queries of the stream's intents")
    parser.add_argument("--results", type=Path, help="where incidents/LABEL.json and the fragment go "
                        "(default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.results:
        common.RESULTS = args.results
    code = args.code.resolve()
    seeds = tuple(args.seeds or ((11,) if args.quick else PUBLISHED_SEEDS))
    groups = {g.strip() for g in args.groups.split(",")} if args.groups else None
    chosen = [s for s in streams(args.quick) if (not args.only or args.only in s.group or args.only in s.name)
              and (groups is None or s.group in groups)]
    if args.report_only:
        write_report(args.quick)
        return
    machine = common.machine()
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    folder = (common.RESULTS / "quick" if args.quick else common.RESULTS) / "incidents"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{args.label}.partial.json"
    done: dict[str, list[dict]] = {}
    if args.resume:
        final = folder / f"{args.label}.json"
        if final.is_file() and json.loads(final.read_text(encoding="utf-8"))["seeds"] == list(seeds):
            done.update(json.loads(final.read_text(encoding="utf-8"))["rows"])
        if partial.is_file():
            done.update(json.loads(partial.read_text(encoding="utf-8")))
    rows = run(code, chosen, seeds, lambda rows: partial.write_text(json.dumps(rows, indent=1) + "\n",
                                                                     encoding="utf-8"), done, args.seeded)
    partial.unlink(missing_ok=True)
    command = " ".join(["python -m benchmarks.bench_incidents", *(["--quick"] if args.quick else []),
                        *([f"--code {args.code}"] if code != TREE else []),
                        *([f"--label {args.label}"] if args.label != "after" else []),
                        *([f"--seeds {' '.join(map(str, args.seeds))}"] if args.seeds else []),
                        *([f"--only '{args.only}'"] if args.only else []),
                        *([f"--groups '{args.groups}'"] if args.groups else []),
                        *(["--seeded"] if args.seeded else [])])
    result = {"label": args.label, "code": str(code), "commit": code_commit(code), "seeds": list(seeds),
              "machine": machine, "date": started.strftime("%Y-%m-%d %H:%M UTC"),
              "seconds": time.perf_counter() - t0, "command": command, "rows": rows}
    (folder / f"{args.label}.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    write_report(args.quick)


def write_report(quick: bool) -> None:
    folder = (common.RESULTS / "quick" if quick else common.RESULTS) / "incidents"
    runs = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))
            if not p.name.endswith(".partial.json")}
    body = report(runs)
    path = common.write_fragment(FRAGMENT, TITLE, "python -m benchmarks.bench_incidents --code /work/before "
                                 "--label before; python -m benchmarks.bench_incidents", body, quick=quick)
    print(body)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
