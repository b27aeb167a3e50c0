"""The pool's sweep test (``_Pool.close_to``) rules rows out with a float32 product and decides on
float64 ones: it must pick exactly the rows the plain float64 product over the capacity-sized
legacy layout picks, near ties included."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from pipelines.clustering import _Pool, _Seen, unit

T0 = datetime(2026, 5, 1, tzinfo=UTC)


def plain(pool: _Pool, centroids: np.ndarray, threshold: float) -> list[int]:
    laid = np.zeros_like(pool.rows)
    for seq, row in pool._legacy.items():
        laid[row] = pool.rows[pool._slot[seq]]
    near = (laid @ centroids.T).max(axis=1)
    return sorted(seq for seq, row in pool._legacy.items() if near[row] >= threshold)


@pytest.mark.parametrize("seed", range(6))
def test_close_to_matches_the_plain_product_near_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    dim, capacity = 384, 300
    pool = _Pool(capacity, dim, None)
    base = unit(rng.normal(size=(8, dim)))
    x = unit(base[rng.integers(0, 8, size=400)] + 0.4 * rng.normal(size=(400, dim)) / np.sqrt(dim))
    for seq, v in enumerate(x[:capacity]):
        pool.add(_Seen(seq, v.astype(np.float16), "q", T0, None), 2.0)
    for seq in rng.choice(capacity, size=60, replace=False).tolist():  # holes: legacy != occupied layout
        pool.remove(pool._items[seq])
    for seq, v in enumerate(x[capacity:], start=capacity):
        if len(pool) < capacity:
            pool.add(_Seen(seq, v.astype(np.float16), "q", T0, None), 2.0)
    centroids = unit(base[:3] + 0.1 * rng.normal(size=(3, dim)) / np.sqrt(dim))
    want = plain(pool, centroids, 0.0)
    laid_values = sorted(set(
        float(v) for v in np.partition((pool.rows[:len(pool)] @ centroids.T).max(axis=1), -5)[-40:]))
    # thresholds at a row's value exactly, one ulp either side, and in the float32 margin
    thresholds = [t for v in laid_values[::7] for t in (v, np.nextafter(v, 2.0), np.nextafter(v, -2.0))]
    thresholds += [laid_values[0] + 5e-4, laid_values[-1] - 5e-4, 0.5, 0.9]
    for threshold in thresholds:
        want = plain(pool, centroids, threshold)
        got = [it.seq for it in pool.close_to(centroids, threshold)]
        assert got == want, threshold
