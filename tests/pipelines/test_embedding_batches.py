"""length_batches: the cheapest cut of length-sorted texts into batches (pure, no model)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.embedding import RUN_COST_TOKENS, length_batches


def cost(lengths: np.ndarray, batches: list[slice], run_cost: float = RUN_COST_TOKENS) -> float:
    return sum(run_cost + (b.stop - b.start) * lengths[b.start] for b in batches)


def fixed(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def exact(lengths: np.ndarray) -> list[slice]:
    cuts = [0] + [i for i in range(1, len(lengths)) if lengths[i] != lengths[i - 1]] + [len(lengths)]
    return [slice(a, b) for a, b in zip(cuts, cuts[1:], strict=False)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 256), min_size=1, max_size=300), st.integers(1, 64))
def test_batches_cover_every_text_once_in_order_and_cost_no_more_than_the_obvious_cuts(raw, max_batch):
    lengths = np.array(sorted(raw, reverse=True))
    batches = length_batches(lengths, max_batch)
    assert [i for b in batches for i in range(b.start, b.stop)] == list(range(len(lengths)))
    assert all(0 < b.stop - b.start <= max_batch for b in batches)
    best = cost(lengths, batches)
    assert best <= cost(lengths, fixed(len(lengths), max_batch)) + 1e-9
    # exact-length groups (split to max_batch) waste no padding but pay a run each
    exact_split = [slice(i, min(i + max_batch, g.stop)) for g in exact(lengths)
                   for i in range(g.start, g.stop, max_batch)]
    assert best <= cost(lengths, exact_split) + 1e-9


def test_one_long_outlier_gets_its_own_batch_and_equal_lengths_share_one():
    lengths = np.array([60] + [12] * 30)
    assert length_batches(lengths, 64) == [slice(0, 1), slice(1, 31)]


def test_no_run_cost_means_no_padding():
    lengths = np.array([9, 9, 7, 7, 7, 3])
    batches = length_batches(lengths, 64, run_cost=0.0)
    assert all(len(set(lengths[b])) == 1 for b in batches)
