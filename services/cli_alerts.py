"""``faithwatch alerts``: the delivery outbox, and a test message to one channel."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import httpx

from pipelines.errors import ConfigError
from services import report
from services.cli import _settings, data_dir_option, format_option, main, notify_file_option, reading_store

DELIVERY_COLUMNS = ["incident_id", "sequence", "event", "channel", "channel_type", "status", "attempts",
                    "http_status", "queued_at", "updated_at", "next_attempt_at", "error"]


@main.group("alerts")
def alerts_group():
    """Alert deliveries to the channels of the notify file (docs/alerts.md)."""


@alerts_group.command("deliveries")
@click.option("--status", type=click.Choice(["pending", "sent", "failed", "given_up", "skipped"]))
@click.option("--channel", help="deliveries to this channel of the notify file")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(0))
@format_option
@data_dir_option
@click.pass_context
def alerts_deliveries(ctx, status, channel, limit, fmt, data_dir):
    """One row per (incident event, channel): its status, attempts and last error, latest change first."""
    with reading_store(ctx, data_dir) as store:
        rows = store.list_deliveries(status=status, channel=channel, limit=limit)
    click.echo(report.render(rows, DELIVERY_COLUMNS, fmt))


@alerts_group.command("test")
@click.argument("channel")
@notify_file_option
@click.pass_context
def alerts_test(ctx, channel: str, notify_file: Path | None):
    """Send a sample incident (opened) to CHANNEL of the notify file, once, and say how it went.

    The sample has its own incident id (test-<time>), so it never updates a real incident; on
    PagerDuty it opens an incident to resolve by hand. Exit code 1 when the channel did not take it.
    """
    from services.notify.channels import render
    from services.notify.message import Links
    from services.notify.notify_file import load_notify_file
    from services.notify.sample import sample_event
    from services.notify.transport import send

    settings = _settings(ctx.find_root(), notify_file=notify_file)
    if settings.notify_file is None:
        raise ConfigError("alerts test needs a notify file: --notify-file F or FAITHWATCH_NOTIFY_FILE")
    channels = load_notify_file(settings.notify_file).channels
    if channel not in channels:
        raise ConfigError(f"no channel {channel!r} in {settings.notify_file} (channels: {', '.join(channels)})")
    now = datetime.now(UTC)
    event = sample_event(incident_id=f"test-{now:%Y%m%dT%H%M%SZ}",
                         summary="faithwatch test alert: a sample incident, nothing is wrong.")
    request = render(event, channels[channel], Links(settings.notify.grafana_url, settings.notify.api_url), now)
    with httpx.Client(timeout=settings.notify.timeout_seconds) as client:
        attempt = send(client, request, now)
    if attempt.outcome != "sent":
        click.echo(f"{channel}: not delivered ({attempt.outcome}): {attempt.error}", err=True)
        ctx.exit(1)
    click.echo(f"{channel}: delivered {event.incident_id} (HTTP {attempt.http_status}, {attempt.seconds:.2f} s)")
