"""The confidence gate that would have held an incident's failing answers back.

Computed from the cluster's own history: the confidences of the failing answers since onset and
the confidence histogram of the cluster's within-band (faithful) answers. The suggestion is the
lowest gate on a 0.01 grid that holds back at least ``target`` of the failing answers; beside it
stands the share of faithful answers the same gate would also hold back, so nobody raises a gate
without seeing its cost.

>>> from datetime import UTC, datetime
>>> from pipelines.baseline import ClusterBaseline
>>> from pipelines.config import BaselineConfig
>>> b = ClusterBaseline(BaselineConfig(holdback=0))
>>> t = datetime(2026, 11, 2, tzinfo=UTC)
>>> for c in [0.80, 0.85, 0.90, 0.92, 0.95]:
...     _ = b.observe(t, 0.9, c, below=False)
>>> g = suggest_gate([0.83, 0.84, 0.84, 0.85, 0.86], b, current_gate=0.80, target=0.8)
>>> g.threshold, g.failing_held_back, g.failing_total, g.faithful_held_back_share
(0.86, 4, 5, 0.4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipelines.baseline import ClusterBaseline
from pipelines.records import SuggestedGate


def suggest_gate(failing_confidences: Sequence[float],
                 baseline: ClusterBaseline | Sequence[ClusterBaseline],
                 current_gate: float, target: float = 0.9) -> SuggestedGate | None:
    """The gate and its cost; ``baseline`` may be several clusters' (an incident's members), whose
    faithful answers are counted together."""
    confs = sorted(c for c in failing_confidences if c is not None)
    if not confs:
        return None
    need = max(1, math.ceil(target * len(confs)))
    # Strictly above the need-th lowest confidence, on the 0.01 grid the histogram uses.
    threshold = min(1.0, math.floor(confs[need - 1] * 100 + 1e-9) / 100 + 0.01)
    threshold = round(threshold, 2)
    held = sum(1 for c in confs if c < threshold)
    baselines = [baseline] if isinstance(baseline, ClusterBaseline) else list(baseline)
    counts = [b.faithful_below(threshold) for b in baselines]
    faithful_held, faithful_total = sum(c[0] for c in counts), sum(c[1] for c in counts)
    return SuggestedGate(
        threshold=threshold,
        current_gate=current_gate,
        failing_held_back=held,
        failing_total=len(confs),
        faithful_held_back_share=round(faithful_held / faithful_total, 4) if faithful_total else 0.0,
        faithful_held_back=faithful_held,
        faithful_total=faithful_total,
    )
