"""Faithfulness of an answer to the passages it was grounded on, when the producer sends none.

Three checks, multiplied:

- **Grounding**: each claim (sentence) of the answer has two witnesses. *Meaning*: its best
  cosine to a sentence of the contexts, mapped linearly from ``[support_low, support_high]`` to
  ``[0, 1]``. *Words*: its content words must be words the contexts use, best all in one
  passage sentence (see :func:`word_support`), mapped from ``[lexical_low, lexical_high]``. A
  claim's grounding is ``lexical_weight`` of the second plus the rest of the first; support from
  a stale passage (its source changed after indexing) counts only ``stale_weight`` as much in
  both. Grounding is the mean over claims, weighted by how much each claims.
- **Names**: every name the answer states (a capitalised word, see :func:`names`) must be a
  word some context uses, and a name of several words must be one the contexts spell together
  (see :func:`name_phrases`); each distinct one that fails multiplies the score by
  ``name_penalty``. Embeddings place "based in Mumbai" as close to a passage about Delhi as
  "based in Delhi"; an invented name is the plainest sign of an invented detail, and "Denver
  Avalanche" built from a passage's "Denver, Colorado" and "Colorado Avalanche" the plainest
  sign of two facts run together.
- **Figures**: every amount, percentage, date or count the answer states must appear in some
  context (see :mod:`pipelines.quantities`). Each distinct figure found in no context multiplies
  the score by ``number_penalty``; one found only in stale passages by ``stale_number_penalty``.
  Embeddings barely tell "£12.50" from "£15.00", so this is what catches a wrong price; and an
  answer faithfully quoting a stale pricing table is wrong in a way only staleness reveals.

>>> from datetime import datetime, timezone
>>> from pipelines.embedding import HashingEmbedder
>>> from pipelines.interaction import Context
>>> scorer = FaithfulnessScorer(HashingEmbedder(dim=256))
>>> fee = [Context(text="The Plus account costs £3 a month. Cards arrive in 5 working days.")]
>>> r = scorer.score("The Plus account costs £3 a month.", fee)
>>> round(r.score, 2), r.unsupported_numbers
(1.0, ())
>>> r = scorer.score("The Plus account costs £4 a month.", fee)
>>> r.score <= 0.5, r.unsupported_numbers
(True, ('£4',))
>>> old = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> stale = [Context(text=fee[0].text, doc_updated_at=old.replace(month=3), indexed_at=old)]
>>> r = scorer.score("The Plus account costs £3 a month.", stale)
>>> r.stale_only_numbers, r.stale_support
(('£3',), 1.0)
>>> scorer.score(None, fee) is None, scorer.score("Hello", []) is None
(True, True)
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from pipelines.config import FaithfulnessConfig
from pipelines.embedding import Embedder
from pipelines.interaction import Context
from pipelines.quantities import Quantity, extract_quantities, supported

__all__ = ["FaithfulnessResult", "FaithfulnessScorer", "claims", "is_trivial", "sentences"]

# Tokens before a full stop that do not end a sentence ("e.g. the fee", "approx. 5 days").
_ABBREVIATIONS = frozenset(
    "e.g eg i.e ie etc vs approx appx mr mrs ms dr st no nos ltd inc co plc incl excl min max "
    "fig ref dept est jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat "
    "sun a.m p.m".split())
_BOUNDARY = re.compile(r"[.!?]+[\"'’”)\]]*(?=\s)|\n")
# Sentences glued without a space ("...the 19th century.First for Women is..."), as scraped and
# concatenated passages often are: a space is put back so the boundary above can see them.
_GLUED = re.compile(r"(?<=[a-z0-9)\]])([.!?])(?=[A-Z][a-z])")
# Facts concatenated without any punctuation ("written by Michael JacksonDancing the Dream is"):
# a lowercase run followed by a capital inside one token.
_JOINED = re.compile(r"(?:(?<=[a-z]{2})|(?<=\)))(?=[A-Z])")
_BULLET = re.compile(r"^\s*(?:[-*•·‣▪]|\(?\d{1,2}[.)])\s+")

# Words that carry no checkable claim: function words and the pleasantries an assistant wraps
# answers in ("Thanks!", "Hope this helps."). A sentence with fewer than two other words and no
# digit is not a claim, so it neither raises nor lowers grounding.
_FILLER = frozenset("""
a about above after again all also am an and any anything are as at be been being both but by
can could did do does doing done for from had has have having he her here hers him his how i if
in into is it its itself just let me more most my no nor not now of off on once only or other
our ours out over own same she should so some something such than that the their theirs them
then there these they this those through to too under until up very was we were what when
where which while who whom why will with would you your yours yes yeah ok okay
hi hello hey dear thanks thank welcome hope helps helped help helpful glad happy pleasure great
sure certainly course else questions question know feel free reach please kind regards best
cheers good morning afternoon evening today assist assistance sorry apologies apologise
understand further need anytime wonderful perfect absolutely there's it's i'm i'll you're
get getting touch reaching
don't can't let's that's here's
""".split())
_WORD = re.compile(r"[A-Za-z][A-Za-z']+")
_CLAUSE = re.compile(r"[;:]\s+|,\s+|\s+(?:and|but|while|whereas|although|which)\s+")


def sentences(text: str) -> list[str]:
    """Split ``text`` into sentences; decimals, amounts and abbreviations do not end one.

    >>> sentences("The fee is £12.50. It applies e.g. abroad! Lines\\n- and bullets too")
    ['The fee is £12.50.', 'It applies e.g. abroad!', 'Lines', 'and bullets too']
    >>> sentences("It was founded in 1844.First for Women is newer. Ask St.Louis staff.")
    ['It was founded in 1844.', 'First for Women is newer.', 'Ask St. Louis staff.']
    """
    text = _GLUED.sub(r"\1 ", text)
    out: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group(0) != "\n":
            before = text[start:m.start()].split()
            token = before[-1].lower().lstrip("(\"'") if before else ""
            if token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
                continue
            if len(before) == 1 and token.isdigit() and m.group(0) == ".":
                continue  # "1. Open the app": an enumerator, not a sentence
            rest = text[m.end():].lstrip()
            if rest[:1].islower():
                continue
        _keep(text[start:m.end()], out)
        start = m.end()
    _keep(text[start:], out)
    return out


def _keep(piece: str, out: list[str]) -> None:
    piece = _BULLET.sub("", piece.strip()).strip()
    if piece:
        out.append(piece)


_LEAD_IN = re.compile(r"^[^:\d]{1,80}:\s+(?=\S)")


def claims(text: str) -> list[str]:
    """The sentences of an answer that claim something: pleasantries are left out, and so is a
    lead-in that ends in a colon ("Here is what applies to your account: ..."), which introduces
    a claim rather than making one (a lead-in stating a figure stays).

    >>> claims("Thanks! Here is what applies to your account: Cards cost £5. Fees from 1 May: none.")
    ['Cards cost £5.', 'Fees from 1 May: none.']
    """
    out = (_LEAD_IN.sub("", s, count=1) for s in sentences(text))
    return list(dict.fromkeys(s for s in out if s and not is_trivial(s)))


def is_trivial(sentence: str) -> bool:
    """A greeting or pleasantry with no content to ground ("Thanks!", "Hope this helps.").

    >>> is_trivial("Thanks, hope this helps!"), is_trivial("Your card arrives in 5 days.")
    (True, False)
    """
    if any(ch.isdigit() for ch in sentence):
        return False
    content = [w for w in _WORD.findall(sentence.lower()) if w not in _FILLER and len(w) >= 3]
    return len(content) < 2


def claim_weight(sentence: str) -> float:
    """How much a sentence claims: its content words, plus two for each figure it states.

    An answer's grounding is the weighted mean of its sentences' support, so a content-light
    aside ("You can also find this in the app.") moves it far less than the fact it wraps.

    >>> claim_weight("You can also find this in the app."), claim_weight("Transfers cost £1.50 each.")
    (2.0, 5.0)
    """
    content = [w for w in _WORD.findall(sentence.lower()) if w not in _FILLER and len(w) >= 3]
    return float(max(1, len(content) + 2 * len(extract_quantities(sentence))))


def _stem(word: str) -> str:
    word = word.lower().replace("’", "'").removesuffix("'s").strip("'-")
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry its claim, lowercased and lightly stemmed.

    Function words, pleasantries and words under three letters are left out; so are figures,
    which the numeric check owns.

    >>> content_words("Thanks! The Oberoi family's hotels are based in Delhi.")
    ['oberoi', 'family', 'hotel', 'based', 'delhi']
    """
    out = []
    for w in _WORD.findall(text):
        s = _stem(w)
        if len(s) >= 3 and s not in _FILLER and s not in ENGLISH_STOP_WORDS:
            out.append(s)
    return out


