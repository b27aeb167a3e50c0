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


@dashboards_group.command("sync")
@click.option("--grafana-url", envvar="GRAFANA_URL", required=True, help="Grafana's base URL (env GRAFANA_URL)")
@click.option("--grafana-token", envvar="GRAFANA_TOKEN", help="a service-account token (env GRAFANA_TOKEN)")
@click.option("--store-url", help="where Grafana reaches the store: a ClickHouse server http(s)://host:port, or "
                                  "faithwatch serve's http://host:port/clickhouse (default: store.url)")
@click.option("--store-user", help="default: store.user (for /clickhouse: any name, 'grafana')")
@click.option("--store-password", help="default: store.password (for /clickhouse: the first of api.tokens)")
@click.pass_context
def dashboards_sync(ctx, grafana_url, grafana_token, store_url, store_user, store_password):
    """Put the folder, the ClickHouse data source and the dashboards into Grafana (idempotent)."""
    from dashboards.generate import dashboards
    from pipelines.errors import ConfigError
    from services.cli import _settings
    from services.grafana_sync import ClickHouseTarget, connect, sync

    settings = _settings(ctx)
    store = settings.store
    embedded = store.backend == "chdb"
    url = store_url or (None if embedded else store.url)
    if not url:
        raise ConfigError("--store-url is needed with the embedded store: faithwatch serve's "
                          "http://HOST:PORT/clickhouse, as Grafana reaches it")
    if store_password is None:
        secret = (settings.api.tokens[0] if settings.api.tokens else None) if embedded else store.password
        store_password = secret.get_secret_value() if secret is not None else ""
    target = ClickHouseTarget(url=url, user=store_user or ("grafana" if embedded else store.user),
                              password=store_password, database=store.database)
    for line in sync(connect(grafana_url, grafana_token), dashboards(), target):
        click.echo(line)


@dashboards_group.command("render")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--until", help="end of the time ranges (RFC 3339; default: the store's latest answer)")
@click.option("--cluster", help="the Cluster dashboard's cluster (default: the incident's first member)")
@click.option("--incident", help="the Incident dashboard's incident (default: the latest)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path))
@click.pass_context
def dashboards_render(ctx, out_dir, until, cluster, incident, data_dir):
    """Draw every dashboard's panels from the store into PNG files and OUT_DIR/index.html (no Grafana)."""
    from datetime import datetime

    from pipelines.errors import ConfigError
    from services.cli import reading_store
    from services.dashboard_render import render

    end = None
    if until is not None:
        try:
            end = datetime.fromisoformat(until)
        except ValueError as error:
            raise ConfigError(f"--until must be RFC 3339, got {until!r}") from error
        if end.tzinfo is None:
            raise ConfigError("--until needs a UTC offset (e.g. 2026-11-05T00:00:00Z)")
    with reading_store(ctx, data_dir) as store:
        page = render(store, out_dir, until=end, cluster=cluster, incident=incident)
    click.echo(f"wrote {page}")
