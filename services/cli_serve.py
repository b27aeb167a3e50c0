"""``faithwatch serve``: the HTTP API with the embedded store and a live pipeline in this process."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import click

from pipelines.errors import ConfigError
from services.cli import _settings, main, notify_file_option
from services.settings import Settings
from services.store import open_store

log = logging.getLogger("faithwatch.serve")


def run_server(settings: Settings, reset_state: bool = False) -> dict | None:
    """Serve until SIGINT/SIGTERM, then drain the ingest queue, save the pipeline's state, close the store.

    The pipeline continues from ``DATA_DIR/state/pipeline.json.gz`` if a previous run saved one
    (``reset_state`` discards it first), and first takes what the write-ahead spool
    (``DATA_DIR/spool``, services/spool.py) still holds. Returns the pipeline totals at exit.
    """
    from pipelines.errors import StateError
    from services.api import check_auth
    from services.checkpoint import Checkpoint
    from services.ingest import EmbeddedIngestor
    from services.metrics import Metrics
    from services.notify.notifier import Notifier
    from services.notify.notify_file import load_notify_file
    from services.wiring import build_pipeline

    check_auth(settings.api)  # before the model loads: a refused start should be quick
    api = settings.api
    if api.ingest == "kafka":
        if settings.store.backend != "clickhouse":
            raise ConfigError("api.ingest=kafka: the stream workers write the store and the API reads it from "
                              "another process, so store.backend must be clickhouse (chdb opens in one process)")
    notify = load_notify_file(settings.notify_file) if settings.notify_file is not None else None
    if notify is not None and api.ingest == "kafka":
        # Checked (a bad file exits 2 here too), not used: the stream workers raise the incidents
        # and the one holding the sequence stage delivers them (docs/kafka.md).
        click.echo(f"faithwatch: api.ingest=kafka: alerts are delivered by the stream workers, not this server; "
                   f"{settings.notify_file} is valid (give the workers the same file)", err=True)
    with open_store(settings) as store:
        store.migrate()
        # As a worker does (no open marker tells of a crash mid-insert on a server): at start, and
        # after an outage of the store (EmbeddedIngestor's repair_after_outage).
        repair = None
        if api.ingest == "embedded" and settings.store.repairs_rollups:
            from services.store.consistency import repair_drifted_rollups

            repair_drifted_rollups(store, log, "at start")

            def repair() -> None:
                repair_drifted_rollups(store, log, "after the store came back")
        metrics = Metrics()
        if api.ingest == "kafka":
            from alerts.categories import load_policy
            from services.kafka.gate_model import GateModelFollower
            from services.kafka.ingest import KafkaIngestor
            from services.wiring import build_embedder

            # POST /v1/gate: the queries are embedded here with the workers' model and placed in
            # the cluster model the sequence stage publishes (services/kafka/gate_model.py).
            gate = GateModelFollower(settings, store, build_embedder(settings), load_policy(settings.categories_file))
            return _serve(settings, store, KafkaIngestor(settings, metrics, gate=gate), metrics)
        checkpoint = Checkpoint.in_data_dir(settings.data_dir)
        if reset_state:
            checkpoint.discard()
        try:
            state = checkpoint.load()
            pipeline = build_pipeline(settings, state=state)
        except StateError as exc:
            raise ConfigError(f"{exc}. The saved pipeline state ({checkpoint.path}) does not fit this model or "
                              "configuration: restore the configuration it was written with, or start with "
                              "--reset-state to discard it (stored interactions and incidents are kept)") from exc
        if state is not None:
            click.echo(f"faithwatch: continuing from {checkpoint.path} ({pipeline.processed} interactions, "
                       f"{len(pipeline.clusters)} clusters, {len(pipeline.detector.open_incidents)} open incidents)",
                       err=True)
        notifier = Notifier(store, notify, settings.notify, metrics).start() if notify else None
        spool = _spool(settings)
        ingestor = EmbeddedIngestor(pipeline, store, metrics, batch_size=settings.replay.batch_size,
                                    max_queue=api.queue_max_records,
                                    cluster_refresh_seconds=api.cluster_refresh_seconds,
                                    checkpoint=checkpoint.save, checkpoint_seconds=api.checkpoint_seconds,
                                    notifier=notifier, spool=spool, repair_after_outage=repair)
        try:
            return _serve(settings, store, ingestor, metrics)
        finally:
            if spool is not None:
                spool.close()
            if notifier is not None:
                notifier.close()  # what is still pending goes out after the next start


def _spool(settings: Settings, name: str = "spool"):
    """The write-ahead spool under DATA_DIR/``name`` (services/spool.py), or None with api.spool=false:
    ``spool`` for accepted interactions, ``otlp-spool`` for accepted OTLP trace requests."""
    from services.spool import Spool

    directory = Path(settings.data_dir) / name
    if settings.api.spool:
        return Spool(directory, max_bytes=settings.api.spool_max_bytes, segment_bytes=settings.api.spool_segment_bytes)
    left = sorted(directory.glob("*.jsonl")) if directory.is_dir() else []
    if left:
        log.warning("api.spool=false: %d spool segments in %s from an earlier run are not replayed", len(left),
                    directory)
    what = ("OTLP spans held for their trace live in memory until released" if name == "otlp-spool" else
            "accepted interactions live in memory until processed and checkpointed")
    click.echo(f"faithwatch: api.spool=false: {what}; a crash loses them", err=True)
    return None


def _serve(settings: Settings, store, ingestor, metrics) -> dict | None:
    """Run uvicorn in the foreground with ``ingestor`` until SIGINT/SIGTERM; the ingestor's totals."""
    import uvicorn

    from services.api import create_app

    api = settings.api
    otlp_spool = _spool(settings, "otlp-spool")
    app = create_app(api, store, ingestor, metrics, otlp_spool=otlp_spool)
    server = uvicorn.Server(uvicorn.Config(app, host=api.host, port=api.port, lifespan="off",
                                           log_level="info", timeout_graceful_shutdown=api.wait_timeout_seconds))
    stopping: list[int] = []

    def on_signal(signum, frame):
        # uvicorn re-raises the signal that stopped it once it has shut down; with the default
        # SIGTERM action the process would die before the queue is drained. A second signal
        # while draining stops at once.
        if stopping:
            raise KeyboardInterrupt
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    gates = app.state.gates  # the confidence gate's decision log (services/gates.py), if it runs here
    if gates is not None:
        gates.start()
    try:
        with ingestor:
            app.state.otlp.recover()  # traces a previous run held, back in the hold before new requests
            server.run()
            app.state.otlp.close()  # held traces go to the ingestor before it drains
            click.echo(f"faithwatch: stopping; draining {ingestor.depth} queued interactions", err=True)
        # leaving the block drained the queue and saved the pipeline's state
        totals = ingestor.totals()
    finally:
        if otlp_spool is not None:
            otlp_spool.close()
        if gates is not None:
            gates.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if totals is None:
        click.echo("faithwatch: stopped (Kafka mode: the stream workers process what was published)", err=True)
    else:
        click.echo(f"faithwatch: stopped; {totals['scored']} interactions scored, {totals['duplicates']} duplicates",
                   err=True)
    return totals