def lexical_support(claim: str, vocabulary: frozenset[str]) -> float:
    """Share of the claim's content words that some context uses (1.0 when it has none).

    >>> lexical_support("The head office is in Mumbai.", frozenset({"head", "office", "delhi"}))
    0.6666666666666666
    """
    words = content_words(claim)
    return 1.0 if not words else sum(w in vocabulary for w in words) / len(words)


def word_support(claim: str, passages: Sequence[frozenset[str]],
                 vocabulary: frozenset[str] | None = None) -> float:
    """How far the contexts use the claim's content words (1.0 when it has none).

    A word counts fully when the claim's best passage sentence (the one sharing most of its
    words) uses it, half when only another sentence does, and not at all when none does: a claim
    restates one place of its sources, while words gathered from all over them are the mark of
    facts run together. Words no passage uses are what an answer adds on its own: an invented
    detail, or the product's own wording (see ``lexical_low``). ``vocabulary``, the union of
    ``passages`` when the caller has it, only saves work.

    >>> passages = [frozenset({"oberoi", "group", "hotel", "company"}), frozenset({"office", "delhi"})]
    >>> word_support("The Oberoi Group is a hotel company.", passages)
    1.0
    >>> word_support("The Oberoi Group has its office in Delhi.", passages)  # 2 of 4 in the best one
    0.75
    >>> word_support("The Oberoi Group has its office in Mumbai.", passages)  # and 1 of 4 nowhere
    0.625
    """
    return _word_support(content_words(claim), passages, vocabulary)


