"""Readable names and categories for intent clusters.

A cluster is named by the few terms that are frequent in its queries *and* rare in the other
clusters (class-based TF-IDF, as in BERTopic): ``tf(term, cluster) * log(1 + K / df(term))``
where ``K`` is the number of clusters and ``df`` the number of clusters whose queries use the term.

- :class:`TermCounts` counts a cluster's word tokens with a capped vocabulary.
- :func:`distinctive_terms` ranks every cluster's terms by c-TF-IDF.
- :class:`Representative` keeps the member query closest to the (moving) centroid.
- :class:`CategoryIndex` decides a cluster's category: override, then intent hints, then the
  nearest seed phrase, then the policy default. Seed phrases are embedded by the caller, so this
  module does no I/O and loads no model.

>>> docs = {"a": TermCounts(50), "b": TermCounts(50)}
>>> for q in ["Why was I charged a fee?", "fee for a transfer", "transfer fee charged"]:
...     _ = docs["a"].update(q)
>>> for q in ["Where is my card?", "my card has not arrived", "card delivery"]:
...     _ = docs["b"].update(q)
>>> distinctive_terms(docs, top=3)["a"]
('fee', 'charged', 'transfer')
"""

from __future__ import annotations

import base64
import heapq
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from pipelines.policy import CategoryPolicy

_TOKEN = re.compile(r"[a-z][a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Lowercase word tokens of two or more characters, English stop words removed.

    >>> tokens("Why was I charged a FEE for my transfer?")
    ['charged', 'fee', 'transfer']
    """
    return [t for t in _TOKEN.findall(text.lower()) if t not in ENGLISH_STOP_WORDS]


def encode_array(a: np.ndarray) -> dict:
    """A JSON-safe, exact encoding of a numpy array (dtype, shape, base64 bytes)."""
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape),
            "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def decode_array(d: dict) -> np.ndarray:
    """Inverse of :func:`encode_array` (returns a writable copy)."""
    raw = base64.b64decode(d["b64"])
    return np.frombuffer(raw, dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


class TermCounts:
    """Term counts of one cluster's queries; past ``capacity`` distinct terms the rarest go.

    >>> t = TermCounts(capacity=2).update("fee fee fee rate rate card")
    >>> dict(t.counts), t.total
    ({'fee': 3, 'rate': 2}, 6)
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.counts: Counter[str] = Counter()
        self.total = 0  # tokens counted, including those of forgotten terms (tf denominator)

    def update(self, text: str) -> TermCounts:
        toks = tokens(text)
        self.counts.update(toks)
        self.total += len(toks)
        if len(self.counts) > self.capacity:
            keep = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[: self.capacity]
            self.counts = Counter(dict(keep))
        return self

    def to_state(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())), "total": self.total}

    @classmethod
    def from_state(cls, state: dict, capacity: int) -> TermCounts:
        t = cls(capacity)
        t.counts = Counter(state["counts"])
        t.total = int(state["total"])
        return t


def _weight(k: int, df: int) -> float:
    """A term's c-TF-IDF weight ``log(1 + k / df)`` (one formula for both paths)."""
    return math.log(1 + k / df)


def _scores(tc: TermCounts, df: Mapping[str, int], k: int,
            weights: dict[str, float] | None = None) -> list[tuple[float, str]]:
    """c-TF-IDF of each of a cluster's terms: ``tf * log(1 + k / df)``. ``weights``: a cache of
    :func:`_weight` at this ``k`` and ``df`` (filled as terms are met)."""
    denom = max(tc.total, 1)
    if weights is None:
        return [(c / denom * _weight(k, df[t]), t) for t, c in tc.counts.items()]
    out = []
    for t, c in tc.counts.items():
        w = weights.get(t)
        if w is None:
            w = weights[t] = _weight(k, df[t])
        out.append((c / denom * w, t))
    return out


def _rank_key(st: tuple[float, str]) -> tuple[float, str]:
    return -st[0], st[1]


