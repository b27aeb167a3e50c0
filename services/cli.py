"""The ``faithwatch`` command line: replay, demo, config, incidents."""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from pipelines.errors import FaithwatchError
from services import report
from services.columns import INCIDENT_COLUMNS, SESSION_COLUMNS, with_member_count
from services.settings import Settings, load_settings
from services.store import open_store


def _settings(ctx: click.Context, **overrides) -> Settings:
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return load_settings(ctx.obj.get("config"), **overrides)


@contextmanager
def reading_store(ctx: click.Context, data_dir: Path | None):
    """The store named by the settings, migrated, for a read command."""
    with open_store(_settings(ctx.find_root(), data_dir=data_dir)) as store:
        store.migrate()
        yield store


class _Main(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FaithwatchError as exc:
            click.echo(f"faithwatch: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Main)
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML or TOML settings file (environment variables FAITHWATCH_* win over it)")
@click.option("-v", "--verbose", is_flag=True, help="log what happens (dead letters included)")
@click.pass_context
def main(ctx: click.Context, config: Path | None, verbose: bool) -> None:
    """faithwatch: one precise alert when one kind of question starts getting wrong answers."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def run_replay(settings: Settings, file: Path, alerts_out: Path | None, scored_out: Path | None,
               progress: bool | None = None):
    """Replay ``file``; with a notify file, deliver its incident events and return only once every
    delivery was sent, refused or given up."""
    from services.embedded import DeadLetterFile, replay
    from services.notify.notifier import Notifier, deliveries_summary
    from services.notify.notify_file import load_notify_file
    from services.wiring import build_pipeline

    if not file.is_file():
        raise FaithwatchError(f"{file}: no such file")
    # Before the model loads: a bad notify file should fail fast.
    notify = load_notify_file(settings.notify_file) if settings.notify_file else None
    pipeline = build_pipeline(settings)
    with open_store(settings) as store:
        store.migrate()
        notifier = Notifier(store, notify, settings.notify).start() if notify else None
        try:
            stats = replay(pipeline, file, store=store,
                           dead_letters=DeadLetterFile(settings.data_dir / "dead_letters.jsonl"),
                           alerts_out=alerts_out, scored_out=scored_out,
                           batch_size=settings.replay.batch_size, progress=progress, notifier=notifier)
            if notifier is not None:
                waiting = notifier.pending()
                if waiting:
                    click.echo(f"faithwatch: waiting for {waiting} alert deliveries (each is given up "
                               f"{settings.notify.give_up_seconds:g} s after it was queued)", err=True)
                notifier.drain()
                click.echo(f"faithwatch: alert deliveries: {deliveries_summary(store, stats.events)}", err=True)
        finally:
            if notifier is not None:
                notifier.close()
    return stats, pipeline


notify_file_option = click.option(
    "--notify-file", type=click.Path(dir_okay=False, path_type=Path),
    help="alert channels and routes (docs/alerts.md; default FAITHWATCH_NOTIFY_FILE)")


@main.command("replay")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--alerts-out", type=click.Path(dir_okay=False, path_type=Path),
              help="write every incident event here, one JSON object per line")
@click.option("--scored-out", type=click.Path(dir_okay=False, path_type=Path),
              help="write every scored interaction here, one JSON object per line")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="embedded store and dead letters (default .faithwatch, or FAITHWATCH_DATA_DIR)")
@click.option("--seed-file", type=click.Path(dir_okay=False, path_type=Path),
              help="example queries (.txt, .jsonl or .csv) to fit the first clusters on")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: on a terminal)")
@notify_file_option
@click.pass_context
def replay_cmd(ctx, file, alerts_out, scored_out, data_dir, seed_file, progress, notify_file):
    """Stream a JSON Lines FILE of interactions through every stage in event-time order.

    With a notify file (--notify-file or FAITHWATCH_NOTIFY_FILE) every incident event is delivered
    to its channels; replay exits once each delivery was sent, refused or given up."""
    settings = _settings(ctx, data_dir=data_dir, seed_file=seed_file, notify_file=notify_file)
    stats, _ = run_replay(settings, file, alerts_out, scored_out, progress)
    click.echo(json.dumps(stats.as_dict(), sort_keys=True))
    for ev in stats.events:
        if ev.event == "opened":
            click.echo(f"incident {ev.incident_id} opened: {ev.summary}")


@main.command("demo")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="where the generated stream, store and outputs go (default .faithwatch)")
@click.option("--seed", default=7, show_default=True)
@click.option("--days", default=4.0, show_default=True)
@click.option("--per-day", default=1500, show_default=True)
@click.option("--progress/--no-progress", default=None)
@notify_file_option
@click.pass_context
def demo_cmd(ctx, data_dir, seed, days, per_day, progress, notify_file):
    """Generate a realistic stream from BANKING77 with the stale-pricing incident and replay it
    (with --notify-file its incident is delivered to those channels)."""
    from pipelines.scenario import ScenarioConfig, generate, to_jsonl_lines
    from services.datasets import load_banking77

    settings = _settings(ctx, data_dir=data_dir, notify_file=notify_file)
    out_dir = settings.data_dir / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    scenario = generate(load_banking77("train"), ScenarioConfig(seed=seed, days=days, per_day=per_day))
    stream = out_dir / "stream.jsonl"
    with stream.open("w", encoding="utf-8") as fh:
        for line in to_jsonl_lines(scenario.records):
            fh.write(line)
    truth = scenario.truth
    click.echo(f"Generated {len(scenario.records)} interactions over {days:g} days from BANKING77 "
               f"queries -> {stream}")
    if truth.onset_at:
        click.echo(f"Injected: from {truth.onset_at:%Y-%m-%d %H:%M} UTC the index serves a stale "
                   f"{truth.stale_doc[0]} {truth.stale_doc[1]}; {len(truth.incident_session_ids)} "
                   f"sessions get the old price at confidence ~0.84 (gate 0.80).")
    click.echo(f"Replaying: faithwatch replay {stream} --alerts-out {out_dir / 'alerts.jsonl'} "
               f"--scored-out {out_dir / 'scored.jsonl'}\n")
    stats, _ = run_replay(settings, stream, out_dir / "alerts.jsonl", out_dir / "scored.jsonl", progress)
    click.echo(json.dumps(stats.as_dict(), sort_keys=True))
    opened = [e for e in stats.events if e.event == "opened"]
    if not opened:
        click.echo("No incident was opened.")
        return
    from alerts.categories import load_policy
    from services.gates import gate_while_open

    policy = load_policy(settings.categories_file)
    for ev in opened:
        click.echo("")
        click.echo(report.incident_text(ev.to_json_dict()))
        if truth.incident_session_ids:
            hit = [s for s in ev.session_ids if s in truth.incident_session_ids]
            click.echo(f"  -> raised after {len(hit)} of the {len(truth.incident_session_ids)} "
                       f"injected sessions had been hit")
        click.echo(gate_while_open(ev.to_json_dict(), policy))
    click.echo("\nIncident timeline:")
    click.echo(report.table([{"event": e.event, "status": e.status, "at": e.event_at.strftime("%Y-%m-%d %H:%M"),
                              "clusters": len(e.clusters), "added": " ".join(e.clusters_added),
                              "failing_answers": e.below_baseline_count, "sessions": e.affected_sessions,
                              "customers": e.affected_customers,
                              "gate": e.suggested_gate.threshold if e.suggested_gate else None}
                             for e in stats.events], ["event", "status", "at", "clusters", "added",
                                                      "failing_answers", "sessions", "customers", "gate"]))
    latest = {e.incident_id: e for e in stats.events}
    with open_store(settings) as store:
        for inc_id, ev in latest.items():
            rows = store.incident_sessions(inc_id)
            click.echo(f"\nAffected sessions of {inc_id} ({ev.status}): {len(rows)} sessions, "
                       f"{ev.affected_customers} customers to contact")
            click.echo(report.table(rows[:10], ["session_id", "customer_id", "first_at",
                                                "below_baseline_count", "worst_faithfulness"]))
            if len(rows) > 10:
                click.echo(f"... and {len(rows) - 10} more")
            if ev.suggested_gate:
                g = ev.suggested_gate
                click.echo(f"Suggested gate for this cluster: {g.threshold:.2f} (now {g.current_gate:.2f}); "
                           f"it holds back {g.failing_held_back} of {g.failing_total} failing answers and "
                           f"{g.faithful_held_back_share:.0%} of the faithful ones.")
            click.echo(f"All of them: faithwatch incidents sessions {inc_id} --format csv "
                       f"--data-dir {settings.data_dir}")
    click.echo(f"\nAlerts: {out_dir / 'alerts.jsonl'}   scored: {out_dir / 'scored.jsonl'}")


@main.group("config")
def config_group():
    """Inspect settings."""


@config_group.command("show")
@click.pass_context
def config_show(ctx):
    """Print the effective settings (secrets masked), and the notify file's channels and routes if one is set."""
    settings = _settings(ctx.find_root())
    shown = settings.masked()
    if settings.notify_file is not None:
        from services.notify.notify_file import load_notify_file

        shown["notify_channels"] = load_notify_file(settings.notify_file).masked()
    click.echo(json.dumps(shown, indent=2, sort_keys=True))


@main.group("incidents")
def incidents_group():
    """Incident history from the store."""


# Shared by every read command (here and in the cli_* modules).
format_option = click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
                             show_default=True)
data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))


