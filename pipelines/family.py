"""Intent families: the clusters that are one intent, monitored as one unit beside each cluster.

One intent often spreads over several clusters ("weather in miami", "chance of rain", "snow
forecast"), and a pattern in that intent would otherwise be several small patterns, each slow to
prove and each its own page. :class:`IntentFamilies` groups clusters whose centroids are close:
average linkage (cosine) over the centroids, cut at ``threshold``, re-linked every
``refresh_every`` interactions; a cluster created in between joins the family of its nearest
centroid when that is closer than the cut, or starts its own.

Ids are stable without being stored per cluster: a family is named after its oldest member
(``c007`` -> ``f007``), so it keeps its id while it grows, and the same stream gives the same
families in every driver. When a re-link merges two families, the merged one carries the older id
and keeps the other as an alias (records already written keep the id they were written with).

Pure, deterministic, and its state is plain JSON.

>>> import numpy as np
>>> fam = IntentFamilies(threshold=0.3)
>>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
>>> change = fam.relink(["c001", "c002", "c003"], x)
>>> sorted(change.families), bool(change)
(['f001', 'f003'], True)
>>> fam.family_of("c002"), fam.family_of("c003"), fam.members("f001")
('f001', 'f003', ('c001', 'c002'))
>>> fam.place("c004", np.array([0.1, 0.95]), ["c001", "c002", "c003"], x)
'f003'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from pipelines.state import check_envelope, envelope


def family_id_of(cluster_id: str) -> str:
    """The id of the family founded by ``cluster_id`` (``c007`` -> ``f007``)."""
    return "f" + cluster_id[1:] if cluster_id[:1] == "c" else f"f-{cluster_id}"


def cluster_age(cluster_id: str) -> tuple[int, str]:
    """Creation order of cluster ids ``c001``, ..., ``c999``, ``c1000`` (longer is younger)."""
    return len(cluster_id), cluster_id


def link(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Groups of row indices under average linkage (cosine) cut at ``threshold``.

    Linked one connected component of the "closer than the cut" graph at a time (an average
    merge below the cut needs a pair closer than it, so this equals one linkage of everything),
    which keeps a refresh over thousands of mostly unrelated centroids cheap.

    >>> link(np.array([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0]]), 0.2)
    [[0, 1], [2]]
    """
    n = len(vectors)
    if n == 0:
        return []
    x = np.asarray(vectors, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
    sims = x @ x.T
    rows, cols = np.nonzero(np.triu(1.0 - sims < threshold, k=1))
    _, comp = connected_components(coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)),
                                              shape=(n, n)), directed=False)
    groups: list[list[int]] = []
    for c in dict.fromkeys(comp.tolist()):
        idx = np.flatnonzero(comp == c)
        if len(idx) <= 2:  # a pair in one component is closer than the cut
            groups.append(idx.tolist())
            continue
        condensed = np.clip(squareform(1.0 - sims[np.ix_(idx, idx)], checks=False), 0.0, 2.0)
        labels = fcluster(linkage(condensed, method="average"), np.nextafter(threshold, -np.inf),
                          criterion="distance")
        groups += [idx[labels == lab].tolist() for lab in dict.fromkeys(labels.tolist())]
    groups.sort(key=lambda g: g[0])
    return groups


@dataclass(frozen=True)
class FamilyChange:
    """What an update of the families changed: the clusters whose family is new to them (placed
    for the first time, moved, or gone) and the families whose members or aliases changed
    (including families that no longer exist). False when nothing changed.

    The pipeline describes again only these (and the families their clusters' new descriptions
    touch), instead of every cluster and family whenever anything moved.
    """

    clusters: frozenset[str] = frozenset()
    families: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.clusters or self.families)

    def __or__(self, other: FamilyChange) -> FamilyChange:
        return FamilyChange(self.clusters | other.clusters, self.families | other.families)

    @classmethod
    def of(cls, clusters: Iterable[str] = (), families: Iterable[str] = ()) -> FamilyChange:
        return cls(frozenset(clusters), frozenset(families))


NO_CHANGE = FamilyChange()


