"""The deliveries table on both backends: the latest version of a delivery is its state, a
re-queued delivery never overwrites one already attempted, and the notifier's reads see that."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from services.notify import outbox
from services.notify.sample import sample_event
from services.notify.transport import Attempt
from services.store.base import Store

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
BACKOFF = outbox.Backoff(base=1.0, maximum=10.0, give_up=60.0)


def test_the_latest_version_wins_and_a_requeue_never_overwrites_an_attempt(store: Store):
    opened, resolved = sample_event(), sample_event(event="resolved", sequence=1, status="resolved")
    first = outbox.queued(opened, "team", "slack", T0)
    store.insert_deliveries([first, outbox.queued(resolved, "team", "slack", T0),
                             outbox.queued(opened, "pager", "pagerduty", T0)])
    retry = outbox.after(first, Attempt("retry", 503, "HTTP 503", None, 0.1), T0, BACKOFF, random.Random(1))
    sent = outbox.after(retry, Attempt("sent", 200, "", None, 0.1), T0 + timedelta(seconds=2), BACKOFF,
                        random.Random(1))
    store.insert_deliveries([retry, sent])
    store.insert_deliveries([outbox.queued(opened, "team", "slack", T0 + timedelta(minutes=5))])  # a replay
    by_key = {outbox.key(row): row for row in store.list_deliveries()}
    assert (by_key[("inc-1", 0, "team")]["status"], by_key[("inc-1", 0, "team")]["attempts"]) == ("sent", 2)
    assert [row["sequence"] for row in store.pending_deliveries("team")] == [1]
    assert [row["channel"] for row in store.pending_deliveries("pager")] == ["pager"]
    assert store.delivery_keys(["inc-1", "inc-other"]) == {("inc-1", 0, "team"), ("inc-1", 1, "team"),
                                                           ("inc-1", 0, "pager")}
    assert store.delivery_keys([]) == set()
    assert [row["sequence"] for row in store.list_deliveries(status="pending", channel="team")] == [1]
    [latest] = store.latest_deliveries("team")
    assert latest["latest_status"] == "pending"
    assert outbox.event_of({"payload": latest["latest_payload"]}) == resolved
    assert store.counts()["deliveries"] == 3