@incidents_group.command("list")
@click.option("--status", type=click.Choice(["open", "resolved"]))
@click.option("--cluster", help="incidents with this cluster among their member clusters")
@click.option("--category")
@format_option
@data_dir_option
@click.pass_context
def incidents_list(ctx, status, cluster, category, fmt, data_dir):
    """List incidents, newest first (n_clusters: how many clusters each spans)."""
    with reading_store(ctx, data_dir) as store:
        rows = with_member_count(store.list_incidents(status=status, cluster_id=cluster, category=category))
    click.echo(report.render(rows, INCIDENT_COLUMNS, fmt))


@incidents_group.command("show")
@click.argument("incident_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@data_dir_option
@click.pass_context
def incidents_show(ctx, incident_id, fmt, data_dir):
    """One incident: its latest state (member clusters and cause included) and events, with the
    active gates of its member clusters beside its suggested gate and the command that adopts it."""
    from alerts.categories import load_policy
    from services.gates import incident_gates

    policy = load_policy(_settings(ctx.find_root(), data_dir=data_dir).categories_file)
    with reading_store(ctx, data_dir) as store:
        inc = store.get_incident(incident_id)
        if inc is None:
            raise FaithwatchError(f"no incident {incident_id}")
        inc["gates"] = incident_gates(store, policy, inc)
    with_member_count([inc])
    click.echo(report.as_json(inc) if fmt == "json" else report.incident_text(inc))


@incidents_group.command("sessions")
@click.argument("incident_id")
@format_option
@data_dir_option
@click.pass_context
def incidents_sessions(ctx, incident_id, fmt, data_dir):
    """The blast radius: every session of the incident's session list (the alert's), with its
    below-baseline answers until resolution (in a member cluster from the member's first failing
    answer; a reader of the cause document outside the members too)."""
    with reading_store(ctx, data_dir) as store:
        if store.get_incident(incident_id) is None:
            raise FaithwatchError(f"no incident {incident_id}")
        rows = store.incident_sessions(incident_id)
    click.echo(report.render(rows, SESSION_COLUMNS, fmt))


# Commands that live in their own modules register themselves on ``main`` when imported here,
# one line each (an import of services.cli_<topic> carrying the noqa codes E402, F401, I001).
# -- command modules --
from services import cli_clusters  # noqa: E402,F401,I001
from services import cli_generate  # noqa: E402,F401,I001
from services import cli_serve  # noqa: E402,F401,I001
from services import cli_store  # noqa: E402,F401,I001
from services import cli_kafka  # noqa: E402,F401,I001
from services import cli_alerts  # noqa: E402,F401,I001
from services import cli_dashboards  # noqa: E402,F401,I001
from services import cli_gates  # noqa: E402,F401,I001
# -- end of command modules --

if __name__ == "__main__":
    # Run as ``python -m services.cli`` this file is ``__main__``; the command modules registered
    # on ``services.cli.main``, so run that one.
    from services.cli import main as registered

    registered()
