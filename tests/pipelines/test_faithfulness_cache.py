"""The scorer's text-work caches: a cached score equals the uncached one exactly."""

from __future__ import annotations

import pytest

from pipelines.embedding import CachedEmbedder, HashingEmbedder
from pipelines.faithfulness import FaithfulnessScorer
from pipelines.interaction import Context, parse_record
from pipelines.scenario import IncidentSpec, ScenarioConfig, generate, to_jsonl_lines
from services.datasets import load_banking77, load_halueval


@pytest.fixture(scope="module")
def stream_items() -> list[tuple[str | None, list[Context]]]:
    """A BANKING77 stale-pricing stream (built-in scorer: no producer faithfulness): answers and
    context sets repeat, stale passages included."""
    cfg = ScenarioConfig(seed=5, days=2.0, per_day=600, incident=IncidentSpec(onset_day=1.3, sessions=6))
    records = [parse_record(line) for line in to_jsonl_lines(generate(load_banking77("train"), cfg).records)]
    return [(r.response, list(r.contexts)) for r in records]


@pytest.fixture(scope="module")
def halueval_items() -> list[tuple[str | None, list[Context]]]:
    items = []
    for task, right, wrong in (("qa", "right_answer", "hallucinated_answer"),
                               ("dialogue", "right_response", "hallucinated_response")):
        for row in load_halueval(task)[:150]:
            ctx = [Context(text=row["knowledge"])]
            items += [(row[right], ctx), (row[wrong], ctx)]
    return items


def scores(scorer: FaithfulnessScorer, items, batch: int):
    out = []
    for i in range(0, len(items), batch):
        out += scorer.score_many(items[i:i + batch])
    return out


@pytest.mark.parametrize("cache_size", [4096, 3])
def test_cached_scores_equal_uncached_on_a_stream(stream_items, cache_size):
    embedder = CachedEmbedder(HashingEmbedder(dim=128), capacity=100_000)
    uncached = FaithfulnessScorer(embedder, cache_size=0)
    cached = FaithfulnessScorer(embedder, cache_size=cache_size)
    expected = scores(uncached, stream_items, 256)
    assert scores(cached, stream_items, 256) == expected
    assert scores(cached, stream_items, 97) == expected  # the second pass is served from the caches
    assert any(r is not None and r.unsupported_numbers for r in expected)  # figures were checked
    assert any(r is not None and r.stale_support > 0 for r in expected)  # and stale passages seen
    if cache_size > 100:
        distinct = {(resp, tuple((c.text, c.stale) for c in ctx)) for resp, ctx in stream_items if resp}
        assert len(cached._prepared.data) == len(distinct) < len(stream_items)  # repeats were hits
    else:
        assert len(cached._prepared.data) == cache_size  # evicts, and stays exact


def test_cached_scores_equal_uncached_on_halueval(halueval_items):
    embedder = HashingEmbedder(dim=128)
    uncached = FaithfulnessScorer(embedder, cache_size=0)
    cached = FaithfulnessScorer(embedder)
    expected = scores(uncached, halueval_items, 64)
    assert scores(cached, halueval_items + halueval_items[::-1], 64) == expected + expected[::-1]
    # the context view of a passage is shared by its right and its hallucinated answer
    assert len(cached._contexts.data) == len(halueval_items) // 2
