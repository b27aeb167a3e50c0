"""Time the ordered (sequence) half of any faithwatch tree: ``python sequence_runner.py PREPARED ROUNDS``.

Run as a script (not ``-m``) with ``PYTHONPATH=<tree>``, so ``pipelines`` and ``services`` are that
tree's: :mod:`benchmarks.bench_sequence` times the code before a change next to the code after it
on the same prepared batches. ``PREPARED`` is a folder that :mod:`benchmarks.bench_sequence` wrote:
``stream.jsonl`` (interactions in event-time order, producer-scored) and ``embeddings.npy`` (their
query vectors from the real model, one row each). Every round builds a fresh pipeline with the
tree's default settings and feeds it the same ``Prepared`` batches of 256 through
``Pipeline.sequence`` and a final ``flush``; only those calls are timed. Prints one JSON line:
seconds per round (wall clock and this process's CPU time, which another process's load
disturbs less), clusters and families at the end, and a hash of the scored rows and incident
events (so two trees that should agree can be compared).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

BATCH = 256


def load_prepared(folder: Path) -> list:
    """The folder's ``Prepared`` records, in stream order: ``stream.jsonl`` and ``embeddings.npy``,
    and ``faithfulness.json`` (``[score, source]`` per line) where the faithfulness was computed,
    else the producer's scores."""
    import numpy as np

    from pipelines.engine import Prepared
    from pipelines.interaction import Interaction

    lines = (folder / "stream.jsonl").read_text(encoding="utf-8").splitlines()
    vectors = np.load(folder / "embeddings.npy")
    interactions = [Interaction.model_validate_json(line) for line in lines]
    scores = folder / "faithfulness.json"
    if scores.exists():
        given = json.loads(scores.read_text(encoding="utf-8"))
        return [Prepared(i, vectors[k], f, src)
                for k, (i, (f, src)) in enumerate(zip(interactions, given, strict=True))]
    return [Prepared(i, vectors[k], i.faithfulness, "producer" if i.faithfulness is not None else "none")
            for k, i in enumerate(interactions)]


def profiled(make_pipeline, batches: list, top: int = 8) -> dict:
    """One more pass (not timed with the rounds) under :class:`StageClock` (each part's exclusive
    thread CPU: clusterer assign / nearest / centroids / pool / refit, families, detector, records)
    and cProfile (the ``top`` functions by their own time), so the stage summary is free of
    cProfile's per-call overhead and the function list says what inside a stage costs. Each on a
    fresh pipeline from ``make_pipeline()``."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # this tree's stage_clock, whatever PYTHONPATH
    from stage_clock import StageClock

    pipeline = make_pipeline()
    clock = StageClock().attach(pipeline)
    t0 = time.thread_time()
    for b in batches:
        pipeline.sequence(b)
    pipeline.flush()
    parts = clock.split(time.thread_time() - t0)
    return {"parts": {k: round(v, 4) for k, v in parts.items()}, "top": top_functions(batches, make_pipeline(), top)}


def top_functions(batches: list, pipeline, top: int) -> list:
    """The ``top`` functions by own time over a fresh run of ``batches`` under cProfile."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    for b in batches:
        pipeline.sequence(b)
    pipeline.flush()
    prof.disable()
    stats = pstats.Stats(prof, stream=io.StringIO())
    # stats: (file, line, name) -> (primitive calls, calls, own time, cumulative time, callers)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]
    total = sum(v[2] for v in stats.stats.values()) or 1.0
    return [{"function": f"{Path(f).name}:{line} {name}", "own_s": round(v[2], 4), "share": round(v[2] / total, 4),
             "calls": v[1]} for (f, line, name), v in rows]


def prepare_half(pipeline, prepared: list, n: int) -> dict:
    """``Pipeline.prepare`` (the real embedder of the settings, with its cache of repeated queries as
    in the product; the streams carry producer scores, so no faithfulness is computed) on ``n``
    interactions of the stream in batches of ``BATCH``, after a warm-up batch (the stream's first,
    not timed): what one prepare worker (one process) does per second."""
    pipeline.prepare([p.interaction for p in prepared[:BATCH]])
    interactions = [p.interaction for p in prepared[BATCH:BATCH + n]]
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(0, len(interactions), BATCH):
        pipeline.prepare(interactions[k:k + BATCH])
    return {"interactions": len(interactions), "seconds": round(time.perf_counter() - t0, 4),
            "cpu_seconds": round(time.process_time() - c0, 4)}


def main(argv: list[str]) -> None:
    """``FOLDER ROUNDS [--profile] [--prepare N]``."""
    folder, rounds = Path(argv[0]), int(argv[1])
    flags = argv[2:]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pipelines
    from services.settings import load_settings
    from services.wiring import build_embedder, build_pipeline

    prepared = load_prepared(folder)
    batches = [prepared[k:k + BATCH] for k in range(0, len(prepared), BATCH)]
    extra = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(None, data_dir=Path(tmp))
        embedder = build_embedder(settings)
        seconds, cpu, digest, pipeline = [], [], None, None
        for _ in range(rounds):
            pipeline = build_pipeline(settings, embedder=embedder)
            outs = []
            t0, c0 = time.perf_counter(), time.process_time()
            for b in batches:
                outs.append(pipeline.sequence(b))
            outs.append(pipeline.flush())
            seconds.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            h = hashlib.sha256()
            for o in outs:
                for s in o.scored:
                    h.update(s.model_dump_json().encode())
                for e in o.events:
                    h.update(e.model_dump_json().encode())
            if digest not in (None, h.hexdigest()):
                raise SystemExit("the same batches gave different outputs in two rounds")
            digest = h.hexdigest()
        if "--profile" in flags:
            extra["profile"] = profiled(lambda: build_pipeline(settings, embedder=embedder), batches)
        if "--prepare" in flags:
            n = int(flags[flags.index("--prepare") + 1])
            extra["prepare"] = prepare_half(build_pipeline(settings, embedder=embedder), prepared, n)
    families = getattr(pipeline, "families", {})
    print(json.dumps({"code": str(Path(pipelines.__file__).resolve().parents[1]), "interactions": len(prepared),
                      "seconds": [round(s, 4) for s in seconds], "cpu_seconds": [round(s, 4) for s in cpu],
                      "clusters": len(pipeline.clusters),
                      "families": len(families), "digest": digest, **extra}))


if __name__ == "__main__":
    main(sys.argv[1:])
