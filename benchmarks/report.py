"""Assemble BENCHMARKS.md from the fragments in benchmarks/results/ (sorted by name)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.common import RESULTS

HEADER = """# Benchmarks

Every table below was produced by the command shown above it, on the machine and date shown.
`make bench` runs them all and rebuilds this file; each script can also be run alone.
Targets come from the project's issues; where one is missed, the section says so and why.
"""


def main() -> None:
    parts = [HEADER]
    for f in sorted(RESULTS.glob("*.md")):
        parts.append(f.read_text(encoding="utf-8").strip())
    out = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
    out.write_text("\n\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {out} from {len(parts) - 1} fragments")


if __name__ == "__main__":
    main()