def distinctive_terms(docs: Mapping[str, TermCounts], top: int) -> dict[str, tuple[str, ...]]:
    """The ``top`` c-TF-IDF terms of every cluster (ties broken alphabetically)."""
    df: Counter[str] = Counter()
    for tc in docs.values():
        df.update(tc.counts.keys())
    k = len(docs)
    out: dict[str, tuple[str, ...]] = {}
    for cid, tc in docs.items():
        scored = heapq.nsmallest(top, _scores(tc, df, k), key=_rank_key)
        out[cid] = tuple(t for _, t in scored)
    return out


class DistinctiveTerms:
    """:func:`distinctive_terms` of a growing list of clusters, kept up to date incrementally.

    Exactly the same result as recomputing :func:`distinctive_terms` over all clusters, but a
    cluster's terms are recomputed only when they can have changed:

    - its own counts changed (the caller says so: :meth:`touch`);
    - the document frequency of one of its current top terms changed (any direction), or that of
      any of its terms went down (a term can only gain rank when its ``df`` falls);
    - the number of clusters ``k`` grew past the cluster's *limit*. A term's weight
      ``log(1 + k / df)`` grows with ``k``, by at most a factor ``k / k0`` from ``k0`` (concavity
      of the logarithm), so the ratio of two scores moves by at most that factor: an ordered pair
      of terms whose scores differ by a ratio ``r > 1`` keeps its order while ``k < k0 * r``, and
      a pair with the same ``df`` never changes order (same weight). The limit is the smallest
      ``k0 * r`` over the pairs that decide the top terms (consecutive top terms, and the last top
      term against every other term), with a safety margin; a tie between terms of different
      ``df`` gives limit ``k0`` (recomputed at the next growth).

    A ``df`` rise of a term outside a cluster's top only lowers that term's score, so it cannot
    change the top. Cluster *i* is ``docs[i]``; clusters are only ever appended.

    >>> docs = [TermCounts(50).update("fee fee charged"), TermCounts(50).update("card fee")]
    >>> d = DistinctiveTerms(top=2)
    >>> d.update(docs)
    {0, 1}
    >>> d.terms[0], d.terms[1]
    (('fee', 'charged'), ('card', 'fee'))
    """

    _MARGIN = 1e-9

    def __init__(self, top: int):
        self.top = top
        self.df: Counter[str] = Counter()
        self.terms: list[tuple[str, ...]] = []
        self._keys: list[frozenset[str]] = []  # each cluster's terms as df counts them
        self._has: dict[str, set[int]] = {}  # term -> clusters whose counts have it
        self._in_top: dict[str, set[int]] = {}  # term -> clusters whose top terms include it
        self._k0 = np.zeros(0)  # k when the cluster's terms were last computed
        self._limit = np.zeros(0)
        self._touched: set[int] = set()
        self._weights: dict[str, float] = {}  # term -> _weight at k = _weights_k and the current df
        self._weights_k = -1

    def touch(self, i: int) -> None:
        """Cluster ``i``'s counts changed."""
        self._touched.add(i)

    def update(self, docs: Sequence[TermCounts]) -> set[int]:
        """Bring every cluster's terms up to date; returns the clusters whose terms changed."""
        k = len(docs)
        if len(self._k0) < k:
            grow = max(k, 2 * len(self._k0)) - len(self._k0)
            self._k0 = np.concatenate([self._k0, np.zeros(grow)])
            self._limit = np.concatenate([self._limit, np.zeros(grow)])
        while len(self._keys) < k:
            self._touched.add(len(self._keys))
            self._keys.append(frozenset())
            self.terms.append(())
        if k != self._weights_k:
            self._weights = {}
            self._weights_k = k
        before: dict[str, int] = {}
        for i in self._touched:
            keys = frozenset(docs[i].counts)
            old = self._keys[i]
            if keys == old:
                continue
            for t in keys - old:
                before.setdefault(t, self.df[t])
                self.df[t] += 1
                self._has.setdefault(t, set()).add(i)
            for t in old - keys:
                before.setdefault(t, self.df[t])
                self.df[t] -= 1
                if not self.df[t]:
                    del self.df[t]
                self._has[t].discard(i)
            self._keys[i] = keys
        for t in before:
            self._weights.pop(t, None)  # its df changed
        redo = set(self._touched)
        self._touched = set()
        for t, was in before.items():
            now = self.df.get(t, 0)
            if now != was:
                redo |= self._in_top.get(t, set())
                if now < was:
                    redo |= self._has.get(t, set())
        redo.update(np.flatnonzero((self._k0[:k] < k) & (self._limit[:k] <= k)).tolist())
        changed = set()
        for i in redo:
            if self._compute(i, docs[i], k):
                changed.add(i)
        return changed

    def _compute(self, i: int, tc: TermCounts, k: int) -> bool:
        scored = _scores(tc, self.df, k, self._weights)
        top = heapq.nsmallest(self.top, scored, key=_rank_key)  # = sorted(scored, key=_rank_key)[:top]
        terms = tuple(t for _, t in top)
        limit = math.inf
        # pairs deciding the top: consecutive top terms, then the last top term against the rest
        tie = False
        for (sa, ta), (sb, tb) in zip(top, top[1:], strict=False):
            if self.df[ta] == self.df[tb]:
                continue  # same weight at every k: their order never changes
            if sa <= sb:  # a tie between different df: any growth may break it either way
                tie = True
                break
            limit = min(limit, k * (sa / sb) * (1 - self._MARGIN))
        if not tie and len(scored) > len(top):
            # Against the rest only the best-scored term of another df decides: the rest score at
            # most the last top term's, and k * (sa / sb) * (1 - margin) falls as sb grows.
            sa, ta = top[-1]
            dfa = self.df[ta]
            kept = set(terms)
            sb = max((s for s, t in scored if t not in kept and self.df[t] != dfa), default=None)
            if sb is not None:
                if sa <= sb:
                    tie = True
                else:
                    limit = min(limit, k * (sa / sb) * (1 - self._MARGIN))
        if tie:
            limit = k
        self._k0[i] = k
        self._limit[i] = limit
        old = self.terms[i]
        if old != terms:
            for t in old:
                self._in_top[t].discard(i)
            for t in terms:
                self._in_top.setdefault(t, set()).add(i)
            self.terms[i] = terms
            return True
        return False


