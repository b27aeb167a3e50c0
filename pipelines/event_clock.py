"""How far ahead of the stream an event time may be: the guard against a timestamp in year 9999.

Event time drives every window, so one record dated far in the future would move a cluster's
windows there and freeze them. :class:`EventClock` refuses a timestamp more than ``max_ahead``
past its reference: the newest event time admitted so far, or the driver's ``now`` when that is
later (a stream that was quiet for days resumes at the present, and must not be refused for it).
The first record of a fresh stream has nothing to be compared with and is admitted.

Every driver (replay, serve, the Kafka sequence stage) asks the pipeline's one clock, in event-time
order, so all three refuse the same records.

>>> from datetime import UTC, datetime, timedelta
>>> clock = EventClock(timedelta(hours=24))
>>> t = datetime(2026, 11, 2, tzinfo=UTC)
>>> clock.admit(t), clock.admit(t + timedelta(hours=23))
(None, None)
>>> print(clock.admit(datetime(9999, 1, 1, tzinfo=UTC)))  # doctest: +ELLIPSIS
9999-01-01T00:00:00+00:00 is more than 24 h ahead of the newest event time seen (2026-11-02T23:00:00+00:00; ...)
>>> clock.admit(t + timedelta(days=30), now=t + timedelta(days=30)) is None  # quiet for a month: fine
True
"""

from __future__ import annotations

from datetime import datetime, timedelta


class EventClock:
    def __init__(self, max_ahead: timedelta):
        self.max_ahead = max_ahead
        self.newest: datetime | None = None

    def admit(self, at: datetime, now: datetime | None = None) -> str | None:
        """None if ``at`` is admitted (and remembered), else the reason it is refused."""
        if self.newest is not None:
            reference = max(self.newest, now) if now is not None else self.newest
            if at > reference + self.max_ahead:
                what = "the newest event time seen" if reference == self.newest else "the time it was processed"
                return (f"{at.isoformat()} is more than {self.max_ahead.total_seconds() / 3600:g} h ahead of {what} "
                        f"({reference.isoformat()}; setting input.max_ahead_hours)")
        if self.newest is None or at > self.newest:
            self.newest = at
        return None

    def to_state(self) -> str | None:
        return None if self.newest is None else self.newest.isoformat()

    def restore(self, state: str | None) -> EventClock:
        self.newest = None if state is None else datetime.fromisoformat(state)
        return self
