from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist

from pipelines.errors import StateError
from pipelines.family import IntentFamilies, family_id_of, link


def unit(rows):
    x = np.asarray(rows, dtype=float)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_family_ids_name_the_oldest_member():
    assert family_id_of("c007") == "f007" and family_id_of("c1234") == "f1234"
    fam = IntentFamilies(0.3)
    ids = ["c998", "c999", "c1000"]
    fam.relink(ids, unit([[1, 0], [0, 1], [0.05, 1]]))
    # c1000 is younger than c999 although it sorts before it as a string.
    assert fam.family_of("c1000") == "f999" and fam.members("f999") == ("c999", "c1000")


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(0, 10_000), st.floats(0.05, 0.9))
def test_link_by_components_equals_one_average_linkage(n, seed, threshold):
    x = unit(np.random.default_rng(seed).normal(size=(n, 4)))
    ours = sorted(sorted(g) for g in link(x, threshold))
    labels = fcluster(linkage(np.clip(pdist(x, "cosine"), 0, 2), method="average"),
                      np.nextafter(threshold, -np.inf), criterion="distance")
    theirs = sorted(sorted(np.flatnonzero(labels == lab).tolist()) for lab in set(labels.tolist()))
    assert ours == theirs


def test_a_merge_keeps_the_younger_id_as_an_alias_and_a_split_gives_the_founder_its_own():
    fam = IntentFamilies(0.2)
    ids = ["c001", "c002", "c003"]
    apart = unit([[1, 0, 0], [0, 1, 0], [0, 0.98, 0.2]])
    assert fam.relink(ids, apart)
    assert fam.families == {"f001": ("c001",), "f002": ("c002", "c003")}
    together = unit([[1, 0, 0], [0.97, 0.24, 0], [0.97, 0.2, 0.1]])
    change = fam.relink(ids, together)
    assert fam.families == {"f001": ("c001", "c002", "c003")} and fam.aliases("f001") == ("f002",)
    # What moved: c002 and c003 (c001 stayed in f001); f001 grew, f002 is gone.
    assert change.clusters == {"c002", "c003"} and change.families == {"f001", "f002"}
    assert not fam.relink(ids, together)  # nothing moved: same version
    change = fam.relink(ids, apart)
    assert fam.family_of("c003") == "f002"
    assert change.clusters == {"c002", "c003"} and change.families == {"f001", "f002"}
    placed = fam.sync([*ids, "c004"], unit([[1, 0, 0], [0, 1, 0], [0, 0.98, 0.2], [0.99, 0.1, 0]]))
    assert placed.clusters == {"c004"} and placed.families == {"f001"}
    assert not fam.sync([*ids, "c004"], unit([[1, 0, 0], [0, 1, 0], [0, 0.98, 0.2], [0.99, 0.1, 0]]))


def test_a_new_cluster_joins_its_nearest_centroids_family_only_if_close():
    fam = IntentFamilies(0.3)
    ids = ["c001", "c002"]
    x = unit([[1, 0, 0], [0, 1, 0]])
    fam.relink(ids, x)
    v = fam.version
    assert fam.place("c003", unit([[0.99, 0.1, 0]])[0], ids, x) == "f001"
    assert fam.place("c004", unit([[0.3, 0.3, 0.9]])[0], ids, x) == "f004"
    assert fam.place("c003", unit([[0, 1, 0]])[0], ids, x) == "f001"  # placed once
    assert fam.version == v + 2 and fam.members("f001") == ("c001", "c003")
    assert "c004" in fam and "c005" not in fam and fam.family_of("c005") == "f005"


def test_placing_after_many_centroid_moves_equals_placing_from_scratch():
    """place keeps every centroid's norm between calls and computes again only the rows reported
    moved (and new ones): after many moves, the norms equal norms from scratch bit for bit, and
    every cluster lands where a copy with nothing kept (restored from state) puts it."""
    rng = np.random.default_rng(7)
    d, threshold = 8, 0.1
    x = rng.normal(size=(4, d)) * rng.uniform(0.2, 3.0, size=(4, 1))  # not unit length: norms matter
    ids = [f"c{k + 1:03d}" for k in range(4)]
    fam = IntentFamilies(threshold)
    fam.sync(ids, x)
    joined = 0
    for step in range(120):
        moved = rng.choice(len(ids), size=rng.integers(0, 4), replace=False).tolist()
        for k in moved:  # a centroid moves: its direction and its length change
            x[k] = (x[k] + rng.normal(scale=0.4, size=d)) * rng.uniform(0.3, 3.0)
        fam.moved(ids[k] for k in moved)
        new = x[rng.integers(len(ids))] + rng.normal(scale=0.2, size=d) if step % 2 else rng.normal(size=d)
        ids.append(f"c{len(ids) + 1:03d}")
        x = np.vstack([x, new * rng.uniform(0.3, 3.0)])
        scratch = IntentFamilies.from_state(fam.to_state(), threshold)  # nothing kept
        assert fam.sync(ids, x) == scratch.sync(ids, x)
        assert fam.families == scratch.families
        assert np.array_equal(fam._norms, np.linalg.norm(x, axis=1))  # bit for bit
        joined += fam.family_of(ids[-1]) != family_id_of(ids[-1])
    assert 20 < joined < 100  # both outcomes happen many times
    # Rows that are not the ones last seen (a shorter list): every norm is computed again.
    assert fam.place("c999", x[0], ids[:3], x[:3]) == IntentFamilies(threshold).place("c999", x[0], ids[:3], x[:3])
    assert np.array_equal(fam._norms, np.linalg.norm(x[:3], axis=1))


def test_state_round_trip_and_refusal_of_another_threshold():
    fam = IntentFamilies(0.3)
    ids = ["c001", "c002", "c003"]
    fam.relink(ids, unit([[1, 0], [0.98, 0.1], [0, 1]]))
    fam.relink(ids, unit([[1, 0], [0.7, 0.7], [0.6, 0.8]]))
    state = json.loads(json.dumps(fam.to_state()))
    back = IntentFamilies.from_state(state, 0.3)
    assert back.families == fam.families and back.version == fam.version
    assert [back.aliases(f) for f in back.families] == [fam.aliases(f) for f in fam.families]
    with pytest.raises(StateError):
        IntentFamilies.from_state(state, 0.4)
