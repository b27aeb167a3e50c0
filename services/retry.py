"""How long a driver waits before it writes to the store again after a failed write.

A store that is down (a ClickHouse server restarting, a disk error under chDB) stalls the
writers; it must not lose what they hold. Every driver retries the same rows until the store
takes them, waiting :data:`STORE` 's delays between attempts: 0.5 s, doubled after each further
failure, at most 5 s. The Kafka worker's sinks and sequence stage (services/kafka/app.py, an async
loop) and ``faithwatch serve``'s ingest worker (services/ingest.py, a thread) both draw their
delays from here; what they retry and how they wait differs, the policy does not.

>>> list(itertools.islice(STORE.delays(), 6))
[0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
"""

from __future__ import annotations

import itertools  # noqa: F401 - used by the doctest
import logging
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Delays that start at ``first`` seconds and double up to ``most``."""

    first: float
    most: float

    def delays(self) -> Iterator[float]:
        """The wait before each further attempt, without end."""
        delay = self.first
        while True:
            yield delay
            delay = min(delay * 2, self.most)


STORE = Backoff(first=0.5, most=5.0)


def log_failure(log: logging.Logger, what: str, exc: BaseException, delay: float | None) -> None:
    """One line per failed attempt, the same in every driver; ``delay`` None: not retried."""
    then = f"retrying in {delay:.1f} s" if delay is not None else "not retried"
    log.warning("%s failed (%s: %s); %s", what, type(exc).__name__, str(exc)[:300], then)