class Representative:
    """The member query most similar to the centroid, among ``capacity`` kept candidates.

    Candidates are re-scored against the current centroid on every update, so when the centroid
    moves the representative can change to another kept member.

    >>> r = Representative(capacity=2)
    >>> c = np.array([1.0, 0.0], dtype=np.float32)
    >>> _ = r.update("far", np.array([0.0, 1.0], dtype=np.float32), c)
    >>> _ = r.update("near", np.array([0.9, 0.1], dtype=np.float32), c)
    >>> r.query
    'near'
    """

    def __init__(self, capacity: int, dim: int | None = None):
        self.capacity = capacity
        self.queries: list[str] = []
        self.vectors: np.ndarray | None = None  # float16 rows, so a saved state is exact and small

    def update(self, query: str, vector: np.ndarray, centroid: np.ndarray) -> Representative:
        v = np.asarray(vector, dtype=np.float16)[None, :]
        queries = [*self.queries, query]
        vectors = v if self.vectors is None else np.vstack([self.vectors, v])
        self._keep(queries, vectors, centroid)
        return self

    def recentre(self, centroid: np.ndarray) -> Representative:
        if self.vectors is not None:
            self._keep(list(self.queries), self.vectors, centroid)
        return self

    def _keep(self, queries: list[str], vectors: np.ndarray, centroid: np.ndarray) -> None:
        sims = vectors.astype(np.float32) @ np.asarray(centroid, dtype=np.float32)
        order = sorted(range(len(queries)), key=lambda i: (-float(sims[i]), i))[: self.capacity]
        self.queries = [queries[i] for i in order]
        self.vectors = vectors[order]

    @property
    def query(self) -> str:
        return self.queries[0] if self.queries else ""

    def to_state(self) -> dict:
        vecs = None if self.vectors is None else encode_array(self.vectors)
        return {"queries": list(self.queries), "vectors": vecs}

    @classmethod
    def from_state(cls, state: dict, capacity: int) -> Representative:
        r = cls(capacity)
        r.queries = list(state["queries"])
        r.vectors = None if state["vectors"] is None else decode_array(state["vectors"])
        return r


