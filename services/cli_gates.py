"""``faithwatch gates set|unset|list``: operators' confidence-gate overrides (docs/gates.md).

The CLI writes the store like every other command (``store.backend``: a ClickHouse server while
``faithwatch serve`` runs elsewhere, or the embedded chDB store when no server holds it); a
running API re-reads the overrides within ``GateService.refresh_seconds``. PUT/DELETE
``/v1/gates/{scope}`` do the same through the API.
"""

from __future__ import annotations

import getpass
from datetime import UTC, datetime

import click

from alerts.categories import load_policy
from services import report
from services.cli import _settings, data_dir_option, format_option, main, reading_store
from services.gates import GATE_TABLE_COLUMNS, HISTORY_COLUMNS, gate_table, set_override, unset_override

by_option = click.option("--by", "actor", default=None, help="who makes the change (default: the login name)")


@main.group("gates")
def gates_group() -> None:
    """Confidence gates per cluster or intent family: overrides, and the suggested gates beside them."""


def _who(actor: str | None) -> str:
    return actor or getpass.getuser()


@gates_group.command("set")
@click.argument("scope")
@click.argument("threshold", type=click.FloatRange(0, 1))
@click.option("--reason", required=True, help="why (kept with the change)")
@by_option
@data_dir_option
@click.pass_context
def gates_set(ctx, scope, threshold, reason, actor, data_dir):
    """Set the gate of cluster or family SCOPE (e.g. c003 or f002) to THRESHOLD (a new version)."""
    with reading_store(ctx, data_dir) as store:
        row = set_override(store, scope, threshold, reason, _who(actor), datetime.now(UTC))
    click.echo(f"{scope}: gate {row['threshold']:.2f} (v{row['version']} by {row['actor']}): {row['reason']}")


@gates_group.command("unset")
@click.argument("scope")
@click.option("--reason", required=True, help="why (kept with the change)")
@by_option
@data_dir_option
@click.pass_context
def gates_unset(ctx, scope, reason, actor, data_dir):
    """Remove SCOPE's override: its category's gate applies again."""
    with reading_store(ctx, data_dir) as store:
        row = unset_override(store, scope, reason, _who(actor), datetime.now(UTC))
    click.echo(f"{scope}: override removed (v{row['version']} by {row['actor']}): {row['reason']}")


@gates_group.command("list")
@click.option("--history", is_flag=True, help="every override change with who, when and why")
@format_option
@data_dir_option
@click.pass_context
def gates_list(ctx, history, fmt, data_dir):
    """Per cluster: the active gate and its source, beside the suggested gate of its latest incident
    and its cost (failing answers held back, share of faithful answers also held back)."""
    policy = load_policy(_settings(ctx.find_root(), data_dir=data_dir).categories_file)
    with reading_store(ctx, data_dir) as store:
        rows = store.gate_override_history() if history else gate_table(store, policy)
    click.echo(report.render(rows, HISTORY_COLUMNS if history else GATE_TABLE_COLUMNS, fmt))
