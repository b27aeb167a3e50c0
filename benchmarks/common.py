"""What every benchmark shares: the machine description and the result fragment format."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import psutil

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = psutil.virtual_memory().total / 2**30
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {psutil.cpu_count(logical=True)} cores, {mem:.0f} GiB RAM, "
            f"{platform.system()} {platform.release()}, Python {sys.version.split()[0]}, "
            f"load average {load:.2f} at start")


def write_fragment(name: str, title: str, command: str, body: str, quick: bool = False) -> Path:
    """Write ``benchmarks/results/NAME.md``: title, command, machine, date, then ``body``.

    A ``quick`` (smoke) run writes ``benchmarks/results/quick/NAME.md`` instead (not in git, not in
    BENCHMARKS.md), so trying a benchmark never overwrites the published numbers.
    """
    folder = RESULTS / "quick" if quick else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    path.write_text(f"## {title}\n\n`{command}`\n\nMachine: {machine()}. Run: {now}.\n\n{body.strip()}\n",
                    encoding="utf-8")
    return path
