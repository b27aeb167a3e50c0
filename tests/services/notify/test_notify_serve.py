"""The live pipeline of ``faithwatch serve`` delivers the incidents it raises: records submitted to
the embedded ingestor reach a local webhook receiver once per event; the Kafka paths check the
notify file before they start."""

from __future__ import annotations

import json

from click.testing import CliRunner

from pipelines.interaction import parse_record
from services.cli import main
from services.ingest import EmbeddedIngestor
from services.notify.notifier import Notifier
from services.notify.notify_file import NotifyFile
from services.settings import NotifySettings, load_settings
from services.store.chdb_store import ChdbStore
from services.testing.receiver import Receiver
from services.wiring import build_pipeline

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_the_ingest_worker_queues_every_incident_event_for_delivery(tmp_path):
    stream = tmp_path / "stream.jsonl"
    res = CliRunner().invoke(main, ["generate", str(stream), "--days", "3", "--per-day", "600",
                                    "--producer-faithfulness"])
    assert res.exit_code == 0, res.output
    records = [parse_record(line) for line in stream.read_bytes().splitlines()]
    settings = load_settings(data_dir=tmp_path, embedding={"backend": "hashing"})
    with Receiver() as hook, ChdbStore(tmp_path / "chdb") as store:
        store.migrate()
        nf = NotifyFile.model_validate({"channels": {"hook": {"type": "webhook", "url": hook.url, "secret": SECRET}},
                                        "routes": [{"channels": ["hook"]}]})
        with Notifier(store, nf, NotifySettings(backoff_seconds=0.05)) as notifier:
            with EmbeddedIngestor(build_pipeline(settings), store, batch_size=256, notifier=notifier) as ingestor:
                for start in range(0, len(records), 300):  # as clients post them
                    ingestor.submit(records[start:start + 300])
                assert ingestor.wait(ingestor.request_flush(), timeout=300).done
                events = ingestor.totals()["incident_events"]
            assert notifier.drain(timeout=30)
        stored = store.list_incidents()
    assert sum(events.values()) >= 2 and events["opened"] >= 1
    ids = [r.headers["webhook-id"] for r in hook.requests]
    assert len(ids) == len(set(ids)) == sum(events.values())
    assert {json.loads(r.body)["incident_id"] for r in hook.requests} == {row["incident_id"] for row in stored}


def test_the_kafka_paths_check_the_notify_file_before_starting(tmp_path, monkeypatch):
    """worker delivers (tests/services/kafka/test_kafka_worker.py); the Kafka-mode API leaves delivery to
    the workers but still refuses a bad file, like every other command, before anything starts."""
    notify = tmp_path / "notify.yaml"
    notify.write_text("channels:\n  am: {type: opsgenie, url: http://127.0.0.1:9}\nroutes:\n  - channels: [am]\n")
    monkeypatch.setenv("FAITHWATCH_NOTIFY_FILE", str(notify))
    res = CliRunner().invoke(main, ["worker", "--data-dir", str(tmp_path / "w")])
    assert res.exit_code == 2 and "unknown channel type 'opsgenie'" in res.output
    monkeypatch.setenv("FAITHWATCH_API__INGEST", "kafka")
    monkeypatch.setenv("FAITHWATCH_STORE__BACKEND", "clickhouse")
    monkeypatch.setenv("FAITHWATCH_API__INSECURE", "true")
    res = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path / "s")])
    assert res.exit_code == 2 and "unknown channel type 'opsgenie'" in res.output
