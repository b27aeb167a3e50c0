"""Replay one stream with the code of any faithwatch tree: ``python replay_runner.py STREAM ALERTS SCORED DIR [SEED]``.

Run as a script (not ``-m``) with ``PYTHONPATH=<tree>``, so ``pipelines`` and ``services`` are that
tree's: this is how :mod:`benchmarks.bench_incidents` measures the code before a change next to
the code after it on the same streams. It uses the tree's embedded driver with its default
settings (ONNX backend, built-in scorer) and no store; if that driver's signature differs, it
falls back to the tree's ``faithwatch replay`` command (which also writes an embedded store under
DIR). SEED: a seed file of example queries (the ``seed_file`` setting, ``--seed-file``). Prints one
JSON line: the tree's path, seconds, interactions.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    stream, alerts, scored, work = (Path(a) for a in argv[:4])
    seed = Path(argv[4]) if len(argv) > 4 else None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    import pipelines

    via = "driver"
    try:
        from services.embedded import DeadLetterFile, replay
        from services.settings import load_settings
        from services.wiring import build_pipeline

        settings = load_settings(None, data_dir=work / "data", **({"seed_file": seed} if seed else {}))
        pipeline = build_pipeline(settings)
        stats = replay(pipeline, stream, store=None, dead_letters=DeadLetterFile(work / "dead_letters.jsonl"),
                       alerts_out=alerts, scored_out=scored, batch_size=settings.replay.batch_size,
                       progress=False)
        valid = stats.valid
    except (ImportError, TypeError, AttributeError):
        via = "cli"
        from services.cli import main as cli

        try:
            cli(["replay", str(stream), "--alerts-out", str(alerts), "--scored-out", str(scored),
                 "--data-dir", str(work / "data"), "--no-progress", *(["--seed-file", str(seed)] if seed else [])],
                standalone_mode=False)
        except SystemExit as exc:  # pragma: no cover - the CLI exits 0 on success
            if exc.code:
                raise
        valid = sum(1 for _ in scored.open(encoding="utf-8"))
    print(json.dumps({"code": str(Path(pipelines.__file__).resolve().parents[1]), "via": via,
                      "seconds": round(time.perf_counter() - t0, 2), "interactions": valid}))


if __name__ == "__main__":
    main(sys.argv[1:])
