"""Online intent clusters: discovered, not configured; ids stable across refits.

:class:`OnlineClusterer` is bootstrapped on a first batch of query embeddings, whose groups are
found by agglomerative clustering cut at ``config.distance_threshold`` (so the number of intents
is discovered). Each later query joins the nearest cluster if its cosine is at least
``assign_threshold`` (the centroid moves as a running mean over its last ``centroid_memory``
members) or waits in the unassigned pool (reported meanwhile under its nearest cluster if the
cosine is at least ``pool_attach_threshold``); every ``pool_recluster_size`` new pool entries, or
at once when a new entry is ``pool_pair_threshold`` close to a pooled one, the pool is clustered
the same way and groups of at least ``min_cluster_size`` become new clusters (pooled queries then
``assign_threshold`` close to a cluster join it; so after a refit).
Every ``refit_every`` assignments the ``recent_capacity`` newest queries are re-clustered and the
new groups are matched to the old clusters (Hungarian on cosine, at least ``match_threshold``):
a matched cluster keeps its id and gets the group's queries (with ``refit_moves_centroids`` also
the group's mean as centroid, ``centroid_version`` + 1), a group unlike every cluster gets a new
id. Clusters are never deleted, because incidents may refer to them.

Pure: no I/O, no clock (times are passed in), deterministic (ids ``c001``, ``c002``, ... in
creation order; the same input in the same order gives the same ids and assignments).

>>> from datetime import UTC, datetime
>>> from pipelines.config import ClusterConfig
>>> rng = np.random.default_rng(0)
>>> centres = np.eye(8)[:2]
>>> x = np.repeat(centres, 10, axis=0) + rng.normal(0, 0.05, (20, 8))
>>> t = datetime(2026, 1, 1, tzinfo=UTC)
>>> c = OnlineClusterer(ClusterConfig(), dim=8)
>>> _ = c.bootstrap(x, ["fee"] * 10 + ["card"] * 10, [t] * 20)
>>> sorted(c.clusters), c.assign(centres[1], "card", t).cluster_id
(['c001', 'c002'], 'c002')
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform
from sklearn.cluster import AgglomerativeClustering

from pipelines.config import ClusterConfig
from pipelines.errors import FaithwatchError
from pipelines.labels import (
    CategoryIndex,
    DistinctiveTerms,
    Representative,
    TermCounts,
    decode_array,
    encode_array,
)
from pipelines.policy import DEFAULT_POLICY
from pipelines.records import ClusterInfo
from pipelines.state import check_envelope, envelope

try:  # the compiled routines behind scipy's linkage and fcluster (see _cut_tree)
    from scipy.cluster import _hierarchy
    from scipy.cluster.hierarchy import _LINKAGE_METHODS
except ImportError:  # a scipy that moved them: the public functions, slower, the same labels
    _hierarchy = None

_UNSURE = 1e-9  # far above the rounding of a float64 dot product of two unit vectors (see _Pool.close_to)
_ROUGH = 1e-3  # far above the error of a float32 dot product of two float16 unit vectors (see _Pool.add)
_FEW = 256  # centroids: fewer are compared with a query in one float64 product (a pre-filter costs more)
_FORGOTTEN = "-"  # attribution of a recent query whose pool entry was forgotten


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def _from_iso(s: str | None) -> datetime | None:
    return None if s is None else datetime.fromisoformat(s)


@dataclass(frozen=True)
class Assignment:
    cluster_id: str | None  # None = waits in the unassigned pool, close to no cluster (see _attach)
    similarity: float  # cosine to the chosen (or nearest) centroid
    created: tuple[str, ...]  # cluster ids created during this step (pool re-clustering / refit)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.sqrt(np.add.reduce(v * v, axis=-1, keepdims=True))  # np.linalg.norm's own formula, without its overhead
    return v / np.where(norms == 0, 1.0, norms)


def cut(n: int, config: ClusterConfig) -> float:
    """The agglomerative distance threshold for a fit on ``n`` queries.

    A ward merge costs about ``sqrt(group size) * centroid distance``, and groups grow with the
    window, so past ``ward_reference_size`` queries the ward cut grows like ``n ** 0.25``
    (measured on BANKING77: the best fixed cut is ~1.5 at 400 queries and ~2.5 at 3,000).
    Cosine cuts (average / complete linkage) do not depend on ``n``.

    >>> from pipelines.config import ClusterConfig
    >>> cfg = ClusterConfig(linkage="ward", distance_threshold=1.5, ward_reference_size=400)
    >>> round(cut(60, cfg), 2), round(cut(400, cfg), 2), round(cut(6400, cfg), 2)
    (1.5, 1.5, 3.0)
    """
    if config.linkage != "ward" or n <= config.ward_reference_size:
        return config.distance_threshold
    return config.distance_threshold * (n / config.ward_reference_size) ** 0.25


def _norms(x: np.ndarray) -> np.ndarray:
    """Row norms of float64 ``x`` as :func:`cosine_similarities` divides by them."""
    return np.sqrt(np.maximum(np.einsum("ij,ij->i", x, x), 1e-300))


def cosine_similarities(x: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Cosine similarities of ``x[rows]`` (all rows by default) to every row of ``x``.

    Computed as ``g_ij / (|x_i| * |x_j|)`` from the Gram matrix. The clusterer stores vectors as
    float16, and in float64 every product and partial sum of a float16 dot product is exact, so
    a pair's value depends only on its two vectors: not on how BLAS blocks the product, nor on
    which other rows were computed with it (a cache can mix rows computed at different times and
    still equal a fresh computation, so a restored clusterer continues exactly).

    >>> np.round(cosine_similarities(np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])), 3).tolist()
    [[1.0, 0.0, 0.707], [0.0, 1.0, 0.707], [0.707, 0.707, 1.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    norms = _norms(x)
    sub = x if rows is None else x[rows]
    sub_norms = norms if rows is None else norms[rows]
    return (sub @ x.T) / (sub_norms[:, None] * norms[None, :])


def discover(vectors: np.ndarray, config: ClusterConfig) -> list[np.ndarray]:
    """Groups (row indices) of at least ``min_cluster_size``, in order of their first row.

    Cosine linkages (average, complete) are cut component by component: a merge below the cut
    needs at least one pair closer than the cut, so no group spans two connected components of
    the "closer than the cut" graph, and linking each component alone gives the same groups as
    linking everything at once, at a fraction of the cost (a pool of 2,000 mostly unrelated
    queries falls apart into small components).

    >>> from pipelines.config import ClusterConfig
    >>> x = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [-1, 0]], dtype=float)
    >>> [g.tolist() for g in discover(x, ClusterConfig(min_cluster_size=2))]
    [[0, 1], [2, 3]]
    """
    n = len(vectors)
    if n < config.min_cluster_size:
        return []
    if config.linkage == "ward":
        labels = np.zeros(1, dtype=int) if n == 1 else AgglomerativeClustering(
            n_clusters=None, distance_threshold=cut(n, config), metric="euclidean", linkage="ward",
        ).fit_predict(unit(vectors))
        groups: dict[int, list[int]] = {}
        for i, g in enumerate(labels.tolist()):
            groups.setdefault(g, []).append(i)
        return [np.array(m) for m in groups.values() if len(m) >= config.min_cluster_size]
    sims = cosine_similarities(vectors)
    t = cut(n, config)
    i, j = np.nonzero(1.0 - sims < t)
    upper = i < j
    i, j = i[upper], j[upper]
    _, comp = connected_components(coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n)),
                                   directed=False)
    members: dict[int, list[int]] = {}
    for r, c in enumerate(comp.tolist()):
        members.setdefault(c, []).append(r)
    out: list[np.ndarray] = []
    for rows in members.values():
        if len(rows) < config.min_cluster_size:
            continue
        idx = np.array(rows)
        out += [idx[p] for p in _split(sims[np.ix_(idx, idx)], config, t) if len(p) >= config.min_cluster_size]
    out.sort(key=lambda g: int(g[0]))
    return out


def _split(sims: np.ndarray, config: ClusterConfig, t: float) -> list[np.ndarray]:
    """One connected component of the "closer than the cut" graph cut the way :func:`discover`
    cuts it: its parts in order of their first row, small ones included. ``sims``: the pairwise
    similarities of its rows (in stream order); only the upper triangle is read."""
    n = len(sims)
    if n == 2:
        return [np.arange(2)]  # the pair is closer than the cut, or it would be two components
    condensed = squareform(1.0 - sims, checks=False)  # the upper triangle, row by row
    np.clip(condensed, 0.0, 2.0, out=condensed)
    # sklearn's cut: merges strictly below the threshold; the cut keeps merges <= t.
    labels = _cut_tree(condensed, n, config.linkage, float(np.nextafter(t, -np.inf)))
    return [np.flatnonzero(labels == lab) for lab in dict.fromkeys(labels.tolist())]


def _cut_tree(condensed: np.ndarray, n: int, method: str, t: float) -> np.ndarray:
    """``fcluster(linkage(condensed, method), t, criterion="distance")``, without their checks.

    The same compiled routines scipy's ``linkage`` (nearest-neighbour chain for average and
    complete) and ``fcluster`` call, on the same arrays, so the same labels; skipped are only the
    input checks, which cost more than the work on the small components the clusterer links (the
    condensed distances are finite and in [0, 2] by construction, the tree is the one just built).
    tests/pipelines/test_clustering_incremental.py compares it with the public functions.
    """
    if _hierarchy is None or method not in ("average", "complete"):
        return fcluster(linkage(condensed, method=method), t, criterion="distance")
    tree = _hierarchy.nn_chain(np.ascontiguousarray(condensed, dtype=np.float64), n, _LINKAGE_METHODS[method])
    labels = np.zeros(n, dtype="i")
    _hierarchy.cluster_dist(tree, labels, t, n)
    return labels


def _runs(start: int, n: int, capacity: int) -> list[tuple[int, int, int, int]]:
    """Positions ``[0, n)`` at slots ``(start + i) % capacity`` as runs ``(p0, p1, s0, s1)``: positions
    ``p0:p1`` sit at slots ``s0:s1`` (at most two runs, ``n <= capacity``).

    >>> _runs(8, 4, 10)
    [(0, 2, 8, 10), (2, 4, 0, 2)]
    """
    s0 = start % capacity
    head = min(n, capacity - s0)
    runs = [(0, head, s0, s0 + head)]
    if head < n:
        runs.append((head, n, 0, n - head))
    return runs


class _WindowLinks:
    """The pairs of the recent window closer than the cut, kept across refits (cosine linkages).

    Between two refits the window moves by the queries assigned since, so only their pairs are
    new: this keeps the pairs found so far (as sequence numbers), drops those that left the window
    and adds the new queries' pairs; :meth:`groups` then links each connected component alone (the
    same groups as :func:`discover` on the whole window, see there), on similarities computed as
    :func:`cosine_similarities` computes them (exact for float16 vectors, so the same values
    however they are computed). Derived from the window's vectors, not state.

    The new queries' pairs are found one of two ways, whichever cost less at the last refit.
    Sparse (a fine cut: most queries are close to few others): a float32 product rules out the
    pairs that cannot be closer than the cut, the few kept get their exact similarities, and each
    component's block is computed when it is linked. Dense (a coarse cut: large components): the
    new queries' exact rows of similarities go into a fixed matrix (query ``seq`` in row and column
    ``seq % capacity``, so nothing is copied when the window moves) from which later blocks are read.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._sims: np.ndarray | None = None  # allocated at the first dense refit
        # per slot: the matrix holds its query's similarities to every older query of the window
        self._full = np.zeros(capacity, dtype=bool)
        self._dense = True  # how the next refit finds its pairs (the first: as the cost of the full rows says)
        self._a = np.zeros(0, dtype=np.int64)  # pair (a, b), a < b, as sequence numbers
        self._b = np.zeros(0, dtype=np.int64)
        self._upto = -1  # pairs are known among the queries with seq < this

    def groups(self, items: Sequence[_Seen], x: np.ndarray, config: ClusterConfig) -> list[np.ndarray]:
        n = len(items)
        if n < config.min_cluster_size:
            return []
        lo = items[0].seq
        if items[-1].seq - lo + 1 != n or self._upto < lo:  # not one run of the stream: start over
            self._a = self._b = np.zeros(0, dtype=np.int64)
            self._upto = lo
        t = cut(n, config)
        keep = self._a >= lo
        a, b = self._a[keep], self._b[keep]
        first = min(max(self._upto - lo, 0), n)  # position of the first query without its pairs
        slots = (lo + np.arange(n)) % self._capacity
        norms = _norms(x)
        if first < n:
            pairs = None if self._dense else self._pairs(x, norms, first, t)
            if pairs is None:
                self._dense = True
                pairs = self._rows(x, lo, first, t)
            rows, cols = pairs
            self._full[slots[first:]] = self._dense
            rows += first
            new = cols < rows
            a = np.concatenate([a, cols[new] + lo])
            b = np.concatenate([b, rows[new] + lo])
        self._a, self._b, self._upto = a, b, lo + n
        _, comp = connected_components(
            coo_matrix((np.ones(len(a), dtype=np.int8), (a - lo, b - lo)), shape=(n, n)), directed=False)
        order = np.argsort(comp, kind="stable")  # positions by component, each in stream order
        sizes = np.bincount(comp)
        starts = np.cumsum(sizes) - sizes
        out: list[np.ndarray] = []
        linked = np.flatnonzero(sizes >= config.min_cluster_size)
        for c in linked.tolist():
            idx = order[starts[c]:starts[c] + sizes[c]]
            block = self._block(x, norms, idx, slots[idx])
            out += [idx[p] for p in _split(block, config, t) if len(p) >= config.min_cluster_size]
        out.sort(key=lambda g: int(g[0]))
        if first < n:
            # Sparse next time only when the blocks cost far less than the new rows (its float32
            # product costs about half of them, and components grow: a wrong switch costs the
            # recomputed rows of its queries at every refit while they stay in the window).
            blocks = int((sizes[linked] * (sizes[linked] - 1)).sum())
            self._dense = 8 * blocks > (n - first) * n
        return out

    def _rows(self, x: np.ndarray, lo: int, first: int, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Dense: the exact rows of the window's queries from position ``first`` (``lo``: the seq
        at position 0) into the matrix; their pairs closer than the cut as (row - first, column)."""
        n = len(x)
        if self._sims is None:
            self._sims = np.zeros((self._capacity, self._capacity))
        sims = cosine_similarities(x, np.arange(first, n))
        # the slots run round the matrix, so each set of rows (columns) is at most two slices
        for r0, r1, s0, s1 in _runs(lo + first, n - first, self._capacity):
            for c0, c1, t0, t1 in _runs(lo, n, self._capacity):
                self._sims[s0:s1, t0:t1] = sims[r0:r1, c0:c1]
                self._sims[t0:t1, s0:s1] = sims[r0:r1, c0:c1].T
        return np.nonzero(1.0 - sims < t)

    @staticmethod
    def _pairs(x: np.ndarray, norms: np.ndarray, first: int, t: float) -> tuple[np.ndarray, np.ndarray] | None:
        """Sparse: the pairs of the queries from ``first`` closer than the cut, as (row - first,
        column); None if too many pairs are kept to check them one by one. A float32 product of
        the scaled float16 rows errs by at most about ``dim * 2**-24`` (< 3e-5 for 384
        dimensions, far below ``_ROUGH``), so it only rules pairs out; the pairs it keeps get the
        exact value :func:`cosine_similarities` gives them."""
        scaled = (x / norms[:, None]).astype(np.float32)
        rough = scaled[first:] @ scaled.T
        rows, cols = np.nonzero(rough > np.float32(1.0 - t - _ROUGH))
        if len(rows) > rough.size // 16:  # the full rows cost less than checking each pair
            return None
        sims = np.einsum("ij,ij->i", x[rows + first], x[cols]) / (norms[rows + first] * norms[cols])
        near = 1.0 - sims < t
        return rows[near], cols[near]

    def _block(self, x: np.ndarray, norms: np.ndarray, idx: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """The similarities among the window's positions ``idx`` (in stream order), as
        :func:`cosine_similarities` gives them: read from the matrix where the younger query of a
        pair has its full row there, else computed."""
        full = self._full[slots]
        full[0] = True  # the oldest member needs no row: its pairs are in the younger members' rows
        redo = np.flatnonzero(~full)
        if self._sims is None or len(redo) == len(idx) - 1:
            sub = x[idx]
            return (sub @ sub.T) / (norms[idx][:, None] * norms[idx][None, :])
        block = self._sims[np.ix_(slots, slots)]
        if redo.size:
            rows = (x[idx[redo]] @ x[idx].T) / (norms[idx[redo]][:, None] * norms[idx][None, :])
            block[redo, :] = rows
            block[:, redo] = rows.T
        return block


class _Pool:
    """The unassigned pool: its queries in arrival order, their vectors as float64 rows of a fixed
    matrix, and, for a cosine linkage, the pairs closer than the cut. The occupied rows are kept a
    prefix of the matrix (a freed row takes the last occupied one), so every product over the
    pool covers only the pooled queries, not the whole capacity.

    What the clusterer asks of the pool on every query is then independent of how it was asked
    before: whether a new query has a close pooled pair is one matrix-vector product, and
    re-clustering the pool needs only the connected components of the "closer than the cut"
    graph, which this keeps up to date as queries enter and leave (see :func:`discover`: a group
    never spans two components, so each component is linked alone, on the same similarities).
    Derived from the pooled queries, not state.
    """

    def __init__(self, capacity: int, dim: int, edge_below: float | None):
        self._items: OrderedDict[int, _Seen] = OrderedDict()  # seq -> item, arrival order = seq order
        self._slot: dict[int, int] = {}  # seq -> row
        self._seq_at = np.full(capacity + 1, -1, dtype=np.int64)  # row -> seq (-1 free)
        self.rows = np.zeros((capacity + 1, dim))
        self._rows32 = np.zeros((capacity + 1, dim), dtype=np.float32)  # the same, to rule rows out fast
        self._norms = np.ones(capacity + 1)
        # Where each query would sit in a capacity-sized matrix whose freed rows are reused (the
        # layout close_to's products were once taken over): kept only to settle a near tie there.
        self._legacy: dict[int, int] = {}  # seq -> row
        self._legacy_free = list(range(capacity, -1, -1))
        self._edge_below = edge_below  # a pair is an edge if its cosine distance is below this
        self._edges: dict[int, set[int]] = {}  # seq -> pooled seqs closer than the cut (none: absent)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items.values())

    def __contains__(self, it: _Seen) -> bool:
        return it.seq in self._items

    def add(self, it: _Seen, pair_at: float) -> bool:
        """Pool ``it``; returns whether its dot product with a pooled query is at least ``pair_at``."""
        v = it.v64
        n = len(self._items)  # the occupied rows are [0, n): products cover only them
        norm = _norms(v[None, :])[0]
        pair = False
        if n:
            # A float32 product of float16 vectors errs by at most 384 * 2**-24 (< 3e-5): it only
            # rules rows out, and the few it keeps get the exact float64 products as before.
            rough = self._rows32[:n] @ it.v32
            keep = rough >= pair_at - _ROUGH
            if self._edge_below is not None:
                keep |= rough / (norm * self._norms[:n]) > 1.0 - self._edge_below - _ROUGH
            rows = np.flatnonzero(keep)
            if rows.size:
                dots = self.rows[rows] @ v
                pair = bool(dots.max() >= pair_at)
                if self._edge_below is not None:
                    # as cosine_similarities computes them: g_ij / (|x_i| * |x_j|), exact for float16 rows
                    sims = dots / (norm * self._norms[rows])
                    near = rows[1.0 - sims < self._edge_below]
                    if near.size:
                        mine = self._edges.setdefault(it.seq, set())
                        for other in self._seq_at[near].tolist():
                            mine.add(other)
                            self._edges.setdefault(other, set()).add(it.seq)
        self.rows[n] = v
        self._rows32[n] = v
        self._norms[n] = norm
        self._seq_at[n] = it.seq
        self._slot[it.seq] = n
        self._legacy[it.seq] = self._legacy_free.pop()
        self._items[it.seq] = it
        return pair

    def remove(self, it: _Seen) -> None:
        del self._items[it.seq]
        self._release(it.seq)

    def popleft(self) -> _Seen:
        seq, it = self._items.popitem(last=False)
        self._release(seq)
        return it

    def _release(self, seq: int) -> None:
        self._legacy_free.append(self._legacy.pop(seq))
        slot = self._slot.pop(seq)
        last = len(self._items)  # the last occupied row (the item is already out of _items)
        if slot != last:  # keep the occupied rows a prefix: the last one moves into the hole
            moved = int(self._seq_at[last])
            self.rows[slot] = self.rows[last]
            self._rows32[slot] = self._rows32[last]
            self._norms[slot] = self._norms[last]
            self._seq_at[slot] = moved
            self._slot[moved] = slot
        self._seq_at[last] = -1
        self.rows[last] = 0.0
        self._rows32[last] = 0.0
        self._norms[last] = 1.0
        for other in self._edges.pop(seq, ()):
            peers = self._edges[other]
            peers.discard(seq)
            if not peers:
                del self._edges[other]

    def close_to(self, centroids: np.ndarray, threshold: float) -> list[_Seen]:
        """The pooled queries, in pool order, whose dot product with one of ``centroids`` is at least ``threshold``.

        The centroids are float64, so these products are not exact, and BLAS rounds them
        differently with the matrix's shape (and, for one centroid, with a row's position): the
        value that decides is the one taken over the capacity-sized matrix laid out as
        ``_legacy`` says. The product over the occupied rows differs from it by at most
        ``2 * dim * 2**-53`` (both are within ``dim * 2**-53 * sum|x_i * c_i|`` of the true value,
        and that sum is at most about 1 for unit vectors), so only a row within ``_UNSURE`` of
        ``threshold`` is computed again that way (rarely: then at the old cost).
        """
        n = len(self._items)
        # A float32 product errs by far less than _ROUGH (see add), so it only rules rows out; the
        # rows it keeps get float64 products, which are within the same bound of the legacy ones
        # as the product over all occupied rows was (a row's product is as exact in any shape).
        rough = (self._rows32[:n] @ centroids.astype(np.float32).T).max(axis=1)
        cand = np.flatnonzero(rough >= threshold - _ROUGH)
        near = (self.rows[cand] @ centroids.T).max(axis=1)
        unsure = np.flatnonzero(np.abs(near - threshold) < _UNSURE)
        if unsure.size:
            laid = np.zeros_like(self.rows)
            at = np.array([self._legacy[q] for q in self._seq_at[:n].tolist()], dtype=np.int64)
            laid[at] = self.rows[:n]
            near[unsure] = (laid @ centroids.T).max(axis=1)[at[cand[unsure]]]
        slots = cand[near >= threshold]
        return [self._items[q] for q in sorted(self._seq_at[slots].tolist())]

    def matrix(self, items: Sequence[_Seen]) -> np.ndarray:
        return self.rows[[self._slot[it.seq] for it in items]]

    def groups(self, config: ClusterConfig) -> list[list[_Seen]]:
        """What ``discover`` finds on the pooled vectors in pool order (cosine linkages)."""
        n = len(self._items)
        if n < config.min_cluster_size:
            return []
        t = cut(n, config)
        out: list[list[int]] = []
        done: set[int] = set()
        for start in self._edges:
            if start in done:
                continue
            comp = {start}
            todo = [start]
            while todo:
                for other in self._edges[todo.pop()]:
                    if other not in comp:
                        comp.add(other)
                        todo.append(other)
            done |= comp
            if len(comp) < config.min_cluster_size:
                continue
            seqs = sorted(comp)  # pool order
            parts = _split(cosine_similarities(self.rows[[self._slot[q] for q in seqs]]), config, t)
            out += [[seqs[i] for i in p.tolist()] for p in parts if len(p) >= config.min_cluster_size]
        out.sort(key=lambda g: g[0])
        return [[self._items[q] for q in g] for g in out]


@dataclass(eq=False)
class _Seen:
    """One query kept for re-clustering (in the pool and/or the recent window)."""

    seq: int
    vector: np.ndarray = field(repr=False)  # float16, unit length
    query: str
    at: datetime
    hint: str | None
    cluster: str | None = None  # current attribution: id, None (pool) or _FORGOTTEN
    attached: str | None = None  # while pooled: the nearest cluster it is reported under, if any
    v64: np.ndarray = field(init=False, repr=False, compare=False)  # the vector as float64 (exact), made once
    v32: np.ndarray = field(init=False, repr=False, compare=False)  # and as float32 (exact)

    def __post_init__(self) -> None:
        self.v64 = self.vector.astype(np.float64)
        self.v32 = self.vector.astype(np.float32)

    def to_state(self) -> list:
        return [self.seq, self.query, self.at.isoformat(), self.hint, self.cluster, self.attached]


@dataclass(eq=False)
class _Cluster:
    cid: str
    centroid: np.ndarray  # float64, unit length
    weight: int  # members the running mean currently averages over (<= centroid_memory)
    terms: TermCounts
    representative: Representative
    size: int = 0
    version: int = 1
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    hints: Counter[str] = field(default_factory=Counter)

    def add(self, item: _Seen) -> None:
        self.size += 1
        self.terms.update(item.query)
        self.representative.update(item.query, item.vector, self.centroid)
        if item.hint:
            self.hints[item.hint.strip().lower()] += 1
        self.first_seen = item.at if self.first_seen is None else min(self.first_seen, item.at)
        self.last_seen = item.at if self.last_seen is None else max(self.last_seen, item.at)


class OnlineClusterer:
    """Intent clusters over a stream of query embeddings (see the module docstring)."""

    STATE_VERSION = 1
    KIND = "OnlineClusterer"

    def __init__(self, config: ClusterConfig, dim: int,
                 categories: CategoryIndex | None = None):
        self.config = config
        self.dim = dim
        self.categories = categories
        self._clusters: list[_Cluster] = []
        self._cbuf = np.zeros((16, dim))  # rows [0, k) are the centroids; grows by doubling
        self._cbuf32 = np.zeros((16, dim), dtype=np.float32)  # the same, to rule centroids out fast
        self._pool = _Pool(config.pool_capacity, dim,
                           None if config.linkage == "ward" else cut(0, config))
        self._recent: deque[_Seen] = deque(maxlen=config.recent_capacity)
        self._seq = 0  # queries seen
        self._assigned_since_refit = 0
        self._pool_added = 0  # pool entries since the pool was last clustered
        self._forgotten = 0
        self._fitted = False
        self._info: dict[str, ClusterInfo] | None = None
        # derived, not state:
        self._links = _WindowLinks(config.recent_capacity)
        self._moved: set[int] = set()  # clusters whose centroid changed (or was created) since the last sweep
        self._cver = 0  # bumped whenever a centroid changes
        # (seq, cver, best, sim, exact) of the last _nearest
        self._near: tuple[int, int, int | None, float, bool] | None = None
        self._terms = DistinctiveTerms(config.label_terms)
        self._touched: set[int] = set()  # clusters to describe again
        self._infos: list[ClusterInfo] = []
        self._info_map: dict[str, ClusterInfo] = {}
        self._seeds: list[str | None] = []

    # -- reading -----------------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        return self._fitted

    @property
    def pool_size(self) -> int:
        return len(self._pool)

    @property
    def seen(self) -> int:
        return self._seq

    @property
    def forgotten(self) -> int:
        """Pool entries dropped because the pool was full."""
        return self._forgotten

    @property
    def centroids(self) -> dict[str, np.ndarray]:
        return {c.cid: c.centroid.copy() for c in self._clusters}

    def centroid_rows(self) -> tuple[list[str], np.ndarray]:
        """Cluster ids in creation order and their centroids as rows (a view: read it, do not keep it)."""
        return [c.cid for c in self._clusters], self._centroids

    @property
    def _centroids(self) -> np.ndarray:
        """Row i is ``self._clusters[i].centroid`` (a view of the growing buffer)."""
        return self._cbuf[:len(self._clusters)]

    @property
    def clusters(self) -> dict[str, ClusterInfo]:
        """A readable description of every cluster, in creation order."""
        if self._info is None:
            self._info = self._describe()
        return self._info

    def _describe(self) -> dict[str, ClusterInfo]:
        """Every cluster's description, recomputing only what can have changed since the last call:
        clusters touched since (members, centroid, size), and those whose distinctive terms
        changed because other clusters changed (see :class:`~pipelines.labels.DistinctiveTerms`).
        Equal to recomputing every description from scratch (tests/pipelines/test_clustering_incremental.py)."""
        k = len(self._clusters)
        touched = self._touched | set(range(len(self._infos), k))  # new clusters (also after a restore)
        self._touched = set()
        redo = touched | self._terms.update([c.terms for c in self._clusters])
        while len(self._infos) < k:
            self._infos.append(None)  # type: ignore[arg-type]
            self._seeds.append(None)
        rows = sorted(touched)
        if self.categories is not None and rows:
            for i, seed in zip(rows, self.categories.by_seed_many(self._centroids[rows]), strict=True):
                self._seeds[i] = seed
        for i in sorted(redo):
            c = self._clusters[i]
            self._infos[i] = self._info_map[c.cid] = self._info_of(c, self._terms.terms[i], self._seeds[i])
        return dict(self._info_map)

    def _info_of(self, c: _Cluster, terms: tuple[str, ...], seed: str | None) -> ClusterInfo:
        rep = c.representative.query
        label = " / ".join(terms) or rep[:60] or c.cid
        if self.categories is None:
            category = DEFAULT_POLICY.default
        else:
            category = self.categories.categorise(c.centroid, c.hints, f"{label}\n{rep}", seed)
        return ClusterInfo(
            cluster_id=c.cid, label=label, category=category, terms=terms,
            representative_query=rep, size=c.size, centroid_version=c.version,
            first_seen=c.first_seen, last_seen=c.last_seen,
        )

    # -- updating ----------------------------------------------------------------------------

    def bootstrap(self, embeddings: np.ndarray, queries: Sequence[str], at: Sequence[datetime],
                  hints: Sequence[str | None] | None = None) -> list[Assignment]:
        """First fit; returns the assignment of each bootstrap query."""
        if self._fitted:
            raise FaithwatchError("OnlineClusterer: already bootstrapped")
        x = self._check(embeddings)
        if not (len(x) == len(queries) == len(at)) or (hints is not None and len(hints) != len(x)):
            raise ValueError("embeddings, queries, at (and hints) must have the same length")
        items = [self._remember(x[i], queries[i], at[i], None if hints is None else hints[i])
                 for i in range(len(x))]
        self._fitted = True
        for it in items:
            self._to_pool(it)
        created = self._promote(list(self._pool))
        for it in self._pool:
            self._attach(it)
        self._info = None
        return [self._result(it, created) for it in items]

    def assign(self, embedding: np.ndarray, query: str, at: datetime,
               hint: str | None = None) -> Assignment:
        if not self._fitted:
            raise FaithwatchError("OnlineClusterer: bootstrap before assigning")
        x = self._check(np.asarray(embedding)[None, :])[0]
        it = self._remember(x, query, at, hint)
        self._info = None
        created: list[str] = []
        best, sim = self._nearest(it)
        if best is not None and sim >= self.config.assign_threshold:
            self._join(self._clusters[best], it)
        else:
            pair = self._to_pool(it)
            self._pool_added += 1
            if pair or self._pool_added >= self.config.pool_recluster_size:
                self._pool_added = 0
                created += self._promote(list(self._pool))
        self._assigned_since_refit += 1
        if self.config.refit_every and self._assigned_since_refit >= self.config.refit_every:
            created += self.refit()
        if it.cluster is None:
            self._attach(it)
        return self._result(it, created)

    def refit(self) -> list[str]:
        """Re-cluster the recent window now; returns the ids created."""
        self._assigned_since_refit = 0
        self._info = None
        items = list(self._recent)
        x = np.stack([it.vector for it in items]).astype(np.float64)
        if self.config.linkage == "ward":
            groups = discover(x, self.config)
        else:
            groups = self._links.groups(items, x, self.config)
        if not groups:
            return []
        means = unit(np.stack([x[g].mean(0) for g in groups]))  # x[g]: the same rows as stacking them anew
        targets: list[_Cluster | None] = [None] * len(groups)
        sims = np.zeros((len(groups), 0))
        if self._clusters:
            sims = means @ self._centroids.T
            rows, cols = linear_sum_assignment(-sims)
            for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
                if sims[r, c] >= self.config.match_threshold:
                    targets[r] = self._clusters[c]
        created: list[str] = []
        for r, (g, mean, target) in enumerate(zip(groups, means, targets, strict=True)):
            members = [items[i] for i in g]
            if target is None:
                # An unmatched group close to an existing cluster is that cluster seen through
                # another cut (a split or a merge), not a new intent: leave its members where
                # they are. Only a group unlike every cluster becomes one, so ids stay few
                # and stable and one intent does not collect several ids over time.
                near = self._clusters and float(sims[r].max()) >= self.config.assign_threshold
                # ...unless it is big enough to be an intent of its own that the earlier cut
                # merged into a neighbour (refit_split_size; 0 never splits).
                split = (self.config.refit_split_size
                         and len(members) >= self.config.refit_split_size
                         and float(sims[r].max()) < self.config.match_threshold)
                if near and not split:
                    continue
                target = self._new_cluster(mean, len(members))
                created.append(target.cid)
            elif self.config.refit_moves_centroids:
                target.centroid = mean
                target.weight = min(len(members), self.config.centroid_memory)
                target.version += 1
                self._set_centroid(self._index(target.cid), mean)
                target.representative.recentre(mean)
            for it in members:
                self._move(it, target)
        self._sweep()
        return created

    # -- state -------------------------------------------------------------------------------

    def to_state(self) -> dict:
        """A JSON-safe snapshot; vectors are base64 (exact), so a restore continues identically."""
        kept = {it.seq: it for it in (*self._recent, *self._pool)}
        items = [kept[s] for s in sorted(kept)]
        payload = {
            "dim": self.dim,
            "fitted": self._fitted,
            "seq": self._seq,
            "assigned_since_refit": self._assigned_since_refit,
            "pool_added": self._pool_added,
            "forgotten": self._forgotten,
            "clusters": [{
                "cid": c.cid, "centroid": encode_array(c.centroid), "weight": c.weight,
                "size": c.size, "version": c.version,
                "first_seen": _iso(c.first_seen), "last_seen": _iso(c.last_seen),
                "hints": dict(sorted(c.hints.items())), "terms": c.terms.to_state(),
                "representative": c.representative.to_state(),
            } for c in self._clusters],
            "items": [it.to_state() for it in items],
            "vectors": encode_array(np.stack([it.vector for it in items]) if items
                                    else np.zeros((0, self.dim), dtype=np.float16)),
            "recent": [it.seq for it in self._recent],
            "pool": [it.seq for it in self._pool],
        }
        return envelope(self.KIND, self.STATE_VERSION, self.config, payload)

    @classmethod
    def from_state(cls, state: dict, config: ClusterConfig,
                   categories: CategoryIndex | None = None) -> OnlineClusterer:
        """Restore :meth:`to_state`; raises ``StateError`` for another version or config."""
        p = check_envelope(state, cls.KIND, cls.STATE_VERSION, config)
        self = cls(config, int(p["dim"]), categories)
        self._fitted = bool(p["fitted"])
        self._seq = int(p["seq"])
        self._assigned_since_refit = int(p["assigned_since_refit"])
        self._pool_added = int(p["pool_added"])
        self._forgotten = int(p["forgotten"])
        for d in p["clusters"]:
            c = _Cluster(
                cid=d["cid"], centroid=decode_array(d["centroid"]), weight=int(d["weight"]),
                terms=TermCounts.from_state(d["terms"], config.label_vocabulary),
                representative=Representative.from_state(d["representative"],
                                                         config.representative_candidates),
                size=int(d["size"]), version=int(d["version"]),
                first_seen=_from_iso(d["first_seen"]), last_seen=_from_iso(d["last_seen"]),
                hints=Counter(d["hints"]),
            )
            self._clusters.append(c)
        if self._clusters:
            self._cbuf = np.zeros((max(16, 2 * len(self._clusters)), self.dim))
            self._cbuf[:len(self._clusters)] = np.stack([c.centroid for c in self._clusters])
            self._cbuf32 = self._cbuf.astype(np.float32)
        self._moved = set(range(len(self._clusters)))  # the next sweep checks every centroid
        vectors = decode_array(p["vectors"])
        items = {}
        for (seq, query, at, hint, cluster, *attached), vec in zip(p["items"], vectors, strict=True):
            items[seq] = _Seen(seq, vec, query, datetime.fromisoformat(at), hint, cluster,
                               attached[0] if attached else None)
        self._recent.extend(items[s] for s in p["recent"])
        for s in p["pool"]:
            self._pool.add(items[s], self._pair_threshold())
        return self

    # -- internals ---------------------------------------------------------------------------

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected embeddings of dimension {self.dim}, got shape {x.shape}")
        return unit(x)

    def _remember(self, x: np.ndarray, query: str, at: datetime, hint: str | None) -> _Seen:
        it = _Seen(self._seq, x.astype(np.float16), query, at, hint)
        self._seq += 1
        self._recent.append(it)
        return it

    def _nearest(self, it: _Seen, exact: bool = False) -> tuple[int | None, float]:
        """The nearest centroid (the first of equals) and its cosine, as the product of the query
        with every centroid gives them.

        That product's rows are float64 sums whose rounding depends on the matrix's shape, so
        unless the value itself is reported (``exact``) this decides what the callers decide with
        it (which centroid; at least ``assign_threshold``, ``pool_attach_threshold``) more cheaply:
        a float32 product (errs by far less than ``_ROUGH``, see :meth:`_Pool.add`) rules out the
        centroids that cannot be nearest, and the few kept get float64 products, within
        ``2 * dim * 2**-53`` of the full product's (see :meth:`_Pool.close_to`). The answer is
        the full product's unless two of them, or the best and a threshold, are within
        ``_UNSURE``: then the full product decides (rarely). The value returned then differs from
        the full product's by at most that bound, which no comparison the callers make can see.
        """
        if not self._clusters:
            return None, -1.0
        near = self._near
        if near is not None and near[:2] == (it.seq, self._cver) and (near[4] or not exact):
            return near[2], near[3]  # no centroid changed since: the same answer
        k = len(self._clusters)
        if not exact and k >= _FEW:
            rough = self._cbuf32[:k] @ it.v32
            keep = np.flatnonzero(rough >= rough.max() - _ROUGH)
            sims = self._cbuf[keep] @ it.v64
            top = int(np.argmax(sims))
            sim = float(sims[top])
            if (abs(sim - self.config.assign_threshold) >= _UNSURE
                    and abs(sim - self.config.pool_attach_threshold) >= _UNSURE
                    and (len(keep) == 1 or np.partition(sims, -2)[-2] < sim - _UNSURE)):
                self._near = (it.seq, self._cver, int(keep[top]), sim, False)
                return int(keep[top]), sim
        sims = self._centroids @ it.v64
        best = int(np.argmax(sims))
        self._near = (it.seq, self._cver, best, float(sims[best]), True)
        return best, float(sims[best])

    def _set_centroid(self, i: int, centroid: np.ndarray) -> None:
        self._cbuf[i] = centroid
        self._cbuf32[i] = centroid
        self._moved.add(i)
        self._touched.add(i)
        self._cver += 1

    def _join(self, c: _Cluster, it: _Seen) -> None:
        c.weight = min(c.weight + 1, self.config.centroid_memory)
        moved = c.centroid + (it.v64 - c.centroid) / c.weight
        c.centroid = unit(moved)
        i = self._index(c.cid)
        self._set_centroid(i, c.centroid)
        it.cluster = c.cid
        c.add(it)
        self._terms.touch(i)

    def _pair_threshold(self) -> float:
        """How close (dot product) a pooled query must be to a new one to re-cluster the pool at once.

        With a cosine linkage a pair further apart than the cut can never form a group, so the
        threshold is at least ``1 - distance_threshold`` (a fine cut does not re-cluster the pool
        on every query for pairs it cannot use)."""
        threshold = self.config.pool_pair_threshold
        if self.config.linkage != "ward":
            threshold = max(threshold, 1.0 - self.config.distance_threshold)
        return threshold

    def _to_pool(self, it: _Seen) -> bool:
        """Pool ``it``; returns whether a query pooled before it is ``_pair_threshold`` close."""
        it.cluster = None
        pair = self._pool.add(it, self._pair_threshold())
        while len(self._pool) > self.config.pool_capacity:
            old = self._pool.popleft()
            old.cluster = _FORGOTTEN
            self._forgotten += 1
        return pair

    def _new_cluster(self, centroid: np.ndarray, n: int) -> _Cluster:
        cfg = self.config
        c = _Cluster(
            cid=f"c{len(self._clusters) + 1:03d}", centroid=centroid,
            weight=min(n, cfg.centroid_memory), terms=TermCounts(cfg.label_vocabulary),
            representative=Representative(cfg.representative_candidates),
        )
        k = len(self._clusters)
        if k == len(self._cbuf):
            grown = np.zeros((2 * k, self.dim))
            grown[:k] = self._cbuf
            self._cbuf = grown
            self._cbuf32 = grown.astype(np.float32)
        self._clusters.append(c)
        self._set_centroid(k, centroid)
        return c

    def _promote(self, items: list[_Seen]) -> list[str]:
        """Cluster ``items``; groups big enough become new clusters. Returns their ids."""
        if not items:
            return []
        if self.config.linkage == "ward":
            x = self._pool.matrix(items)
            groups = [[items[i] for i in g.tolist()] for g in discover(x, self.config)]
        else:
            groups = self._pool.groups(self.config)
        created = []
        for g in groups:
            c = self._new_cluster(unit(self._pool.matrix(g).mean(0)), len(g))
            created.append(c.cid)
            for it in g:
                self._move(it, c)
        if created:
            self._sweep()
        return created

    def _move(self, it: _Seen, target: _Cluster) -> None:
        """Attribute ``it`` to ``target`` (from the pool or another cluster)."""
        if it.cluster == target.cid or it.cluster == _FORGOTTEN:
            return
        if it.cluster is None:
            self._pool.remove(it)
        else:
            source = self._index(it.cluster)
            self._clusters[source].size -= 1
            self._touched.add(source)
        it.cluster = target.cid
        it.attached = None
        target.add(it)
        i = self._index(target.cid)
        self._touched.add(i)
        self._terms.touch(i)

    def _attach(self, it: _Seen) -> None:
        """Report pooled ``it`` under its nearest cluster if close enough (``pool_attach_threshold``).

        It stays in the pool (a new intent is still found from it) and is no member: the cluster's
        centroid, size and label do not change. A pooled query counted as one mixed "pool" group
        and was monitored nowhere; most of them belong near their nearest cluster."""
        best, sim = self._nearest(it)
        if best is not None and sim >= self.config.pool_attach_threshold:
            it.attached = self._clusters[best].cid

    def _sweep(self) -> None:
        """Pooled queries now at least ``assign_threshold`` close to a cluster (one just formed, or a
        refit moved a centroid) become its members, as they would if they arrived now."""
        moved, self._moved = sorted(self._moved), set()
        if not self._pool or not self._clusters or not moved:
            return
        # A pooled query was below assign_threshold to every centroid when it was last compared
        # (on arrival or at the last sweep), so only the centroids changed since can have come
        # close enough; the queries they did are compared with every centroid.
        threshold = self.config.assign_threshold
        for it in self._pool.close_to(self._centroids[moved], threshold):
            sims = self._centroids @ it.v64
            b = int(np.argmax(sims))
            if float(sims[b]) >= threshold:
                self._move(it, self._clusters[b])

    def _index(self, cid: str) -> int:
        return int(cid[1:]) - 1

    def _result(self, it: _Seen, created: Sequence[str]) -> Assignment:
        if it.cluster is None or it.cluster == _FORGOTTEN:
            if it.attached is not None:
                c = self._clusters[self._index(it.attached)]
                return Assignment(it.attached, float(c.centroid @ it.v64),
                                  tuple(created))
            _, sim = self._nearest(it, exact=True)  # the value is reported
            return Assignment(None, sim, tuple(created))
        c = self._clusters[self._index(it.cluster)]
        sim = float(c.centroid @ it.v64)
        return Assignment(it.cluster, sim, tuple(created))
