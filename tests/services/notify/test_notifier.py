"""The notifier against local HTTP receivers and the real store (chDB and the ClickHouse server
backend): each (incident event, channel) delivered once, retried on 429/5xx/timeouts with backoff,
refused 4xx recorded as failed, given up after its time, in order per incident, a dead channel
holding up nobody else, pending deliveries sent by the next notifier on the same store."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from services.metrics import Metrics
from services.notify.notifier import Notifier
from services.notify.notify_file import NotifyFile
from services.notify.sample import sample_event
from services.settings import NotifySettings
from services.store.base import Store
from services.testing.receiver import Receiver, Reply

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FAST = NotifySettings(timeout_seconds=1.0, backoff_seconds=0.05, backoff_max_seconds=0.2, give_up_seconds=30)
EVENTS = [sample_event(),
          sample_event(event="updated", sequence=1, below_baseline_count=40),
          sample_event(event="resolved", sequence=2, status="resolved")]


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    opened = {name: Receiver() for name in ("pager", "team", "hook")}
    yield opened
    for receiver in opened.values():
        receiver.close()


def notify_file(receivers: dict[str, Receiver], routes: list | None = None) -> NotifyFile:
    return NotifyFile.model_validate({
        "channels": {"pager": {"type": "pagerduty", "routing_key": "k", "url": receivers["pager"].url},
                     "team": {"type": "slack", "webhook_url": receivers["team"].url},
                     "hook": {"type": "webhook", "url": receivers["hook"].url, "secret": SECRET}},
        "routes": routes or [{"channels": ["pager", "team", "hook"]}]})


def states(store: Store) -> dict[tuple[str, int, str], dict]:
    return {(r["incident_id"], r["sequence"], r["channel"]): r for r in store.list_deliveries()}


def test_each_event_reaches_each_channel_once_and_a_replay_pages_nobody(store: Store, receivers):
    with Notifier(store, notify_file(receivers), FAST) as notifier:
        assert notifier.submit(EVENTS) == 9
        assert notifier.drain(timeout=20)
        assert notifier.submit(EVENTS) == 0  # the same stream again
    with Notifier(store, notify_file(receivers), FAST) as restarted:
        assert restarted.submit(EVENTS) == 0
        assert restarted.drain(timeout=20)
        time.sleep(0.3)
    assert [r.json()["event_action"] for r in receivers["pager"].requests] == ["trigger", "trigger", "resolve"]
    assert [r.headers["webhook-id"] for r in receivers["hook"].requests] == ["inc-1:0", "inc-1:1", "inc-1:2"]
    assert len(receivers["team"].requests) == 3
    assert {r["status"] for r in states(store).values()} == {"sent"}
    assert {r["attempts"] for r in states(store).values()} == {1}


def test_a_late_update_is_recorded_skipped_for_pagerduty_and_sent_to_the_others(store: Store, receivers):
    late = sample_event(event="updated", sequence=3, status="resolved", below_baseline_count=41)
    with Notifier(store, notify_file(receivers), FAST) as notifier:
        notifier.submit([*EVENTS, late])
        assert notifier.drain(timeout=20)
    found = states(store)
    assert found[("inc-1", 3, "pager")]["status"] == "skipped"
    assert found[("inc-1", 3, "team")]["status"] == found[("inc-1", 3, "hook")]["status"] == "sent"
    assert len(receivers["pager"].requests) == 3


def test_429_honours_retry_after_and_5xx_is_retried_with_backoff(store: Store, receivers):
    receivers["hook"].fail(Reply(503), Reply(429, {"Retry-After": "1"}))
    with Notifier(store, notify_file(receivers, [{"channels": ["hook"]}]), FAST) as notifier:
        notifier.submit(EVENTS[:1])
        assert notifier.drain(timeout=20)
    first, second, third = receivers["hook"].wait_for(3)
    assert third.at - second.at >= 0.95  # Retry-After: 1
    assert second.at - first.at < 0.9  # the 503's backoff: 0.05 s with jitter
    assert first.headers["webhook-id"] == third.headers["webhook-id"]
    [row] = store.list_deliveries()
    assert (row["status"], row["attempts"], row["http_status"]) == ("sent", 3, 200)


def test_a_timeout_is_retried(store: Store, receivers):
    receivers["team"].fail(Reply(delay=2.0))
    with Notifier(store, notify_file(receivers, [{"channels": ["team"]}]), FAST) as notifier:
        notifier.submit(EVENTS[:1])
        assert notifier.drain(timeout=20)
    [row] = store.list_deliveries()
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert len(receivers["team"].requests) == 2


def test_other_4xx_is_failed_at_once_and_never_retried(store: Store, receivers):
    receivers["team"].fail(Reply(404, body=b"no_service"))
    metrics = Metrics()
    with Notifier(store, notify_file(receivers, [{"channels": ["team"]}]), FAST, metrics) as notifier:
        notifier.submit(EVENTS[:1])
        assert notifier.drain(timeout=20)
        time.sleep(0.3)
    [row] = store.list_deliveries()
    assert (row["status"], row["attempts"], row["http_status"], row["error"]) == ("failed", 1, 404,
                                                                                  "HTTP 404: no_service")
    assert len(receivers["team"].requests) == 1
    rendered = metrics.render().decode()
    assert 'faithwatch_notify_deliveries_total{channel="team",outcome="failed"} 1.0' in rendered
    assert 'faithwatch_notify_attempt_duration_seconds_count{channel="team"} 1.0' in rendered


def test_a_delivery_that_keeps_failing_is_given_up_after_its_time(store: Store, receivers):
    receivers["pager"].default = Reply(503)
    settings = FAST.model_copy(update={"give_up_seconds": 1.0})
    with Notifier(store, notify_file(receivers, [{"channels": ["pager"]}]), settings) as notifier:
        started = time.monotonic()
        notifier.submit(EVENTS[:1])
        assert notifier.drain(timeout=20)
        took = time.monotonic() - started
    [row] = store.list_deliveries()
    assert row["status"] == "given_up" and row["attempts"] >= 3
    assert row["error"].startswith(f"gave up after {row['attempts']} attempts over 1 s: HTTP 503")
    assert 1.0 <= took < 5


def test_an_incidents_events_go_in_order_even_when_one_is_retried(store: Store, receivers):
    receivers["pager"].fail(Reply(503), Reply(503))
    with Notifier(store, notify_file(receivers, [{"channels": ["pager"]}]), FAST) as notifier:
        notifier.submit(EVENTS)
        assert notifier.drain(timeout=20)
    actions = [r.json()["event_action"] for r in receivers["pager"].requests]
    assert actions == ["trigger"] * 4 + ["resolve"]  # the opened event three times, then the rest in order


def test_a_dead_channel_slows_neither_the_caller_nor_the_other_channels(store: Store, receivers):
    """Slack hangs: its first request outlasts the HTTP timeout (4 s). Both events reach PagerDuty
    and the webhook while that request still hangs, so nothing waited for Slack. Shown by order,
    not by a stopwatch (a loaded CI machine slows everything): Slack's first attempt has not ended,
    its delivery is pending with no attempt recorded."""
    receivers["team"].default = Reply(delay=6.0)
    with Notifier(store, notify_file(receivers), FAST.model_copy(update={"timeout_seconds": 4.0})) as notifier:
        notifier.submit(EVENTS[:1])
        receivers["team"].wait_for(1, timeout=30)  # Slack's first request is in flight
        notifier.submit(EVENTS[1:2])
        receivers["pager"].wait_for(2, timeout=30)
        receivers["hook"].wait_for(2, timeout=30)
        team = states(store)[("inc-1", 0, "team")]
        assert (team["status"], team["attempts"]) == ("pending", 0), team
        assert len(receivers["team"].requests) == 1


def test_pending_deliveries_go_out_from_the_next_notifier_and_sent_ones_never_again(make_store, receivers):
    routes = [{"channels": ["hook"]}]
    with make_store() as store:
        store.migrate()
        with Notifier(store, notify_file(receivers, routes), FAST) as notifier:
            notifier.submit(EVENTS[:1])
            assert notifier.drain(timeout=20)
        stopped = Notifier(store, notify_file(receivers, routes), FAST)  # stops before it sends: never started
        assert stopped.submit(EVENTS[1:]) == 2
        stopped.close()
        assert [r["status"] for r in sorted(store.list_deliveries(), key=lambda r: r["sequence"])] == [
            "sent", "pending", "pending"]
    with make_store() as store, Notifier(store, notify_file(receivers, routes), FAST) as restarted:
        assert restarted.submit(EVENTS) == 0  # the restarted pipeline re-emits every event: nothing new
        assert restarted.drain(timeout=20)
        time.sleep(0.3)
    assert [r.headers["webhook-id"] for r in receivers["hook"].requests] == ["inc-1:0", "inc-1:1", "inc-1:2"]