class IntentFamilies:
    """Which family each cluster belongs to (see the module docstring)."""

    KIND = "intent_families"
    STATE_VERSION = 1

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._family: dict[str, str] = {}  # cluster id -> family id
        self._members: dict[str, tuple[str, ...]] = {}  # family id -> member cluster ids, oldest first
        self._aliases: dict[str, tuple[str, ...]] = {}  # family id -> ids merged into it
        self.version = 0  # bumped whenever a membership changes
        # What :meth:`place` needs of every centroid row but the new one, kept between calls
        # (derived, never stored): the float64 norms of the rows in ``cluster_ids`` order as
        # last computed, the row of each cluster id, and the rows reported moved since.
        self._norms = np.empty(0)
        self._row: dict[str, int] = {}
        self._moved: set[str] = set()

    # -- reading -----------------------------------------------------------------------------
    def family_of(self, cluster_id: str) -> str:
        """The cluster's family id; a cluster never placed is a family of its own."""
        return self._family.get(cluster_id) or family_id_of(cluster_id)

    def __contains__(self, cluster_id: str) -> bool:
        """Whether the cluster has been placed in a family."""
        return cluster_id in self._family

    @property
    def placed(self) -> int:
        """How many clusters have been placed in a family."""
        return len(self._family)

    def members(self, family_id: str) -> tuple[str, ...]:
        return self._members.get(family_id, ())

    def aliases(self, family_id: str) -> tuple[str, ...]:
        return self._aliases.get(family_id, ())

    def size(self, family_id: str) -> int:
        """Member clusters of ``family_id`` (0 if unknown)."""
        return len(self._members.get(family_id, ()))

    @property
    def families(self) -> dict[str, tuple[str, ...]]:
        """Family id -> member cluster ids, families in order of their oldest member."""
        return dict(sorted(self._members.items(), key=lambda kv: cluster_age(kv[1][0])))

    # -- updating ----------------------------------------------------------------------------
    def relink(self, cluster_ids: Sequence[str], centroids: np.ndarray) -> FamilyChange:
        """Re-form every family from the centroids (rows in ``cluster_ids`` order); what changed
        (false if no membership did)."""
        old, old_members, old_aliases = self._family, self._members, dict(self._aliases)
        members: dict[str, tuple[str, ...]] = {}
        family: dict[str, str] = {}
        for group in link(centroids, self.threshold):
            ids = tuple(sorted((cluster_ids[k] for k in group), key=cluster_age))
            fid = family_id_of(ids[0])
            members[fid] = ids
            for cid in ids:
                family[cid] = fid
        for fid, ids in members.items():
            # A family id that no longer names a family lives on as an alias of the family that
            # now holds its founder.
            merged = {old[c] for c in ids if c in old} - {fid}
            gone = sorted((m for m in merged if m not in members), key=lambda f: cluster_age("c" + f[1:]))
            if gone:
                self._aliases[fid] = tuple(dict.fromkeys((*self._aliases.get(fid, ()), *gone)))
        self._family, self._members = family, members
        if family == old:
            return NO_CHANGE
        self.version += 1
        return FamilyChange.of(
            (c for c in family.keys() | old.keys() if family.get(c) != old.get(c)),
            (f for f in members.keys() | old_members.keys() | self._aliases.keys()
             if members.get(f) != old_members.get(f) or self._aliases.get(f) != old_aliases.get(f)))

    def sync(self, cluster_ids: Sequence[str], centroids: np.ndarray) -> FamilyChange:
        """Give every cluster not yet in a family one: all by :meth:`relink` when none is (the
        first fit), else each by :meth:`place` (the pipeline calls this whenever clusters are
        created, and :meth:`relink` every ``family_refresh_every`` interactions); what changed."""
        if len(cluster_ids) == len(self._family) and (not cluster_ids or cluster_ids[-1] in self._family):
            return NO_CHANGE  # all placed: the clusterer only adds clusters, newest last
        unplaced = self._unplaced(cluster_ids)
        if unplaced and len(unplaced) == len(cluster_ids):
            return self.relink(cluster_ids, centroids)
        if not unplaced:
            return NO_CHANGE
        placed = {cluster_ids[k]: self.place(cluster_ids[k], centroids[k], cluster_ids, centroids) for k in unplaced}
        return FamilyChange.of(placed, placed.values())

    def place(self, cluster_id: str, centroid: np.ndarray, cluster_ids: Sequence[str],
              centroids: np.ndarray) -> str:
        """Put a new cluster into the family of its nearest other centroid if that is closer than
        the cut, else into a family of its own; returns its family id."""
        if cluster_id in self._family:
            return self._family[cluster_id]
        best = None
        if len(cluster_ids):
            x = np.asarray(centroids, dtype=np.float64)
            c = np.asarray(centroid, dtype=np.float64)
            sims = (x @ c) / np.maximum(self._row_norms(cluster_ids, x) * np.linalg.norm(c), 1e-300)
            with contextlib.suppress(ValueError):  # the cluster itself, if among the rows
                sims[cluster_ids.index(cluster_id)] = -np.inf
            if np.isfinite(sims).any():
                best = int(np.argmax(sims))  # ties: the first
        if best is not None and 1.0 - float(sims[best]) < self.threshold:
            fid = self.family_of(cluster_ids[best])
        else:
            fid = family_id_of(cluster_id)
        self._family[cluster_id] = fid
        self._members[fid] = tuple(sorted((*self._members.get(fid, ()), cluster_id), key=cluster_age))
        self.version += 1
        return fid

    def moved(self, cluster_ids: Iterable[str]) -> None:
        """Say that these clusters' centroids may have changed since the last call to :meth:`sync`
        or :meth:`place` (the pipeline passes every cluster the clusterer described anew, which
        it does whenever a centroid moves). Placing then computes their norms again; every
        other row's is kept, so placing a new cluster is one matrix-vector product instead of a
        pass over every centroid's norm (+ a copy) per new cluster."""
        self._moved.update(cluster_ids)

    def _unplaced(self, cluster_ids: Sequence[str]) -> list[int]:
        """Rows of the clusters not in a family. The clusterer only adds clusters, newest last, so
        these are the newest few: found from the end, without a pass over every cluster, unless
        the count shows a gap further back."""
        k = len(cluster_ids)
        while k and cluster_ids[k - 1] not in self._family:
            k -= 1
        if k != len(self._family):
            return [k for k, cid in enumerate(cluster_ids) if cid not in self._family]
        return list(range(k, len(cluster_ids)))

    def _row_norms(self, cluster_ids: Sequence[str], x: np.ndarray) -> np.ndarray:
        """``np.linalg.norm(x, axis=1)``, bit for bit, computing only the rows that are new or
        reported :meth:`moved` since the last call (each row's norm depends on that row alone)."""
        n, known = len(cluster_ids), len(self._norms)
        if known > n or (known and self._row.get(cluster_ids[known - 1]) != known - 1):
            known = 0  # not the rows last seen (another clusterer): start again
            self._row = {}
        rows = sorted(r for r in map(self._row.get, self._moved) if r is not None and r < known)
        self._moved = set()
        norms = np.empty(n)
        norms[:known] = self._norms[:known]
        if rows:
            norms[rows] = np.linalg.norm(x[rows], axis=1)
        if known < n:
            norms[known:] = np.linalg.norm(x[known:], axis=1)
            self._row.update((cluster_ids[k], k) for k in range(known, n))
        self._norms = norms
        return norms

    # -- state -------------------------------------------------------------------------------
    def to_state(self) -> dict:
        payload = {"families": {fid: list(ids) for fid, ids in self.families.items()},
                   "aliases": {fid: list(a) for fid, a in sorted(self._aliases.items())},
                   "version": self.version}
        return envelope(self.KIND, self.STATE_VERSION, {"threshold": self.threshold}, payload)

    @classmethod
    def from_state(cls, state: dict, threshold: float) -> IntentFamilies:
        p = check_envelope(state, cls.KIND, cls.STATE_VERSION, {"threshold": threshold})
        f = cls(threshold)
        f._members = {fid: tuple(ids) for fid, ids in p["families"].items()}
        f._family = {cid: fid for fid, ids in f._members.items() for cid in ids}
        f._aliases = {fid: tuple(a) for fid, a in p["aliases"].items()}
        f.version = int(p["version"])
        return f