def _word_support(words: Sequence[str], passages: Sequence[frozenset[str]],
                  vocabulary: frozenset[str] | None = None) -> float:
    if not words:
        return 1.0
    known = vocabulary if vocabulary is not None else frozenset().union(*passages)
    anywhere = sum(w in known for w in words)
    best = max((sum(w in v for w in words) for v in passages), default=0)
    return (best + anywhere) / (2 * len(words))


def names(text: str) -> list[str]:
    """The names an answer states: capitalised words inside a sentence (a sentence's first word
    only when the sentence is a bare phrase of at most four words, such as "Denver Avalanche").

    >>> names("Sure. The Oberoi Group is based in Delhi since 1 April 2026, says the BBC. Denver Avalanche")
    ['Oberoi', 'Group', 'Delhi', 'BBC', 'Denver', 'Avalanche']
    """
    out: list[str] = []
    for sentence in sentences(text):
        for q in reversed(extract_quantities(sentence)):  # "1 April 2026" is the figure check's
            sentence = sentence[:q.span[0]] + " " + sentence[q.span[1]:]
        words = _WORD.findall(sentence)
        for i, w in enumerate(words):
            if not w[0].isupper() or (i == 0 and len(words) > 4):
                continue
            stem = _stem(w)
            if len(stem) >= 2 and stem not in _FILLER and stem not in ENGLISH_STOP_WORDS:
                out.append(w)
    return out


_NAME_TOKEN = re.compile(r"[A-Za-z][A-Za-z'’]*")


def name_phrases(text: str) -> list[tuple[str, ...]]:
    """Names of several words: runs of capitalised words (as :func:`names` finds them) joined by
    a space or hyphen only. A possessive ends its run ("Baltimore's Rudy Gay" is two names).

    >>> name_phrases("The Yogi Bear and Boo Boo Ride opened in Orlando. Denver Avalanche")
    [('Yogi', 'Bear'), ('Boo', 'Boo', 'Ride'), ('Denver', 'Avalanche')]
    """
    out: list[tuple[str, ...]] = []
    for sentence in sentences(text):
        for q in reversed(extract_quantities(sentence)):
            sentence = sentence[:q.span[0]] + " , " + sentence[q.span[1]:]
        tokens = list(_NAME_TOKEN.finditer(sentence))
        run: list[str] = []
        for i, m in enumerate(tokens):
            w = m.group(0)
            stem = _stem(w)
            is_name = (w[0].isupper() and (i > 0 or len(tokens) <= 4) and len(stem) >= 2
                       and stem not in _FILLER and stem not in ENGLISH_STOP_WORDS)
            joined = i > 0 and sentence[tokens[i - 1].end():m.start()] in (" ", "-")
            if is_name and run and joined and not run[-1].lower().endswith(("'s", "’s")):
                run.append(w)
                continue
            if len(run) >= 2:
                out.append(tuple(run))
            run = [w] if is_name else []
        if len(run) >= 2:
            out.append(tuple(run))
    return out


