"""In Kafka mode (``api.ingest=kafka``) the interactions mapped from OTLP spans go to the interactions
topic like every other ingest: the real exporter -> ``POST /v1/traces`` -> KafkaIngestor -> tansu."""

from __future__ import annotations

import asyncio
import json

from aiokafka import AIOKafkaConsumer, TopicPartition
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.api import create_app, serve_in_thread
from services.cli_kafka import _ensure_topic
from services.kafka.app import broker_hosts
from services.kafka.ingest import KafkaIngestor
from services.metrics import Metrics
from services.settings import load_settings
from services.store import open_store
from services.testing.tansu import Tansu

TOKEN = "kafka-otlp-t0ken"


async def consume_one(hosts: list[str], topic: str) -> tuple[bytes | None, dict]:
    consumer = AIOKafkaConsumer(bootstrap_servers=hosts, auto_offset_reset="earliest")  # no group: no rebalance
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        message = await asyncio.wait_for(consumer.getone(), 60)
        return message.key, json.loads(message.value)
    finally:
        await consumer.stop()


def test_otlp_spans_are_published_to_the_interactions_topic(tmp_path):
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    span = provider.get_tracer("t").start_span("llm", attributes={
        "openinference.span.kind": "LLM", "session.id": "sess-k", "input.value": "fee?", "output.value": "2%"},
        start_time=1_793_613_600_000_000_000)
    span.end(end_time=1_793_613_601_000_000_000)
    with Tansu.start() as broker:
        settings = load_settings(data_dir=tmp_path, kafka={"brokers": broker.url, "partitions": 1},
                                 api={"tokens": [TOKEN], "ingest": "kafka", "otlp": {"hold_seconds": 0}})
        hosts = broker_hosts(settings.kafka.brokers)
        asyncio.run(_ensure_topic(settings, hosts))
        metrics = Metrics()
        # The store is only where dead letters go here (the workers write the rest).
        with open_store(settings) as store, KafkaIngestor(settings, metrics) as ingestor:
            store.migrate()
            with serve_in_thread(create_app(settings.api, store, ingestor, metrics)) as url:
                exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {TOKEN}"})
                assert exporter.export(memory.get_finished_spans()) == SpanExportResult.SUCCESS
            assert ingestor.published == 1
        key, record = asyncio.run(consume_one(hosts, settings.kafka.interactions_topic))
    c = span.get_span_context()
    assert key == b"sess-k"
    assert record["interaction_id"] == f"{c.trace_id:032x}-{c.span_id:016x}"
    assert (record["query"], record["response"], record["timestamp"]) == ("fee?", "2%", "2026-11-02T10:00:01Z")
    assert record["metadata"]["otlp"]["convention"] == "openinference"
