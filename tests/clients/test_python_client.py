"""faithwatch-client (clients/python) against a real ``faithwatch serve`` API and a receiver that fails on demand.

The API runs under uvicorn on 127.0.0.1 (hashing embedder, one server for the module); the
receiver (services.testing.receiver) answers 503/429/500/413/401 as scripted. Waits between retries
go through an injected ``sleep`` that records them, so the Retry-After and backoff checks are exact
and take no time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from faithwatch_client import BufferFull, Client, FaithwatchClientError, SendFailed

from services.settings import load_settings
from services.testing.live_api import live_api
from services.testing.receiver import Receiver, Reply

TOKEN = "client-t0ken"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)


def interaction(n: int) -> dict:
    return {"interaction_id": f"cl-{n}", "session_id": f"cs-{n % 3}", "timestamp": T0 + timedelta(minutes=n),
            "query": "what is the transfer fee in euros", "response": "The fee is 2%.", "confidence": 0.8}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    settings = load_settings(data_dir=tmp_path_factory.mktemp("client"), embedding={"backend": "hashing"},
                             cluster={"bootstrap_size": 20}, api={"tokens": [TOKEN]})
    with live_api(settings, batch_size=32, cluster_refresh_seconds=0) as api:
        yield api.url, api.store


class Waits(list):
    """A ``sleep`` that records how long it was asked to wait, and returns at once."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_interactions_reach_a_real_server_and_refused_ones_are_counted(api):
    url, store = api
    with Client(url, TOKEN, batch_size=7, flush_interval=60) as fw:
        assert fw.log(interaction(0)) is True
        assert fw.log_many(interaction(n) for n in range(1, 25)) == 24
        fw.log({"interaction_id": "cl-bad", "query": "no timestamp"})
        assert fw.flush(timeout=30)
        assert (fw.stats.accepted, fw.stats.sent, fw.stats.invalid, fw.stats.failed) == (26, 26, 1, 0)
    assert fw.stats.retries == 0
    httpx.post(f"{url}/v1/flush", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60).raise_for_status()
    rows = store.query("SELECT interaction_id, session_id, timestamp FROM interactions FINAL "
                       "WHERE startsWith(interaction_id, 'cl-') ORDER BY timestamp")
    assert [r["interaction_id"] for r in rows] == [f"cl-{n}" for n in range(25)]
    assert rows[3]["timestamp"] == T0 + timedelta(minutes=3) and rows[4]["session_id"] == "cs-1"
    dead = store.query("SELECT field FROM dead_letters WHERE interaction_id = 'cl-bad'")
    assert dead == [{"field": "timestamp"}]
    with pytest.raises(FaithwatchClientError):
        fw.log(interaction(99))


def test_a_wrong_token_gives_the_batch_up_at_once(api):
    url, _ = api
    failures = []
    with Client(url, "not-the-token", on_error=lambda batch, exc: failures.append((len(batch), exc))) as fw:
        fw.log_many([interaction(100), interaction(101)])
        assert fw.flush(timeout=30)
    assert fw.stats.failed == 2 and fw.stats.retries == 0
    assert [(n, exc.status) for n, exc in failures] == [(2, 401)]
    assert isinstance(failures[0][1], SendFailed)


def test_503_and_429_are_retried_after_their_retry_after():
    waits = Waits()
    with Receiver() as hook:
        hook.fail(Reply(503, {"Retry-After": "2"}), Reply(429, {"Retry-After": "7"}))
        with Client(hook.url, TOKEN, sleep=waits) as fw:
            fw.log_many(interaction(n) for n in range(3))
            assert fw.flush(timeout=30)
        requests = hook.wait_for(3)
    assert waits == [2.0, 7.0]
    assert len(requests) == 3 and requests[0].body == requests[1].body == requests[2].body
    assert [r["interaction_id"] for r in requests[2].json()] == ["cl-0", "cl-1", "cl-2"]
    assert requests[0].headers["authorization"] == f"Bearer {TOKEN}" and requests[0].path == "/v1/interactions"
    assert (fw.stats.sent, fw.stats.retries, fw.stats.failed) == (3, 2, 0)


def test_without_retry_after_the_backoff_doubles_and_the_batch_is_given_up():
    waits = Waits()
    failures = []
    with Receiver(default=Reply(500)) as hook:
        with Client(hook.url, TOKEN, sleep=waits, max_retries=3, backoff=1.0, backoff_max=3.0,
                    on_error=lambda batch, exc: failures.append((batch, exc))) as fw:
            fw.log(interaction(0))
            assert fw.flush(timeout=30)
        assert len(hook.wait_for(4)) == 4
    assert len(waits) == 3
    for wait, ceiling in zip(waits, [1.0, 2.0, 3.0], strict=True):  # jitter: 80-100 % of the step
        assert 0.8 * ceiling <= wait <= ceiling
    assert fw.stats.failed == 1 and failures[0][1].status == 500
    assert failures[0][0][0]["interaction_id"] == "cl-0"


def test_a_batch_too_large_for_the_server_is_split():
    with Receiver() as hook:
        hook.fail(Reply(413))
        with Client(hook.url, TOKEN, sleep=Waits()) as fw:
            fw.log_many(interaction(n) for n in range(5))
            assert fw.flush(timeout=30)
        sizes = [len(r.json()) for r in hook.wait_for(3)]
    assert sizes == [5, 2, 3] and fw.stats.sent == 5 and fw.stats.failed == 0


def stalled(hook: Receiver, **options) -> Client:
    """A client whose sender is busy with its first record (the receiver holds the answer), so
    what follows stays in the buffer."""
    hook.fail(Reply(200, delay=0.5))
    fw = Client(hook.url, TOKEN, batch_size=1, sleep=Waits(), **options)
    fw.log(interaction(0))
    hook.wait_for(1)
    return fw


@pytest.mark.parametrize(("on_full", "kept"), [("drop_new", ["cl-1", "cl-2"]), ("drop_oldest", ["cl-3", "cl-4"])])
def test_a_full_buffer_drops_by_its_policy(on_full, kept):
    with Receiver() as hook:
        fw = stalled(hook, max_buffer=2, on_full=on_full)
        results = [fw.log(interaction(n)) for n in range(1, 5)]
        assert fw.stats.dropped == 2
        fw.close(timeout=30)
        sent = [r.json()[0]["interaction_id"] for r in hook.wait_for(3)]
    assert results == ([True, True, False, False] if on_full == "drop_new" else [True] * 4)
    assert sent == ["cl-0", *kept] and fw.stats.sent == 3


def test_a_full_buffer_blocks_when_asked_then_raises():
    with Receiver() as hook:
        fw = stalled(hook, max_buffer=1, on_full="block", block_timeout=0.05)
        fw.log(interaction(1))
        with pytest.raises(BufferFull):
            fw.log(interaction(2))  # the sender is held for longer than block_timeout
        fw.block_timeout = 30
        assert fw.log(interaction(3))  # waits until the held answer arrives and the sender takes cl-1
        fw.close(timeout=30)
        sent = [r.json()[0]["interaction_id"] for r in hook.wait_for(3)]
    assert sent == ["cl-0", "cl-1", "cl-3"] and fw.stats.dropped == 0


def test_options_are_checked():
    with pytest.raises(ValueError):
        Client("http://127.0.0.1:9", on_full="wait")
    with pytest.raises(TypeError), Client("http://127.0.0.1:9") as fw:
        fw.log({"interaction_id": "x", "timestamp": datetime(2026, 11, 2), "query": "naive time"})  # noqa: DTZ001
