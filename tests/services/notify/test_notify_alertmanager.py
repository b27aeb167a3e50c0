"""The Alertmanager channel against the real Alertmanager (Debian's package, installed by the
set-up if missing), routed to a local receiver: an incident fires one alert, its resolution ends
it, a late update after resolution sends nothing, and open incidents are sent again below
Alertmanager's resolve_timeout so they stay firing."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from services.notify.notifier import Notifier
from services.notify.notify_file import NotifyFile
from services.notify.sample import sample_event
from services.settings import NotifySettings
from services.store.chdb_store import ChdbStore
from services.testing.alertmanager import AlertmanagerProcess
from services.testing.receiver import Receiver

FAST = NotifySettings(timeout_seconds=5.0, backoff_seconds=0.1, backoff_max_seconds=0.5, give_up_seconds=30,
                      api_url="https://fw.example")


@pytest.fixture
def chdb_store(tmp_path) -> Iterator[ChdbStore]:
    with ChdbStore(tmp_path / "store") as store:
        store.migrate()
        yield store


@pytest.fixture
def alertmanager(tmp_path) -> Iterator[tuple[AlertmanagerProcess, Receiver]]:
    with Receiver() as receiver:
        try:
            am = AlertmanagerProcess.start(tmp_path / "am", receiver.url, resolve_timeout="2s")
        except RuntimeError as exc:
            pytest.fail(str(exc))
        with am:
            yield am, receiver


def notifications(receiver: Receiver, n: int) -> list[dict]:
    return [r.json() for r in receiver.wait_for(n, timeout=20)]


def test_an_incident_fires_in_alertmanager_and_its_resolution_ends_it(alertmanager, chdb_store):
    am, receiver = alertmanager
    nf = NotifyFile.model_validate({"channels": {"am": {"type": "alertmanager", "url": am.url}},
                                    "routes": [{"channels": ["am"]}]})
    with Notifier(chdb_store, nf, FAST) as notifier:
        notifier.submit([sample_event()])
        assert notifier.drain(timeout=20)
        [held] = am.alerts()
        assert held["labels"] == {"alertname": "FaithwatchIncident", "incident_id": "inc-1", "cluster": "c001",
                                  "category": "pricing", "severity": "critical"}
        assert held["status"]["state"] == "active"
        assert held["annotations"]["links"] == "https://fw.example/v1/incidents/inc-1"
        assert held["startsAt"].startswith("2026-11-02T10:00:00")
        [firing] = notifications(receiver, 1)
        assert firing["status"] == "firing" and firing["groupLabels"] == {"incident_id": "inc-1"}
        assert firing["alerts"][0]["annotations"]["summary"].startswith("[CRITICAL] OPENED pricing")

        notifier.submit([sample_event(event="resolved", sequence=1, status="resolved",
                                      resolved_at=sample_event().onset_at.replace(hour=15))])
        assert notifier.drain(timeout=20)
        resolved = notifications(receiver, 2)[-1]
        assert resolved["status"] == "resolved"
        assert resolved["alerts"][0]["endsAt"].startswith("2026-11-02T15:00:00")
        assert am.alerts() == []  # no longer active

        notifier.submit([sample_event(event="updated", sequence=2, status="resolved", below_baseline_count=30)])
        assert notifier.drain(timeout=20)
    [late] = [r for r in chdb_store.list_deliveries() if r["sequence"] == 2]
    assert late["status"] == "skipped"


def test_open_incidents_are_sent_again_so_their_alerts_stay_firing(alertmanager, chdb_store):
    am, _ = alertmanager
    nf = NotifyFile.model_validate({"channels": {"am": {"type": "alertmanager", "url": am.url}},
                                    "routes": [{"channels": ["am"]}]})
    once = FAST.model_copy(update={"alertmanager_refresh_seconds": 0})
    with Notifier(chdb_store, nf, once) as notifier:
        notifier.submit([sample_event(incident_id="inc-2")])
        assert notifier.drain(timeout=20)
        assert [a["labels"]["incident_id"] for a in am.alerts()] == ["inc-2"]
        time.sleep(4)  # past Alertmanager's resolve_timeout (2 s): without a refresh the alert ended
        assert am.alerts() == []
    refreshing = FAST.model_copy(update={"alertmanager_refresh_seconds": 0.5})
    with Notifier(chdb_store, nf, refreshing) as notifier:
        notifier.submit([sample_event(incident_id="inc-1")])
        assert notifier.drain(timeout=20)
        time.sleep(4)
        # both open incidents (inc-2's delivery was sent by the notifier before) are kept firing
        assert sorted(a["labels"]["incident_id"] for a in am.alerts()) == ["inc-1", "inc-2"]
        notifier.submit([sample_event(incident_id="inc-1", event="resolved", sequence=1, status="resolved",
                                      resolved_at=sample_event().onset_at.replace(hour=15))])
        assert notifier.drain(timeout=20)
        time.sleep(1.5)
        assert [a["labels"]["incident_id"] for a in am.alerts()] == ["inc-2"]  # a resolved one is not refreshed
