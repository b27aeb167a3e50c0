"""The ordered (sequence) half alone: cluster assignment, families and detection, per interaction.

The sequence half is the one stage that cannot scale out (DESIGN.md, "Distributed shape"), so
its speed is measured apart from embedding and scoring, with real all-MiniLM-L6-v2 vectors (the
hashing embedder makes clustering trivial and flatters it 20x). Each stream is built once from
the three data sets' training queries (:func:`benchmarks.bench_throughput.stream`, producer
scores, one day), embedded once with this tree's default (ONNX fp32) embedder and cached under
``~/.cache/faithwatch/bench_sequence``. Each tree named with ``--code`` then replays the same
prepared batches through ``Pipeline.sequence`` in a process of its own
(:mod:`benchmarks.sequence_runner`), ``--rounds`` times per pass, the trees' passes interleaved
(A B A B ...) so that a change of machine load hits both; the best round counts. Output hashes
(scored rows and incident events) say whether two trees gave the same results. Beside it, in each
tree's first pass: the prepare half of one worker (``Pipeline.prepare`` with the real default
embedder) on ``--prepare`` interactions of the same stream, and with ``--profile`` where the
sequence half's time goes (each stage's CPU, :mod:`benchmarks.stage_clock`, and cProfile's top
functions), in an extra pass that the timed rounds do not include.

    python -m benchmarks.bench_sequence                                   # this tree, the default streams
    python -m benchmarks.bench_sequence --code /tmp/before --code .       # two trees, side by side
    python -m benchmarks.bench_sequence --quick                           # one small stream (smoke)
    python -m benchmarks.bench_sequence --profile                         # and where the time goes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import common

TREE = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "faithwatch" / "bench_sequence"
# (name, interactions, intents, cluster cut): about 100, 1,000 and 4,000 clusters. The tight cut
# (agglomerative distance 0.1, assign 0.8, as in bench_throughput) makes many small clusters: the
# count the ordered stage must carry in a large product, from three data sets' worth of intents.
STREAMS = (("~100 clusters", 5_000, 60, None), ("~1,000 clusters", 10_000, 291, (0.1, 0.8)),
           ("~4,000 clusters", 60_000, 291, (0.1, 0.8)))
QUICK = (("quick", 1_500, 30, None),)


def prepared(name: str, n: int, intents: int) -> Path:
    """The stream's folder (stream.jsonl in event-time order, embeddings.npy), built once."""
    from benchmarks.bench_throughput import queries, stream
    from pipelines.interaction import Interaction
    from services.settings import load_settings
    from services.wiring import build_embedder

    key = hashlib.sha256(f"{n}:{intents}:seed11:v1".encode()).hexdigest()[:12]
    folder = CACHE / key
    if (folder / "embeddings.npy").exists():
        return folder
    lines = stream(queries("train"), n, intents, producer=True)
    order = sorted(range(len(lines)), key=lambda k: Interaction.model_validate_json(lines[k]).timestamp)
    lines = [lines[k] for k in order]
    embedder = build_embedder(load_settings(None))
    vectors = embedder.encode([Interaction.model_validate_json(line).query for line in lines])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "stream.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    np.save(folder / "embeddings.npy", np.asarray(vectors, dtype=np.float32))
    print(f"prepared {name}: {n} interactions, {intents} intents -> {folder}", file=sys.stderr)
    return folder


