"""``faithwatch worker`` (the Kafka driver, a faust worker) and ``faithwatch produce`` (a file to
the interactions topic). Settings come from the environment (``FAITHWATCH_KAFKA__BROKERS`` ...);
see docs/kafka.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import click

from pipelines.errors import FaithwatchError
from services.cli import _settings, data_dir_option, main, notify_file_option
from services.private import private_dir
from services.settings import Settings
from services.store import open_store

log = logging.getLogger("faithwatch.worker")

# Drift seen twice alike this far apart is a crash's, not an insert in progress (another worker's).


@main.command("worker")
@click.option("--alerts-out", type=click.Path(dir_okay=False, path_type=Path),
              help="append every incident event this worker emits, one JSON object per line "
                   "(the format of `replay --alerts-out`; events already in the file are not repeated)")
@data_dir_option
@notify_file_option
@click.pass_context
def worker_cmd(ctx, alerts_out, data_dir, notify_file):
    """Run the Kafka stream worker (score, sequence, sinks) until SIGTERM or Ctrl-C.

    With a notify file (--notify-file or FAITHWATCH_NOTIFY_FILE; give every worker the same one)
    each incident event is delivered once to its channels, by whichever worker holds the sequence
    stage (docs/alerts.md, docs/kafka.md)."""
    import faust

    from services.kafka.app import Runtime, create_app
    from services.notify.notify_file import load_notify_file
    from services.wiring import build_embedder, build_pipeline

    settings = _settings(ctx.find_root(), data_dir=data_dir, notify_file=notify_file)
    # Before the model loads: a bad notify file should fail fast.
    notify = load_notify_file(settings.notify_file) if settings.notify_file is not None else None
    private_dir(settings.data_dir)
    embedder = build_embedder(settings)
    store = open_store(settings)
    try:
        store.migrate()
        if settings.store.repairs_rollups:
            from services.store.consistency import repair_drifted_rollups

            repair_drifted_rollups(store, log, "at start")
        runtime = Runtime(settings, embedder, lambda state: build_pipeline(settings, embedder, state=state),
                          store, alerts_out, notify_file=notify)
        app = create_app(settings, runtime)
        verbose = ctx.find_root().params.get("verbose")
        worker = faust.Worker(app, loglevel="INFO" if verbose else "WARNING", quiet=True,
                              redirect_stdouts=False)
        code = 0
        k = settings.kafka
        metrics_server = runtime.metrics.serve(k.metrics_port, k.metrics_host) if k.metrics_port else None
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code or 0
        finally:
            if metrics_server is not None:
                metrics_server.shutdown()
        runtime.stop_notifier()  # what is still pending goes out from the next owner
        runtime.outputs.close()
        click.echo(json.dumps(runtime.report(), sort_keys=True))
        if code:
            raise SystemExit(code)
    finally:
        store.close()


async def _ensure_topic(settings: Settings, hosts: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    admin = AIOKafkaAdminClient(bootstrap_servers=hosts)
    await admin.start()
    try:
        if settings.kafka.interactions_topic not in await admin.list_topics():
            try:
                await admin.create_topics([NewTopic(settings.kafka.interactions_topic,
                                                    settings.kafka.partitions, 1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def session_key(raw: bytes) -> bytes | None:
    """The record's ``session_id`` as the message key; None if the line is not such a record."""
    try:
        d = json.loads(raw)
    except ValueError:
        return None
    sid = d.get("session_id") if isinstance(d, dict) else None
    return sid.encode() if isinstance(sid, str) and sid else None


async def produce_file(settings: Settings, file: Path, topic: str) -> dict:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from services.embedded import read_lines
    from services.kafka.app import broker_hosts

    hosts = broker_hosts(settings.kafka.brokers)
    counts = {"published": 0, "keyed": 0, "unkeyed": 0, "topic": topic}
    try:
        if topic == settings.kafka.interactions_topic:
            await _ensure_topic(settings, hosts)
        producer = AIOKafkaProducer(bootstrap_servers=hosts, max_request_size=4 * 1024 * 1024 + 65536,
                                    linger_ms=5, acks="all", enable_idempotence=False)
        await producer.start()
    except KafkaError as exc:
        raise FaithwatchError(f"kafka {settings.kafka.brokers}: {exc}") from None
    try:
        pending = []
        for _, raw in read_lines(file):
            key = session_key(raw)
            counts["keyed" if key else "unkeyed"] += 1
            pending.append(await producer.send(topic, raw, key=key))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        await producer.flush()
    finally:
        await producer.stop()
    counts["published"] = counts["keyed"] + counts["unkeyed"]
    return counts


@main.command("produce")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--topic", help="default: kafka.interactions_topic")
@click.pass_context
def produce_cmd(ctx, file, topic):
    """Publish each line of a JSON Lines FILE to the interactions topic, keyed by session_id.

    Malformed lines are published too (unkeyed): the worker sends them to the dead-letter topic.
    """
    settings = _settings(ctx.find_root())
    if not file.is_file():
        raise FaithwatchError(f"{file}: no such file")
    counts = asyncio.run(produce_file(settings, file, topic or settings.kafka.interactions_topic))
    click.echo(json.dumps(counts, sort_keys=True))