@lru_cache(maxsize=4096)
def _context_pairs(text: str) -> frozenset[tuple[str, str]]:
    """Word pairs of a passage at most one word apart ("Neil N. LaBute" still says "Neil LaBute":
    one-letter initials are not words here)."""
    words = [_stem(w) for w in _WORD.findall(text)]
    return frozenset((a, b) for i, a in enumerate(words) for b in words[i + 1:i + 3])


def _clauses(sentence: str) -> list[str]:
    parts = [p.strip(" ,;:.") for p in _CLAUSE.split(sentence)]
    parts = [p for p in parts if len(p.split()) >= 3]
    return parts if len(parts) > 1 else []


@lru_cache(maxsize=4096)
def _context_sentences(text: str) -> tuple[str, ...]:
    """The passage's sentences, each followed by its clauses when it has several.

    A long passage sentence often packs several facts ("free transfers up to £5,000 and travel
    insurance"); an answer restating one of them matches the clause far better than the whole.
    Passages repeat across interactions, so the split is cached.
    """
    out: list[str] = []
    for s in sentences(text):
        out.append(s)
        out.extend(_clauses(s))
        pieces = [p.strip() for p in _JOINED.split(s)]
        if len(pieces) > 1:
            out.extend(p for p in pieces if len(p.split()) >= 3)
    return tuple(dict.fromkeys(out))


@lru_cache(maxsize=4096)
def _context_vocabulary(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in _WORD.findall(text))


@lru_cache(maxsize=4096)
def _context_quantities(text: str) -> tuple[Quantity, ...]:
    return tuple(extract_quantities(text, number_words=True))


@dataclass(frozen=True)
class FaithfulnessResult:
    """How far an answer is supported by its contexts, and which figures were not."""

    score: float  # in [0, 1], 1 = fully supported by the contexts
    grounding: float  # claim-level grounding before the numeric check
    unsupported_numbers: tuple[str, ...]  # raw text of quantities found in no context
    stale_only_numbers: tuple[str, ...]  # found only in stale contexts
    stale_support: float  # share of the answer's support that came from stale passages
    lexical: float = 1.0  # claim-weighted word support (see word_support), stale discount applied
    unsupported_names: tuple[str, ...] = ()  # names no context uses, or spells together
    semantic: float = 1.0  # claim-weighted embedding support alone (no lexical, name or figure check)


@dataclass(frozen=True)
class _Prepared:
    """One item after the text work, waiting for its embeddings."""

    claims: tuple[str, ...]
    weights: tuple[float, ...]  # per claim, see claim_weight
    passages: tuple[str, ...]  # distinct context sentences
    stale: tuple[bool, ...]  # per passage sentence: from a stale context
    unsupported: tuple[str, ...]
    stale_only: tuple[str, ...]
    lexical: tuple[float, ...]  # per claim, word support from fresh passages (see word_support)
    stale_lexical: tuple[float, ...]  # ...and from all passages, stale ones included
    bare_lexical: tuple[float, float]  # both, for an answer with no claim (a bare name, "Delhi")
    unsupported_names: tuple[str, ...]


_DEFAULT_CONFIG = FaithfulnessConfig()


@dataclass(frozen=True)
class _ContextView:
    """The text work on one interaction's contexts (a set that repeats across interactions)."""

    seen: tuple[tuple[str, bool], ...]  # distinct (passage sentence, stale), in order
    fresh_q: tuple[Quantity, ...]
    stale_q: tuple[Quantity, ...]
    vocabulary: frozenset[str]
    pairs: frozenset[tuple[str, str]]
    fresh_v: tuple[frozenset[str], ...]  # per fresh passage sentence, its words
    all_v: tuple[frozenset[str], ...]
    fresh_known: frozenset[str]
    all_known: frozenset[str]


@dataclass(frozen=True)
class _ResponseView:
    """The text work on one answer that does not depend on its contexts."""

    quantities: tuple[Quantity, ...]
    claims: tuple[str, ...]
    weights: tuple[float, ...]
    names: tuple[tuple[str, str], ...]  # (stem, name), last name first
    phrases: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]  # (words, stems)
    words: tuple[tuple[str, ...], ...]  # content words per claim (of the whole answer when no claim)