def run(tree: Path, folder: Path, rounds: int, cut: tuple[float, float] | None, flags: tuple[str, ...] = ()) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    if cut:
        env |= {"FAITHWATCH_CLUSTER__DISTANCE_THRESHOLD": str(cut[0]),
                "FAITHWATCH_CLUSTER__ASSIGN_THRESHOLD": str(cut[1])}
    res = subprocess.run([sys.executable, str(TREE / "benchmarks" / "sequence_runner.py"), str(folder), str(rounds),
                          *flags],
                         env=env, capture_output=True, text=True, check=False, cwd=tree)
    if res.returncode:
        raise SystemExit(f"{tree}: sequence_runner failed\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def commit_of(tree: Path) -> str:
    res = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return (res.stdout.strip() or "?") + ("+changes" if dirty else "")


def report_rows(rows: list[dict]) -> list[str]:
    """The sequence half's table (with the prepare half per worker beside it when measured), then,
    when profiled, each stream's CPU per stage and its top functions."""
    lines = ["| stream | tree | interactions | clusters | families | ms per interaction (best; worst) "
             "| CPU ms per interaction (best) | interactions/s | prepare half, one worker: interactions/s "
             "(CPU ms each) | output hash |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r.get("prepare")
        prep = f"{p['interactions'] / p['seconds']:,.0f} ({1000 * p['cpu_seconds'] / p['interactions']:.2f})" \
            if p else "–"
        lines.append(f"| {r['stream']} | {r['tree']} | {r['interactions']:,} | {r['clusters']:,} | {r['families']:,} | "
                     f"{r['ms']:.3f}; {r['ms_worst']:.3f} | {r['cpu_ms']:.3f} | {r['rate']:,.0f} | {prep} | "
                     f"`{r['digest']}` |")
    profiled = [r for r in rows if r.get("profile")]
    if profiled:
        parts = list(profiled[0]["profile"]["parts"])
        lines += ["", "Where the time goes (one extra pass per stream: each part's own thread CPU, "
                  "`benchmarks/stage_clock.py`, as a share of the pass; then the functions with the most own "
                  "time under cProfile):", "",
                  "| stream | tree | " + " | ".join(parts) + " |", "|---|---|" + "---|" * len(parts)]
        for r in profiled:
            pr = r["profile"]["parts"]
            total = sum(pr.values()) or 1.0
            lines.append(f"| {r['stream']} | {r['tree']} | "
                         + " | ".join(f"{100 * pr.get(k, 0.0) / total:.0f} %" for k in parts) + " |")
        lines.append("")
        for r in profiled:
            top = "; ".join(f"`{f['function']}` {100 * f['share']:.0f} %" for f in r["profile"]["top"])
            lines.append(f"- {r['stream']}, {r['tree']}: {top}")
    return lines


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", type=Path, action="append",
                    help="a faithwatch tree (repeat to compare; default this one)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per pass (best counts)")
    ap.add_argument("--passes", type=int, default=2, help="interleaved passes per tree")
    ap.add_argument("--only", help="run only the streams whose name contains this")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--prepare", type=int, default=2_000, metavar="N",
                    help="also time the prepare half (one worker) on each stream's first N interactions (0: not)")
    ap.add_argument("--profile", action="store_true",
                    help="also give each stream's CPU per stage and the top functions (cProfile), one extra pass")
    args = ap.parse_args(argv)
    trees = [t.resolve() for t in (args.code or [TREE])]
    streams = [s for s in (QUICK if args.quick else STREAMS) if not args.only or args.only in s[0]]
    rows = []
    for name, n, intents, cut in streams:
        folder = prepared(name, n, intents)
        results: dict[Path, list[dict]] = {t: [] for t in trees}
        for k in range(args.passes):
            for t in trees:  # the prepare half and the profile once per tree, in its first pass
                flags = (*(("--prepare", str(args.prepare)) if args.prepare and k == 0 else ()),
                         *(("--profile",) if args.profile and k == 0 else ()))
                results[t].append(run(t, folder, args.rounds, cut, flags))
        for t in trees:
            rs = results[t]
            best = min(s for r in rs for s in r["seconds"])
            worst = max(s for r in rs for s in r["seconds"])
            cpu = min(s for r in rs for s in r["cpu_seconds"])
            r = rs[-1]
            first = rs[0]
            rows.append({"prepare": first.get("prepare"), "profile": first.get("profile"),
                         "stream": name + (f" (cut {cut[0]}/{cut[1]})" if cut else ""),
                         "tree": f"{t.name} ({commit_of(t)})", "interactions": r["interactions"],
                         "clusters": r["clusters"], "families": r["families"],
                         "ms": 1000 * best / r["interactions"], "ms_worst": 1000 * worst / r["interactions"],
                         "cpu_ms": 1000 * cpu / r["interactions"], "rate": r["interactions"] / best,
                         "digest": r["digest"][:12]})
            print(json.dumps(rows[-1]), file=sys.stderr)
    body = "\n".join([
        f"Rounds {args.rounds} per pass, {args.passes} passes per tree, interleaved; batches of 256 "
        "through `Pipeline.sequence` and a final `flush`, timed alone (the embeddings are precomputed with the "
        "real ONNX fp32 all-MiniLM-L6-v2). Producer-scored streams from the three data sets' training queries, "
        "one day, seed 11. Same output hash = same scored rows and incident events.",
        "", *report_rows(rows), ""])
    command = "python -m benchmarks.bench_sequence" + "".join(f" --code {t}" for t in (args.code or [])) + \
        (" --profile" if args.profile else "") + (f" --prepare {args.prepare}" if args.prepare != 2_000 else "")
    return common.write_fragment("sequence", "Throughput: the ordered (sequence) half alone", command, body,
                                 quick=args.quick)


if __name__ == "__main__":
    print(main())
