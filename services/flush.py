"""Waiting for the ingest worker on the event loop, not on worker threads: one flush at a time,
and ``?wait=true`` without a thread per request.

A flush makes the ingest worker process everything accepted so far and fit what waits for the
bootstrap; each one costs a pass through the worker. :class:`FlushGate` runs one at a time, and
callers that arrive while one runs wait for it on an :class:`asyncio.Lock` (no thread held) and
then share the next: that flush starts after they asked, so it covers every record they had
accepted. Forty-five concurrent flushes thus cost two passes and no waiting thread.

:func:`wait_for` waits for a ticket by asking the ingestor every :data:`POLL_SECONDS` without
blocking (``wait(ticket, 0)``), so any number of waiting requests hold no thread and the server's
thread pool stays free for the reads.
"""

from __future__ import annotations

import asyncio

from services.ingest import Ingestor, WaitResult

# How often a waiting request asks whether its ticket is done (the latency it may add).
POLL_SECONDS = 0.02


async def wait_for(ingestor: Ingestor, ticket: int, timeout: float) -> WaitResult:
    """:meth:`Ingestor.wait` without holding a thread: done, failed, or not done at ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = ingestor.wait(ticket, 0)
        if result.done or loop.time() >= deadline:
            return result
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - loop.time())))


class FlushGate:
    def __init__(self, ingestor: Ingestor):
        self.ingestor = ingestor
        self._lock = asyncio.Lock()
        self._asked = 0  # callers so far, numbered
        self._covered = 0  # every caller up to this number is covered by a finished flush
        self._last = WaitResult(True)
        self.waiting = 0  # callers queued behind the running flush

    async def flush(self, timeout: float) -> WaitResult:
        """Flush (or share a flush that started after this call); ``done`` False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._asked += 1
        mine = self._asked
        self.waiting += 1
        try:
            await asyncio.wait_for(self._lock.acquire(), timeout)
        except TimeoutError:
            return WaitResult(False)
        finally:
            self.waiting -= 1
        try:
            if self._covered >= mine:
                return self._last
            covers = self._asked  # everyone who asked before this flush starts
            ticket = self.ingestor.request_flush()
            result = await wait_for(self.ingestor, ticket, max(0.0, deadline - loop.time()))
            if result.done:
                self._covered, self._last = covers, result
            return result
        finally:
            self._lock.release()