class _Lru:
    """A small least-recently-used map (the scorer's caches; pure text work, so a hit is exact)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.data: OrderedDict = OrderedDict()

    def get(self, key, make):
        if self.capacity <= 0:
            return make()
        try:
            self.data.move_to_end(key)
            return self.data[key]
        except KeyError:
            value = self.data[key] = make()
            if len(self.data) > self.capacity:
                self.data.popitem(last=False)
            return value


class FaithfulnessScorer:
    """Scores answers against their contexts with one embedding call per batch.

    The text work (sentences, claims, figures, names, words) is pure, and answers and context sets
    repeat across interactions, so it is cached: per answer with its contexts, per context set and
    per answer text (``cache_size`` entries each, 0 turns the caches off). A cached score equals
    the uncached one exactly (tested); sentence vectors are the embedder's (a
    :class:`pipelines.embedding.CachedEmbedder` remembers those).
    """

    def __init__(self, embedder: Embedder, config: FaithfulnessConfig = _DEFAULT_CONFIG, cache_size: int = 4096):
        self.embedder = embedder
        self.config = config
        self.cache_size = cache_size
        self._prepared = _Lru(cache_size)
        self._contexts = _Lru(cache_size)
        self._responses = _Lru(cache_size)

    def score(self, response: str | None, contexts: Sequence[Context]) -> FaithfulnessResult | None:
        """The faithfulness of one answer, or None when there is nothing to score or ground on."""
        return self.score_many([(response, contexts)])[0]

    def score_many(
        self, items: Sequence[tuple[str | None, Sequence[Context]]]
    ) -> list[FaithfulnessResult | None]:
        """``score`` for each item; every sentence of the batch is embedded in one call."""
        prepared = [self._prepare(response, contexts) for response, contexts in items]
        texts: dict[str, None] = {}
        for p in prepared:
            if p is not None and p.claims:
                texts.update(dict.fromkeys(p.claims))
                texts.update(dict.fromkeys(p.passages))
        index = {t: i for i, t in enumerate(texts)}
        vectors = self.embedder.encode(list(texts)) if texts else None
        return [None if p is None else self._finish(p, vectors, index) for p in prepared]

    def _prepare(self, response: str | None, contexts: Sequence[Context]) -> _Prepared | None:
        if response is None or not response.strip():
            return None
        key = tuple((ctx.text, ctx.stale) for ctx in contexts)
        return self._prepared.get((response, key), lambda: self._prepare_new(response, key))

    def _prepare_new(self, response: str, contexts: tuple[tuple[str, bool], ...]) -> _Prepared | None:
        c = self._contexts.get(contexts, lambda: _context_view(contexts))
        if c is None:
            return None
        r = self._responses.get(response, lambda: _response_view(response))
        unsupported: list[str] = []
        stale_only: list[str] = []
        counted: set[tuple[str, float | str, str | None]] = set()
        for q in r.quantities:
            fact = (q.kind, q.value, q.unit)
            # A figure repeated in the answer is one claim, penalised once.
            if fact in counted or supported(q, c.fresh_q):
                continue
            counted.add(fact)
            (stale_only if supported(q, c.stale_q) else unsupported).append(q.raw)
        vocabulary, pairs = c.vocabulary, c.pairs
        bad_names = {stem: n for stem, n in r.names if stem not in vocabulary}
        for phrase, stems in r.phrases:
            # Every word known but never together: two facts run into one name.
            if (all(w in vocabulary for w in stems)
                    and any((a, b) not in pairs for a, b in zip(stems, stems[1:], strict=False))):
                bad_names[" ".join(stems)] = " ".join(phrase)
        fresh_w = tuple(_word_support(w, c.fresh_v, c.fresh_known) for w in r.words)
        all_w = tuple(_word_support(w, c.all_v, c.all_known) for w in r.words)
        return _Prepared(r.claims, r.weights, tuple(s for s, _ in c.seen),
                         tuple(st for _, st in c.seen), tuple(unsupported), tuple(stale_only),
                         fresh_w if r.claims else (), all_w if r.claims else (),
                         (fresh_w[0], all_w[0]),
                         tuple(bad_names.values())[::-1])

    def _finish(self, p: _Prepared, vectors: np.ndarray | None,
                index: dict[str, int]) -> FaithfulnessResult:
        cfg = self.config
        semantic, stale_support = 1.0, 0.0
        # Words found only in stale passages count stale_weight, as their meaning does below.
        words = np.maximum(np.asarray(p.lexical or p.bare_lexical[:1]),
                           cfg.stale_weight * np.asarray(p.stale_lexical or p.bare_lexical[1:]))
        lexical = float(np.average(words, weights=p.weights or None))
        lexical_ramped = _ramp(words, cfg.lexical_low, cfg.lexical_high)
        if p.claims and vectors is not None:
            claim_vectors = vectors[[index[c] for c in p.claims]].astype(np.float64)
            passages = vectors[[index[s] for s in p.passages]].astype(np.float64)
            sims = np.clip(claim_vectors @ passages.T, 0.0, 1.0)
            stale = np.asarray(p.stale, dtype=bool)
            best_fresh = sims[:, ~stale].max(axis=1) if (~stale).any() else np.zeros(len(sims))
            best_stale = sims[:, stale].max(axis=1) if stale.any() else np.zeros(len(sims))
            support = np.maximum(best_fresh, cfg.stale_weight * best_stale)
            weights = np.asarray(p.weights)
            ramped = _ramp(support, cfg.support_low, cfg.support_high)
            semantic = float(np.average(ramped, weights=weights))
            # Two witnesses per claim, averaged rather than multiplied: the embedding is noisy on
            # short claims (a right two-word answer can sit at cosine 0.4 to its own passage) and
            # blind to a swapped name, the words are blind to paraphrase and to reasoning.
            w = cfg.lexical_weight
            grounding = float(np.average((1 - w) * ramped + w * lexical_ramped, weights=weights))
            # Which passage a claim leans on is read before the stale discount: the question is
            # where the answer came from, not how much that source is still worth.
            best = np.maximum(best_fresh, best_stale)
            total = float(best.sum())
            if total > 0:
                stale_support = float(best[best_stale > best_fresh].sum()) / total
        penalty = (cfg.number_penalty ** len(p.unsupported)
                   * cfg.stale_number_penalty ** len(p.stale_only)
                   * cfg.name_penalty ** len(p.unsupported_names))
        if not p.claims or vectors is None:
            # No claim sentence (a bare name, "Delhi"): its words are all there is to check.
            grounding = float(lexical_ramped[0]) if cfg.lexical_weight > 0 else 1.0
        score = min(1.0, max(0.0, grounding * penalty))
        return FaithfulnessResult(score, grounding, p.unsupported, p.stale_only, stale_support,
                                  lexical, p.unsupported_names, semantic)


def _context_view(contexts: tuple[tuple[str, bool], ...]) -> _ContextView | None:
    """None when the contexts hold no sentence to ground on."""
    seen: dict[tuple[str, bool], None] = {}
    fresh_q: list[Quantity] = []
    stale_q: list[Quantity] = []
    vocabulary: frozenset[str] = frozenset()
    pairs: frozenset[tuple[str, str]] = frozenset()
    for text, stale in contexts:
        for s in _context_sentences(text):
            seen[(s, stale)] = None
        vocabulary |= _context_vocabulary(text)
        pairs |= _context_pairs(text)
        (stale_q if stale else fresh_q).extend(_context_quantities(text))
    if not seen:
        return None
    fresh_v = tuple(_context_vocabulary(s) for s, old in seen if not old)
    all_v = tuple(_context_vocabulary(s) for s, _ in seen)
    return _ContextView(tuple(seen), tuple(fresh_q), tuple(stale_q), vocabulary, pairs, fresh_v, all_v,
                        frozenset().union(*fresh_v), frozenset().union(*all_v))


def _response_view(response: str) -> _ResponseView:
    claim_texts = tuple(claims(response))
    return _ResponseView(
        tuple(extract_quantities(response)), claim_texts, tuple(claim_weight(c) for c in claim_texts),
        tuple((_stem(n), n) for n in reversed(names(response))),
        tuple((phrase, tuple(_stem(w) for w in phrase)) for phrase in name_phrases(response)),
        tuple(tuple(content_words(c)) for c in (claim_texts or (response,))))


def _ramp(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """0 at or below ``low``, 1 at or above ``high``, linear between (a step if high <= low)."""
    if high <= low:
        return (x >= high).astype(np.float64)
    return np.clip((x - low) / (high - low), 0.0, 1.0)
