"""``faithwatch dashboards``: the Grafana dashboards as code (docs/dashboards.md)."""

from __future__ import annotations

from pathlib import Path

import click

from services.cli import main


@main.group("dashboards")
def dashboards_group():
    """The Grafana dashboards (overview, cluster, incident) generated from dashboards/."""


@dashboards_group.command("generate")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="directory for the JSON files (default: dashboards/json, what provisioning reads)")
@click.option("--check", is_flag=True, help="write nothing; exit 1 if a file in --out is out of date")
def dashboards_generate(out: Path | None, check: bool):
    """Write each dashboard's JSON (sorted keys: the same code gives the same bytes)."""
    from dashboards import generate

    out = out or generate.OUT_DIR
    if check:
        differ = generate.stale(out)
        for name in differ:
            click.echo(f"{out / name} is out of date: run faithwatch dashboards generate", err=True)
        raise SystemExit(1 if differ else 0)
    for path in generate.write(out):
        click.echo(f"wrote {path}")
