from __future__ import annotations

import os

import numpy as np
import pytest

from pipelines.embedding import CachedEmbedder, HashingEmbedder, SentenceTransformerEmbedder, bundled_model_path


class Counting:
    """An embedder that records what it was asked to encode."""

    def __init__(self):
        self.inner = HashingEmbedder(dim=32)
        self.dim, self.name, self.calls = 32, "counting", []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)


def test_hashing_rows_are_normalised_and_deterministic():
    e = HashingEmbedder(dim=64)
    v = e.encode(["fee for a transfer", "card lost", ""])
    assert v.shape == (3, 64) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:2], axis=1), 1.0, atol=1e-6)
    assert np.array_equal(v, HashingEmbedder(dim=64).encode(["fee for a transfer", "card lost", ""]))
    assert e.encode([]).shape == (0, 64)


def test_cache_batches_only_the_misses_once():
    inner = Counting()
    c = CachedEmbedder(inner, capacity=10)
    c.encode(["a b", "c d", "a b"])
    c.encode(["c d", "e f"])
    assert inner.calls == [["a b", "c d"], ["e f"]]
    assert (c.hits, c.misses) == (2, 3)


def test_cache_forgets_least_recently_used():
    inner = Counting()
    c = CachedEmbedder(inner, capacity=2)
    c.encode(["one"])
    c.encode(["two"])
    c.encode(["one"])       # "one" is now the most recent
    c.encode(["three"])     # evicts "two"
    c.encode(["one", "two"])
    assert inner.calls[-1] == ["two"]


def test_cached_vectors_equal_uncached():
    texts = ["How much is it?", "Where is my card?"]
    assert np.array_equal(CachedEmbedder(HashingEmbedder()).encode(texts), HashingEmbedder().encode(texts))


@pytest.fixture(scope="module")
def real():
    os.environ["HF_HUB_OFFLINE"] = "1"
    return SentenceTransformerEmbedder(threads=2)


def test_bundled_model_is_on_disk():
    assert (bundled_model_path() / "model.safetensors").is_file()


def test_real_model_embeds_meaning(real):
    v = real.encode(["What is the fee for a transfer?", "How much does sending money cost?",
                     "My card was stolen"])
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_model_given_as_a_path_is_the_same_model(real):
    by_path = SentenceTransformerEmbedder(str(bundled_model_path()), threads=2)
    a = real.encode(["exchange rate"])
    assert np.allclose(a, by_path.encode(["exchange rate"]), atol=1e-6)
