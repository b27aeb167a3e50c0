"""CPU time per part of the ordered (sequence) half, measured on the pipeline's own methods.

:class:`StageClock` wraps methods of a live :class:`~pipelines.engine.Pipeline` (instance
attributes shadow the class's, so the pipeline's own calls go through the wrappers) and charges
each call's thread CPU time to its part, *exclusive* of the wrapped calls inside it: a refit that
runs inside ``assign`` is charged to ``refit``, not twice. Thread CPU time, so another process's
load on the shared cores disturbs the figures less than wall-clock time would.

The parts (``PARTS``): ``assign`` (the clusterer's own work per query not in a part below:
remembering it, pooling it, the answer), ``nearest`` (the query against every centroid),
``centroids`` (a member joins its cluster: the centroid moves, the label's terms), ``pool``
(re-clustering the unassigned pool), ``refit`` (re-clustering the recent window), ``families``
(families and cluster descriptions: ``Pipeline._refresh_labels``), ``detect``
(``PatternDetector.observe``), ``records`` (the rest of ``Pipeline._one``: the scored record).
Whatever else a timed call spends (admission, batching) is ``other`` (see :meth:`StageClock.split`).

>>> clock = StageClock()
>>> class Box:
...     def work(self, n):
...         return sum(range(n))
>>> b = Box()
>>> clock.wrap(b, "work", "detect")
>>> b.work(10), clock.calls["detect"]
(45, 1)
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

# (attribute path on the pipeline, method, part)
HOOKS = (("clusterer", "assign", "assign"), ("clusterer", "_nearest", "nearest"),
         ("clusterer", "_join", "centroids"), ("clusterer", "_promote", "pool"), ("clusterer", "refit", "refit"),
         ("", "_refresh_labels", "families"), ("detector", "observe", "detect"),
         ("", "_one", "records"))
PARTS = ("assign", "nearest", "centroids", "pool", "refit", "families", "detect", "records")


class StageClock:
    """Exclusive thread CPU seconds and calls per part (see the module docstring)."""

    def __init__(self, now: Callable[[], float] = time.thread_time):
        self.now = now
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._inner: list[float] = []  # per open call: CPU spent in wrapped calls inside it
        self.excluded = 0.0  # CPU spent inside timed calls on work that is not the pipeline's

    def wrap(self, obj: object, method: str, part: str) -> None:
        inner_fn = getattr(obj, method)

        def timed(*args, **kwargs):
            self._inner.append(0.0)
            t0 = self.now()
            try:
                return inner_fn(*args, **kwargs)
            finally:
                spent = self.now() - t0
                nested = self._inner.pop()
                self.seconds[part] += spent - nested
                self.calls[part] += 1
                if self._inner:
                    self._inner[-1] += spent

        setattr(obj, method, timed)

    def exclude(self, seconds: float) -> None:
        """Charge ``seconds`` spent inside the open call to no part (the benchmark's own work)."""
        self.excluded += seconds
        if self._inner:
            self._inner[-1] += seconds

    def attach(self, pipeline) -> StageClock:
        """Wrap the pipeline's parts (``HOOKS``); call before the pipeline sees its first batch
        (the detector is wrapped as it is now: do not replace it afterwards)."""
        for path, method, part in HOOKS:
            obj = getattr(pipeline, path) if path else pipeline
            if hasattr(obj, method):  # an older tree may not have every part
                self.wrap(obj, method, part)
        return self

    def split(self, total: float) -> dict[str, float]:
        """Seconds per part, and ``other``: ``total`` (the timed calls' CPU) minus the parts and
        what was excluded."""
        out = {p: self.seconds.get(p, 0.0) for p in PARTS}
        out["other"] = max(total - self.excluded - sum(out.values()), 0.0)
        return out
