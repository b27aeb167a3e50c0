"""``faithwatch migrate``, ``faithwatch recipes`` and ``faithwatch store check``: the schema, the analyst
SQL recipes and the rollups' consistency."""

from __future__ import annotations

from pathlib import Path

import click

from pipelines.errors import FaithwatchError
from services import report
from services.cli import _settings, data_dir_option, format_option, main
from services.store import open_store
from services.store.base import recipe_names, recipe_parameters, recipe_sql


@main.command("migrate")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="embedded store location (chdb backend; default .faithwatch)")
@click.pass_context
def migrate_cmd(ctx, data_dir):
    """Apply pending schema migrations, then the retention (store.ttl_days, store.rollup_ttl_days).

    Idempotent: a second run applies nothing and prints "schema is current".
    """
    settings = _settings(ctx, data_dir=data_dir)
    with open_store(settings) as store:
        applied = store.migrate()
        changes = store.apply_ttl(settings.store.ttl_days, settings.store.rollup_ttl_days)
    for name in applied:
        click.echo(f"applied {name}")
    for change in changes:
        click.echo(f"retention {change}")
    if not applied and not changes:
        click.echo("schema is current")


@main.group("recipes")
def recipes_group():
    """Analyst SQL recipes (services/store/recipes/*.sql) with named parameters."""


@recipes_group.command("list")
def recipes_list():
    """Every recipe with its parameters and first comment line."""
    for name in recipe_names():
        sql = recipe_sql(name)
        first = next((line.lstrip("- ").strip() for line in sql.splitlines() if line.startswith("--")), "")
        params = ", ".join(f"{key}:{kind}" for key, kind in recipe_parameters(sql).items())
        click.echo(f"{name}({params})\n    {first}")


@recipes_group.command("run")
@click.argument("name")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="a recipe parameter, as text the engine parses for its type (repeatable)")
@format_option
@data_dir_option
@click.pass_context
def recipes_run(ctx, name, params, fmt, data_dir):
    """Run recipe NAME with its parameters as -p NAME=VALUE.

    e.g. ``recipes run sessions_hit_in_cluster -p cluster_id=c001 -p as_of='2026-11-05 00:00:00'``
    """
    values = {}
    for item in params:
        key, sep, value = item.partition("=")
        if not sep:
            raise FaithwatchError(f"--param {item!r}: use NAME=VALUE")
        values[key] = value
    try:
        sql = recipe_sql(name)
    except ValueError as error:
        raise FaithwatchError(str(error)) from None
    settings = _settings(ctx, data_dir=data_dir)
    with open_store(settings) as store:
        store.migrate()
        try:
            rows = store.run_recipe(name, values)
        except ValueError as error:
            raise FaithwatchError(str(error)) from None
    columns = list(rows[0]) if rows else list(recipe_parameters(sql))
    click.echo(report.render(rows, columns, fmt))


@main.group("store")
def store_group():
    """Check the store's consistency."""


@store_group.command("check")
@click.option("--repair", is_flag=True, help="rebuild the rollups of every day that does not match")
@data_dir_option
@click.pass_context
def store_check(ctx, repair, data_dir):
    """Compare the hour and day rollups with the stored interactions, per cluster and UTC day.

    Exit code 0: they match (or --repair made them match); 1: they do not (the days are listed).
    Run it with writers stopped (docs/storage.md).
    """
    from services.store.consistency import repair_rollups, rollup_drift

    settings = _settings(ctx, data_dir=data_dir)
    with open_store(settings) as store:
        store.migrate()
        drift = rollup_drift(store)
        if drift and repair:
            click.echo(f"repairing {repair_rollups(store, drift)} cluster-days:")
            click.echo(report.table(drift, _DRIFT_COLUMNS))
            drift = rollup_drift(store)
    if not drift:
        click.echo("rollups match interactions")
        return
    click.echo(report.table(drift, _DRIFT_COLUMNS))
    click.echo(f"{len(drift)} cluster-days do not match; `faithwatch store check --repair` rebuilds them", err=True)
    ctx.exit(1)


_DRIFT_COLUMNS = ["cluster_id", "day", "interactions", "hour_rollup", "day_rollup"]
