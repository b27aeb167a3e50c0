"""Traces held back until their spans have arrived: bounded in time and in memory.

An exporter sends a trace's spans in several requests (a batch processor exports what has ended,
so a retriever span and the LLM span it fed often travel apart). :class:`TraceHold` keeps what
matters of each trace (answers and retrievals) for ``hold_seconds`` after its first span arrived,
then releases it. At most ``max_traces`` traces are held: one more releases the oldest early.
Time is passed in (a monotonic clock's reading): the hold is pure and deterministic.

>>> hold = TraceHold(hold_seconds=5, max_traces=2)
>>> hold.add("t1", "answer", now=0.0), hold.add("t1", "retrieval", now=1.0)
([], [])
>>> [(t.trace_id, t.items) for t in hold.add("t2", "a", now=2.0) + hold.add("t3", "b", now=3.0)]
[('t1', ['answer', 'retrieval'])]
>>> [t.trace_id for t in hold.due(now=7.0)], len(hold), [t.trace_id for t in hold.drain()]
(['t2'], 1, ['t3'])
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HeldTrace:
    trace_id: str
    first_seen: float
    items: list[Any] = field(default_factory=list)


class TraceHold:
    def __init__(self, hold_seconds: float, max_traces: int):
        if hold_seconds < 0 or max_traces < 1:
            raise ValueError("hold_seconds must be >= 0 and max_traces >= 1")
        self.hold_seconds = hold_seconds
        self.max_traces = max_traces
        self._traces: OrderedDict[str, HeldTrace] = OrderedDict()  # in order of first arrival
        self.released_early = 0  # traces released before their time to make room

    def __len__(self) -> int:
        return len(self._traces)

    def add(self, trace_id: str, item: Any, now: float) -> list[HeldTrace]:
        """Hold ``item`` with its trace; the traces released early to stay within ``max_traces``."""
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = self._traces[trace_id] = HeldTrace(trace_id, now)
        trace.items.append(item)
        evicted = []
        while len(self._traces) > self.max_traces:
            evicted.append(self._traces.popitem(last=False)[1])
        self.released_early += len(evicted)
        return evicted

    def due(self, now: float) -> list[HeldTrace]:
        """Release the traces held for ``hold_seconds`` or longer, oldest first."""
        out = []
        while self._traces:
            first = next(iter(self._traces.values()))
            if now - first.first_seen < self.hold_seconds:
                break
            out.append(self._traces.popitem(last=False)[1])
        return out

    def drain(self) -> list[HeldTrace]:
        """Release every trace now (a flush, or shutting down)."""
        out = list(self._traces.values())
        self._traces.clear()
        return out
