from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipelines.labels import (
    CategoryIndex,
    Representative,
    TermCounts,
    decode_array,
    distinctive_terms,
    encode_array,
    tokens,
)
from pipelines.policy import Category, CategoryPolicy, Override


def counts(*queries: str, capacity: int = 100) -> TermCounts:
    t = TermCounts(capacity)
    for q in queries:
        t.update(q)
    return t


@pytest.mark.parametrize(
    ("clusters", "top", "expected"),
    [
        # shared words ("card") lose to words only this cluster uses
        ({"a": ["card fee charged", "card fee", "fee charged card"],
          "b": ["card arrived", "arrived delivery late"],
          "c": ["card pin blocked"]},
         2, {"a": ("fee", "charged"), "b": ("arrived", "delivery"), "c": ("blocked", "pin")}),
        # frequency within the cluster matters when rarity is equal
        ({"a": ["refund refund refund late", "refund"], "b": ["exchange rate"]},
         1, {"a": ("refund",), "b": ("exchange",)}),
        # at equal frequency a term every cluster uses ranks below one only this cluster uses
        ({"a": ["money money transfer transfer"], "b": ["money topup"], "c": ["money pending"]},
         1, {"a": ("transfer",), "b": ("topup",), "c": ("pending",)}),
        # ...but a much more frequent shared term can still win (it is not excluded)
        ({"a": ["money money money transfer"], "b": ["money topup"]},
         1, {"a": ("money",), "b": ("topup",)}),
        # stop words never appear
        ({"a": ["what is the fee"], "b": ["where is the card"]},
         3, {"a": ("fee",), "b": ("card",)}),
    ],
)
def test_ctfidf_picks_distinctive_terms(clusters, top, expected):
    docs = {cid: counts(*qs) for cid, qs in clusters.items()}
    assert distinctive_terms(docs, top) == expected


def test_term_counts_are_bounded_and_round_trip():
    t = counts(*(f"word{i} common" for i in range(50)), capacity=10)
    assert len(t.counts) == 10 and t.counts["common"] == 50
    again = TermCounts.from_state(t.to_state(), 10)
    assert again.counts == t.counts and again.total == t.total == 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Why was I CHARGED a fee?!", ["charged", "fee"]),
        ("the fee", ["fee"]),
        ("a 5 x", []),
        ("Exchange-rate for EUR2GBP", ["exchange", "rate", "eur2gbp"]),
    ],
)
def test_tokens(text, expected):
    assert tokens(text) == expected


def test_representative_is_the_most_central_member():
    rng = np.random.default_rng(0)
    centroid = np.array([1.0] + [0.0] * 7)
    members = [(f"q{i}", centroid + rng.normal(0, s, 8)) for i, s in enumerate([0.5, 0.05, 0.3])]
    r = Representative(capacity=2)
    for q, v in members:
        r.update(q, v / np.linalg.norm(v), centroid)
    assert r.query == "q1"
    assert r.queries == ["q1", "q2"]  # capacity 2: the least central member is not kept
    again = Representative.from_state(r.to_state(), 2)
    assert again.queries == r.queries and np.array_equal(again.vectors, r.vectors)


def test_representative_recentre_switches_between_kept_candidates():
    r = Representative(capacity=3)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    r.update("a", a, a).update("b", b, a)
    assert r.query == "a"
    assert r.recentre(b).query == "b"


POLICY = CategoryPolicy(
    default="other",
    categories=(
        Category(name="pricing", seed_phrases=("fee",), hints=("billing",)),
        Category(name="policy", seed_phrases=("refund rules",), hints=("terms",)),
        Category(name="other"),
    ),
    overrides=(Override(match=r"refund|chargeback", category="policy"),),
)
SEEDS = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
NEAR_FEE = np.array([0.9, 0.1, 0.0])
FAR = np.array([0.0, 0.0, 1.0])


@pytest.mark.parametrize(
    ("centroid", "hints", "label", "expected"),
    [
        (NEAR_FEE, Counter({"terms": 5}), "refund / late", "policy"),   # override beats hint
        (NEAR_FEE, Counter({"terms": 5}), "fee / charged", "policy"),   # hint beats seed
        (NEAR_FEE, Counter({"terms": 2, "x": 3}), "fee", "pricing"),    # no hint majority: seed
        (NEAR_FEE, Counter(), "fee / charged", "pricing"),              # seed
        (FAR, Counter(), "fee / charged", "other"),                     # below threshold: default
        (FAR, Counter({"BILLING": 3, "terms": 1}), "x", "pricing"),     # hints are case-blind
        (FAR, Counter({"unknown": 9}), "x", "other"),                   # unmapped hints ignored
    ],
)
def test_category_order_override_hint_seed_default(centroid, hints, label, expected):
    idx = CategoryIndex(POLICY, SEEDS, ["pricing", "policy"], threshold=0.5)
    assert idx.categorise(centroid, hints, label) == expected


def test_build_embeds_the_seed_phrases():
    class Fake:
        def encode(self, texts):
            return np.array([[1.0, 0.0] if "fee" in t else [0.0, 1.0] for t in texts])

    idx = CategoryIndex.build(POLICY, Fake(), threshold=0.5)
    assert idx.seed_owner == ("pricing", "policy")
    assert idx.categorise(np.array([1.0, 0.1]), Counter(), "x") == "pricing"


def test_array_encoding_is_exact():
    a = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float16)
    assert np.array_equal(decode_array(encode_array(a)), a)
