"""The faithfulness stage: sentence grounding, figure checks, staleness, batching."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.config import FaithfulnessConfig
from pipelines.embedding import HashingEmbedder
from pipelines.faithfulness import FaithfulnessResult, FaithfulnessScorer, is_trivial, sentences
from pipelines.interaction import Context

INDEXED = datetime(2026, 1, 10, tzinfo=UTC)
PRICING_V3 = ("Premium account pricing. The Premium account costs £12.50 per month. "
              "It includes travel insurance for you and your partner.")
PRICING_V4 = PRICING_V3.replace("£12.50", "£15.00")
DELIVERY = "Cards are usually delivered within 5 working days. You can track delivery in the app."
QUOTE_V3 = "The Premium account costs £12.50 per month."


def fresh(text: str) -> Context:
    return Context(text=text, indexed_at=INDEXED, doc_updated_at=INDEXED)


def stale(text: str) -> Context:
    return Context(text=text, indexed_at=INDEXED, doc_updated_at=INDEXED.replace(month=3))


class CountingEmbedder:
    """A HashingEmbedder that records every batch it is asked to encode."""

    def __init__(self):
        self.inner = HashingEmbedder(dim=256)
        self.dim, self.name = self.inner.dim, "counting"
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts)


@pytest.fixture
def scorer() -> FaithfulnessScorer:
    return FaithfulnessScorer(HashingEmbedder(dim=256))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The fee is £12.50. It applies abroad.", ["The fee is £12.50.", "It applies abroad."]),
        ("Rates are 2.5% e.g. for savers. Fine!", ["Rates are 2.5% e.g. for savers.", "Fine!"]),
        ("Approx. 5 days. Then i.e. done", ["Approx. 5 days.", "Then i.e. done"]),
        ("Is it free? Yes. Really!", ["Is it free?", "Yes.", "Really!"]),
        ("Steps:\n1. Open the app\n2. Tap Cards", ["Steps:", "Open the app", "Tap Cards"]),
        ("- first point\n- second point", ["first point", "second point"]),
        ("Ask Mr. Smith about it.", ["Ask Mr. Smith about it."]),
        ("It costs £5. (See terms.) Done.", ["It costs £5.", "(See terms.)", "Done."]),
        ("", []),
        ("   \n  ", []),
    ],
)
def test_sentences(text, expected):
    assert sentences(text) == expected


@pytest.mark.parametrize(
    ("sentence", "trivial"),
    [
        ("Thanks!", True),
        ("Hi there,", True),
        ("Hope this helps.", True),
        ("Is there anything else I can help you with today?", True),
        ("Sure, happy to help.", True),
        ("Your card is blocked.", False),
        ("Ref 3.", False),
        ("Fees apply abroad.", False),
    ],
)
def test_is_trivial(sentence, trivial):
    assert is_trivial(sentence) is trivial


@pytest.mark.parametrize(
    ("response", "contexts"),
    [
        (None, [Context(text=PRICING_V4)]),
        ("", [Context(text=PRICING_V4)]),
        ("   ", [Context(text=PRICING_V4)]),
        ("The fee is £15.", []),
        ("The fee is £15.", [Context(text=""), Context(text="  ")]),
    ],
)
def test_nothing_to_score_is_none(scorer, response, contexts):
    assert scorer.score(response, contexts) is None


def test_verbatim_answer_is_fully_supported(scorer):
    r = scorer.score("The Premium account costs £15.00 per month.", [fresh(PRICING_V4)])
    assert r == FaithfulnessResult(1.0, 1.0, (), (), 0.0)


def test_pleasantries_only_ground_fully(scorer):
    r = scorer.score("Thanks! Hope this helps.", [fresh(PRICING_V4)])
    assert (r.grounding, r.score) == (1.0, 1.0)


def test_pleasantries_do_not_dilute_grounding(scorer):
    bare = scorer.score("The Premium account costs £15.00 per month.", [fresh(PRICING_V4)])
    wrapped = scorer.score("Hi! The Premium account costs £15.00 per month. Hope this helps!",
                           [fresh(PRICING_V4)])
    assert wrapped.grounding == bare.grounding


@pytest.mark.parametrize(
    ("response", "unsupported"),
    [
        ("The Premium account costs £14.99 per month.", ("£14.99",)),
        ("The Premium account costs £14.99 per month, £14.99 in total.", ("£14.99",)),
        ("The Premium account costs £14.99 per month from 1 April 2026.",
         ("£14.99", "1 April 2026")),
        ("The Premium account costs 15 per month.", ()),  # a plain 15 matches £15.00
    ],
)
def test_each_unsupported_figure_costs_the_penalty(scorer, response, unsupported):
    r = scorer.score(response, [fresh(PRICING_V4)])
    assert r.unsupported_numbers == unsupported
    penalty = scorer.config.number_penalty ** len(unsupported)
    assert r.score == pytest.approx(r.grounding * penalty)


def test_figure_from_any_context_counts(scorer):
    r = scorer.score("Premium costs £15.00 and cards arrive in 5 days.",
                     [fresh(PRICING_V4), fresh(DELIVERY)])
    assert r.unsupported_numbers == ()


def test_stale_only_figure_and_support(scorer):
    on_fresh = scorer.score(QUOTE_V3, [fresh(PRICING_V3)])
    on_stale = scorer.score(QUOTE_V3, [stale(PRICING_V3)])
    assert on_fresh.stale_only_numbers == () and on_fresh.stale_support == 0.0
    assert on_stale.stale_only_numbers == ("£12.50",) and on_stale.unsupported_numbers == ()
    assert on_stale.stale_support == 1.0
    assert on_stale.grounding < on_fresh.grounding
    assert on_stale.score < on_fresh.score


def test_headline_incident_stale_v3_beside_fresh_v4(scorer):
    contexts = [stale(PRICING_V3), fresh(PRICING_V4)]
    quoting_v3 = scorer.score(QUOTE_V3, contexts)
    quoting_v4 = scorer.score(QUOTE_V3.replace("£12.50", "£15.00"), contexts)
    assert quoting_v3.stale_only_numbers == ("£12.50",)
    assert quoting_v4.stale_only_numbers == () and quoting_v4.unsupported_numbers == ()
    assert quoting_v3.score < quoting_v4.score


def test_neutral_stale_settings_make_staleness_irrelevant():
    cfg = FaithfulnessConfig(stale_weight=1.0, stale_number_penalty=1.0)
    s = FaithfulnessScorer(HashingEmbedder(dim=256), cfg)
    on_stale = s.score(QUOTE_V3, [stale(PRICING_V3)])
    assert on_stale.score == s.score(QUOTE_V3, [fresh(PRICING_V3)]).score


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (FaithfulnessConfig(number_penalty=0.0), 0.0),
        (FaithfulnessConfig(support_low=-1.0, support_high=0.0, number_penalty=0.5), 0.5),
        (FaithfulnessConfig(support_low=2.0, support_high=3.0, lexical_weight=0.0), 0.0),
        # Every word of the claim is in one passage sentence: the word witness alone grounds it.
        (FaithfulnessConfig(support_low=2.0, support_high=3.0, lexical_weight=1.0, number_penalty=1.0), 1.0),
        (FaithfulnessConfig(support_low=0.5, support_high=0.5, number_penalty=1.0), 1.0),
    ],
)
def test_clipping(config, expected):
    r = FaithfulnessScorer(HashingEmbedder(dim=256), config).score(
        "The Premium account costs £14.99 per month.", [fresh(PRICING_V4)])
    assert r.score == pytest.approx(expected)


WORDS = ["fee", "card", "account", "transfer", "£5", "3 days", "abroad", "Premium", "2%", "the",
         "is", "Thanks!", "interest", "1 March 2026", "blocked", "app", "."]
texts = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
contexts = st.lists(st.tuples(texts, st.booleans()), max_size=4).map(
    lambda cs: [stale(t) if old else fresh(t) for t, old in cs])
configs = st.builds(FaithfulnessConfig,
                    support_low=st.floats(-1, 1), support_high=st.floats(-1, 1),
                    stale_weight=st.floats(0, 1), number_penalty=st.floats(0, 1),
                    stale_number_penalty=st.floats(0, 1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), texts), contexts), max_size=6), configs)
def test_score_many_is_score_one_by_one_and_bounded(items, config):
    embedder = CountingEmbedder()
    scorer = FaithfulnessScorer(embedder, config)
    batch = scorer.score_many(items)
    assert len(embedder.calls) <= 1  # one encode per batch...
    if embedder.calls:
        assert len(set(embedder.calls[0])) == len(embedder.calls[0])  # ...of distinct texts
    assert batch == [scorer.score(r, c) for r, c in items]
    for r in batch:
        if r is not None:
            assert 0.0 <= r.score <= 1.0 and 0.0 <= r.grounding <= 1.0
            assert 0.0 <= r.stale_support <= 1.0 + 1e-12


def test_shared_passages_are_embedded_once():
    embedder = CountingEmbedder()
    items = [(f"Premium costs £15.00, answer {i}.", [fresh(PRICING_V4), fresh(DELIVERY)])
             for i in range(20)]
    FaithfulnessScorer(embedder).score_many(items)
    (call,) = embedder.calls
    assert len(call) == 20 + len(sentences(PRICING_V4)) + len(sentences(DELIVERY))


# --- the real model --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_scorer() -> FaithfulnessScorer:
    os.environ["HF_HUB_OFFLINE"] = "1"
    from pipelines.embedding import SentenceTransformerEmbedder

    return FaithfulnessScorer(SentenceTransformerEmbedder())


PREMIUM = ("Premium account pricing. The Premium account costs £12.50 per month. It includes free "
           "international transfers up to £5,000 per month and travel insurance for you and your "
           "partner. You can cancel at any time without a fee.")


@pytest.mark.slow
def test_real_model_on_banking_answers(real_scorer):
    ctx = [fresh(PREMIUM), fresh(DELIVERY)]
    grounded = ("Premium is £12.50 a month, and it comes with travel cover for you and your "
                "partner. You can cancel whenever you like at no cost.")
    invented = ("Premium includes airport lounge access and a dedicated relationship manager. "
                "It also gives cashback on all your purchases.")
    wrong_price = "The Premium account costs £14.99 per month. It includes travel insurance."
    quote = "The Premium account costs £12.50 per month. It includes travel insurance."
    stale_ctx = [stale(PREMIUM), fresh(DELIVERY)]

    r_grounded, r_invented, r_wrong, r_fresh, r_stale = real_scorer.score_many(
        [(grounded, ctx), (invented, ctx), (wrong_price, ctx), (quote, ctx), (quote, stale_ctx)])

    # A loose paraphrase ("travel cover" for "travel insurance", "at no cost" for "without a fee")
    # pays for its own words since the word check is on (1.0 before): the documented trade-off.
    assert r_grounded.score >= 0.5
    assert r_grounded.score - r_invented.score >= 0.4
    assert r_wrong.unsupported_numbers == ("£14.99",) and r_wrong.score < 0.5
    assert r_fresh.score >= 0.8
    assert r_stale.stale_only_numbers == ("£12.50",) and r_stale.stale_support > 0.9
    assert r_stale.score < r_fresh.score - 0.3


# --- glued passages and the lexical check ----------------------------------------------------

def test_glued_sentences_of_scraped_passages_are_split():
    from pipelines.faithfulness import _context_sentences

    assert sentences("Arthur's Magazine (1844–1846) was a periodical.First for Women is a magazine.") == [
        "Arthur's Magazine (1844–1846) was a periodical.", "First for Women is a magazine."]
    assert sentences("It costs £12.50.") == ["It costs £12.50."]  # decimals stay whole
    pieces = _context_sentences("Michael Jackson wrote Dancing the DreamDancing the Dream is written by him")
    assert "Michael Jackson wrote Dancing the Dream" in pieces
    assert "Dancing the Dream is written by him" in pieces


@pytest.mark.parametrize(
    ("claim", "share"),
    [
        ("The head office is in Delhi.", 1.0),
        ("The head office is in Mumbai.", 2 / 3),
        ("Thanks!", 1.0),  # no content word: nothing to check
        ("Offices are in Delhi", 1.0),  # plural and singular are one word
    ],
)
def test_lexical_support(claim, share):
    from pipelines.faithfulness import lexical_support

    assert lexical_support(claim, frozenset({"head", "office", "delhi"})) == pytest.approx(share)


def test_word_check_is_on_by_default_and_cuts_invented_names():
    ctx = [fresh("The Oberoi Group is a hotel company with its head office in Delhi.")]
    on = FaithfulnessScorer(HashingEmbedder(dim=256))
    off = FaithfulnessScorer(HashingEmbedder(dim=256), FaithfulnessConfig(lexical_weight=0.0))
    invented = "The Oberoi Group has its head office in Mumbai, run by Tata Sons."
    right = "The Oberoi Group has its head office in Delhi."
    assert off.score(invented, ctx).grounding == off.score(invented, ctx).semantic
    assert on.score(invented, ctx).lexical < 1.0 and on.score(right, ctx).lexical == 1.0
    assert on.score(invented, ctx).score < off.score(invented, ctx).score
    assert on.score(right, ctx).score == off.score(right, ctx).score == 1.0
    # A bare name (no claim sentence) is checked by its words alone.
    assert on.score("Mumbai", ctx).score == 0.0 and on.score("Delhi", ctx).score == 1.0


@pytest.mark.parametrize(
    ("claim", "support"),
    [
        ("The Oberoi Group is a hotel company.", 1.0),  # all in one passage sentence
        ("The Oberoi Group has its office in Delhi.", 0.75),  # 4 words anywhere, 2 together
        ("The Oberoi Group has its office in Mumbai.", 0.625),  # and one nowhere
        ("Mumbai Tata", 0.0),
        ("Thanks, hope this helps!", 1.0),  # no content word: nothing to check
    ],
)
def test_word_support(claim, support):
    from pipelines.faithfulness import word_support

    passages = [frozenset({"oberoi", "group", "hotel", "company"}), frozenset({"office", "delhi"})]
    assert word_support(claim, passages) == pytest.approx(support)
    assert word_support(claim, []) == (1.0 if support == 1.0 and "Thanks" in claim else 0.0)


@pytest.mark.parametrize(
    ("text", "phrases"),
    [
        ("Denver Avalanche.", [("Denver", "Avalanche")]),
        ("The Yogi Bear and Boo Boo Ride.", [("Yogi", "Bear"), ("Boo", "Boo", "Ride")]),
        ("They drafted Baltimore's Rudy Gay.", [("Rudy", "Gay")]),  # a possessive ends a name
        ("It opened in Delhi, Oberoi said.", []),  # a comma parts names
        ("Premium costs £12.50 per month.", []),  # a sentence's first word of a long sentence
        ("Founded by Lee Kuan-Yew in 1965.", [("Lee", "Kuan", "Yew")]),  # a hyphen joins
    ],
)
def test_name_phrases(text, phrases):
    from pipelines.faithfulness import name_phrases

    assert name_phrases(text) == phrases


def test_name_made_of_two_facts_costs_the_name_penalty(scorer):
    ctx = [fresh("The franchise moved to Denver, Colorado in May 1995 and was renamed the "
                 "Colorado Avalanche. Neil N. LaBute directed it.")]
    joined = scorer.score("It became the Denver Avalanche.", ctx)
    assert joined.unsupported_names == ("Denver Avalanche",)
    assert joined.score == pytest.approx(joined.grounding * scorer.config.name_penalty)
    for right in ("It became the Colorado Avalanche.", "It was directed by Neil LaBute."):  # initials skipped
        assert scorer.score(right, ctx).unsupported_names == ()


def test_words_from_stale_passages_count_stale_weight():
    cfg = FaithfulnessConfig(lexical_weight=1.0, lexical_low=0.0, stale_number_penalty=1.0)
    s = FaithfulnessScorer(HashingEmbedder(dim=256), cfg)
    assert s.score(QUOTE_V3, [fresh(PRICING_V3)]).lexical == 1.0
    assert s.score(QUOTE_V3, [stale(PRICING_V3)]).lexical == pytest.approx(cfg.stale_weight)
    assert s.score(QUOTE_V3, [stale(PRICING_V3), fresh(PRICING_V4)]).lexical == 1.0  # v4 has the words


def test_product_pleasantries_are_not_claims():
    assert is_trivial("Thanks for getting in touch.")
    assert not is_trivial("Get a new card in the app.")


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Here is what applies to your account: " + QUOTE_V3, [QUOTE_V3]),
        ("Thanks for getting in touch. " + QUOTE_V3 + " Hope this helps!", [QUOTE_V3]),
        ("From 1 March: the fee is £5.", ["From 1 March: the fee is £5."]),  # a lead-in with a figure claims
        ("Steps: open the app, tap Cards.", ["open the app, tap Cards."]),
    ],
)
def test_claims_leave_out_lead_ins_and_pleasantries(response, expected):
    from pipelines.faithfulness import claims

    assert claims(response) == expected


def test_product_wording_around_a_quote_costs_nothing(scorer):
    for template in ("Here is what applies to your account: {q}", "Thanks for getting in touch. {q}",
                     "{q} Is there anything else I can help with?"):
        assert scorer.score(template.format(q=QUOTE_V3), [fresh(PRICING_V3)]).score == 1.0


@pytest.mark.parametrize(
    ("response", "unsupported"),
    [
        ("The Oberoi Group has its head office in Delhi.", ()),
        ("The Oberoi Group has its head office in Mumbai.", ("Mumbai",)),
        ("Its office is in Mumbai, and Mumbai's is run by Tata.", ("Mumbai", "Tata")),  # once each
        ("Mumbai", ("Mumbai",)),  # a bare phrase: its first word is a name too
        ("Sure, the office opened on 1 April 2026 in Delhi.", ()),  # dates are the figure check's
        ("Unfortunately the head office of the Oberoi Group is not in Delhi.", ()),  # sentence start
    ],
)
def test_unsupported_names_cost_the_name_penalty(scorer, response, unsupported):
    ctx = [fresh("The Oberoi Group is a hotel company with its head office in Delhi.")]
    r = scorer.score(response, ctx)
    assert r.unsupported_names == unsupported
    assert r.score == pytest.approx(r.grounding * scorer.config.name_penalty ** len(unsupported)
                                    * scorer.config.number_penalty ** len(r.unsupported_numbers))