class _Encoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class CategoryIndex:
    """Decides a cluster's category from a :class:`CategoryPolicy`.

    In order: an override whose regex matches ``label_text`` (the label and representative
    query); the category that a strict majority of the cluster's intent hints map to; the
    category owning the seed phrase most similar to the centroid if that cosine is at least
    ``threshold``; else the policy default.

    >>> from pipelines.policy import Category, CategoryPolicy
    >>> p = CategoryPolicy(default="other", categories=(
    ...     Category(name="pricing", seed_phrases=("fee",), hints=("billing",)),
    ...     Category(name="other")))
    >>> idx = CategoryIndex(p, np.array([[1.0, 0.0]]), ["pricing"], threshold=0.5)
    >>> idx.categorise(np.array([0.0, 1.0]), Counter(), "card / arrived")
    'other'
    >>> idx.categorise(np.array([0.8, 0.6]), Counter(), "card / arrived")
    'pricing'
    >>> idx.categorise(np.array([0.0, 1.0]), Counter({"billing": 3, "misc": 1}), "card")
    'pricing'
    """

    def __init__(self, policy: CategoryPolicy, seed_vectors: np.ndarray,
                 seed_owner: Sequence[str], threshold: float):
        seeds = np.asarray(seed_vectors, dtype=np.float32).reshape(len(seed_owner), -1)
        norms = np.linalg.norm(seeds, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        self.policy = policy
        self.seed_vectors = seeds / norms
        self.seed_owner = tuple(seed_owner)
        self.threshold = threshold

    @classmethod
    def build(cls, policy: CategoryPolicy, embedder: _Encoder, threshold: float) -> CategoryIndex:
        """Embed the policy's seed phrases with ``embedder`` (the one I/O-ish step, done here)."""
        phrases = [(c.name, s) for c in policy.categories for s in c.seed_phrases]
        vectors = embedder.encode([s for _, s in phrases]) if phrases else np.zeros((0, 1))
        return cls(policy, vectors, [n for n, _ in phrases], threshold)

    def by_hints(self, hints: Counter[str]) -> str | None:
        """The category a strict majority of the hinted members point to, if any."""
        total = sum(hints.values())
        votes: Counter[str] = Counter()
        for hint, n in hints.items():
            cat = self.policy.by_hint(hint)
            if cat is not None:
                votes[cat] += n
        if not votes:
            return None
        cat, n = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))
        return cat if 2 * n > total else None

    def by_seed_many(self, centroids: np.ndarray) -> list[str | None]:
        """The category of the seed phrase nearest each row, if at least ``threshold`` close
        (one matrix product for all rows)."""
        rows = np.asarray(centroids, dtype=np.float32).reshape(len(centroids), -1)
        if not self.seed_owner or not len(rows):
            return [None] * len(rows)
        sims = rows @ self.seed_vectors.T
        best = np.argmax(sims, axis=1)
        top = sims[np.arange(len(rows)), best]
        return [self.seed_owner[b] if float(v) >= self.threshold else None
                for b, v in zip(best.tolist(), top.tolist(), strict=True)]

    def by_seed(self, centroid: np.ndarray) -> str | None:
        return self.by_seed_many(np.asarray(centroid)[None, :])[0]

    def categorise(self, centroid: np.ndarray, hints: Counter[str], label_text: str,
                   seed: str | None | bool = False) -> str:
        """Override, else the hints' majority, else the nearest seed phrase, else the default.

        ``seed``: :meth:`by_seed` of ``centroid`` if already computed (False: compute it).
        """
        return (self.policy.override_for(label_text)
                or (self.by_hints(hints) if hints else None)
                or (self.by_seed(centroid) if seed is False else seed)
                or self.policy.default)
