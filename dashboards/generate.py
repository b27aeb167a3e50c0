"""Render the dashboards to JSON, deterministically (sorted keys, two-space indent), into
``dashboards/json/NAME.json``, the files Grafana's provisioning reads (see
``dashboards/provisioning/dashboards/faithwatch.yaml``)::

    python -m dashboards              # writes dashboards/json/*.json
    python -m dashboards --check      # exit 1 if a committed file differs
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import ModuleType

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import cluster, incident, overview

OUT_DIR = Path(__file__).resolve().parent / "json"
MODULES: dict[str, ModuleType] = {"overview": overview, "cluster": cluster, "incident": incident}


def dashboard_json(module: ModuleType) -> dict:
    """The dashboard as Grafana's JSON model, annotation queries included."""
    model = json.loads(JSONEncoder(sort_keys=True).encode(module.build().build()))
    targets = module.annotations()
    for annotation in model.get("annotations", {}).get("list", []):
        if annotation.get("name") in targets:
            annotation["target"] = targets[annotation["name"]].to_json()
    return model


def dashboards() -> dict[str, dict]:
    """File name -> dashboard model, for every dashboard."""
    return {f"{name}.json": dashboard_json(module) for name, module in MODULES.items()}


def render(model: dict) -> str:
    return json.dumps(model, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in dashboards().items():
        path = out_dir / name
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written


def stale(out_dir: Path = OUT_DIR) -> list[str]:
    """Names of the files in ``out_dir`` that differ from what the code generates."""
    return [name for name, model in dashboards().items()
            if not (out_dir / name).is_file() or (out_dir / name).read_text(encoding="utf-8") != render(model)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = parser.parse_args(argv)
    if args.check:
        differ = stale(args.out)
        for name in differ:
            print(f"{args.out / name} is out of date: run python -m dashboards", file=sys.stderr)
        return 1 if differ else 0
    for path in write(args.out):
        print(f"wrote {path}")
    return 0