@main.command("serve")
@click.option("--host", help="interface to listen on (default 127.0.0.1, or FAITHWATCH_API__HOST)")
@click.option("--port", type=click.IntRange(0, 65535), help="port (default 8000, or FAITHWATCH_API__PORT)")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="embedded store (default .faithwatch, or FAITHWATCH_DATA_DIR)")
@click.option("--seed-file", type=click.Path(dir_okay=False, path_type=Path),
              help="example queries (.txt, .jsonl or .csv) to fit the first clusters on")
@click.option("--insecure", is_flag=True, default=None,
              help="serve without authentication when no token is configured (FAITHWATCH_API__INSECURE)")
@click.option("--reset-state", is_flag=True,
              help="discard the saved pipeline state (clusters, baselines, open incidents) and start fresh")
@notify_file_option
@click.pass_context
def serve_cmd(ctx, host, port, data_dir, seed_file, insecure, reset_state, notify_file):
    """Serve the HTTP API: ingest interactions, read clusters, incidents and sessions.

    Tokens come from FAITHWATCH_API__TOKENS (a JSON list) or api.tokens in the config file; every
    route but /healthz needs one. Stop with Ctrl-C or SIGTERM: accepted interactions are processed
    and stored before the process exits, and the pipeline's state (clusters, baselines, open
    incidents) is saved under DATA_DIR/state; the next start continues from it. A 202 means the
    records are synced to DATA_DIR/spool: after a crash the next start replays them.

    With a notify file (--notify-file or FAITHWATCH_NOTIFY_FILE) every incident event is delivered to
    its channels (docs/alerts.md); deliveries still pending at shutdown go out after the next start.
    """
    settings = _settings(ctx, data_dir=data_dir, seed_file=seed_file, notify_file=notify_file)
    updates = {k: v for k, v in {"host": host, "port": port, "insecure": insecure}.items() if v is not None}
    if updates:
        settings = settings.model_copy(update={"api": settings.api.model_copy(update=updates)})
    run_server(settings, reset_state=reset_state)
