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


def main(argv: list[str]) -> None:
    folder, rounds = Path(argv[0]), int(argv[1])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import pipelines
    from services.settings import load_settings
    from services.wiring import build_embedder, build_pipeline

    prepared = load_prepared(folder)
    batches = [prepared[k:k + BATCH] for k in range(0, len(prepared), BATCH)]
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
    families = getattr(pipeline, "families", {})
    print(json.dumps({"code": str(Path(pipelines.__file__).resolve().parents[1]), "interactions": len(prepared),
                      "seconds": [round(s, 4) for s in seconds], "cpu_seconds": [round(s, 4) for s in cpu],
                      "clusters": len(pipeline.clusters),
                      "families": len(families), "digest": digest}))


if __name__ == "__main__":
    main(sys.argv[1:])
