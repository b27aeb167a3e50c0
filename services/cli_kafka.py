"""``faithwatch worker`` (the Kafka driver, a faust worker) and ``faithwatch produce`` (a file to
the interactions topic). Settings come from the environment (``FAITHWATCH_KAFKA__BROKERS`` ...);
see docs/kafka.md.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from pipelines.errors import ConfigError, FaithwatchError
from services.cli import _settings, data_dir_option, main, open_store
from services.private import private_dir
from services.settings import Settings


@main.command("worker")
@click.option("--alerts-out", type=click.Path(dir_okay=False, path_type=Path),
              help="append every incident event this worker emits, one JSON object per line "
                   "(the format of `replay --alerts-out`; events already in the file are not repeated)")
@data_dir_option
@click.pass_context
def worker_cmd(ctx, alerts_out, data_dir):
    """Run the Kafka stream worker (score, sequence, sinks) until SIGTERM or Ctrl-C."""
    import faust

    from services.kafka.app import Runtime, create_app
    from services.wiring import build_embedder, build_pipeline

    settings = _settings(ctx.find_root(), data_dir=data_dir)
    if settings.notify_file is not None:
        # Not silently ignored: several workers polling one outbox would need delivery leases first.
        raise ConfigError("faithwatch worker does not deliver alerts yet (replay, demo and serve do); "
                          "unset notify_file (FAITHWATCH_NOTIFY_FILE) for the worker")
    private_dir(settings.data_dir)
    embedder = build_embedder(settings)
    store = open_store(settings)
    try:
        store.migrate()
        runtime = Runtime(settings, embedder, lambda state: build_pipeline(settings, embedder, state=state),
                          store, alerts_out)
        app = create_app(settings, runtime)
        verbose = ctx.find_root().params.get("verbose")
        worker = faust.Worker(app, loglevel="INFO" if verbose else "WARNING", quiet=True,
                              redirect_stdouts=False)
        code = 0
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = exc.code or 0
        click.echo(json.dumps(runtime.counts, sort_keys=True))
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
