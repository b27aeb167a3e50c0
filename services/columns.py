"""Store rows as the CLI and the HTTP API both show them: the columns of each listing and the
fields derived for display. One place, so ``faithwatch incidents list`` and ``GET /v1/incidents``
(and the other pairs) cannot drift apart, and the API needs nothing from the CLI."""

from __future__ import annotations

INCIDENT_COLUMNS = ["incident_id", "status", "severity", "category", "cluster_id", "cluster_label",
                    "n_clusters", "onset_at", "detected_at", "affected_sessions", "below_baseline_count",
                    "outreach_required"]
SESSION_COLUMNS = ["session_id", "customer_id", "first_at", "last_at", "below_baseline_count",
                   "confident_wrong_count", "worst_faithfulness", "example_interaction_id",
                   "example_query", "example_response"]
CLUSTER_COLUMNS = ["cluster_id", "label", "category", "size", "centroid_version", "first_seen", "last_seen",
                   "representative_query", "family_id", "family_label", "family_category"]
FAMILY_COLUMNS = ["family_id", "label", "category", "n_clusters", "size", "first_seen", "last_seen", "clusters",
                  "aliases"]


def with_member_count(rows: list[dict]) -> list[dict]:
    """Incident rows with ``n_clusters``: their member clusters (an incident stored without a
    member list, before families existed, has its one cluster).

    >>> with_member_count([{"clusters": ["c1", "c2"]}, {"clusters": []}])
    [{'clusters': ['c1', 'c2'], 'n_clusters': 2}, {'clusters': [], 'n_clusters': 1}]
    """
    for row in rows:
        row["n_clusters"] = len(row.get("clusters") or ()) or 1
    return rows


def family_of(store, cluster: dict) -> dict | None:
    """The family row of ``cluster`` (with its member ids), or None when it has none stored."""
    if cluster.get("family_id") is None:
        return None
    found = store.list_families(family_id=cluster["family_id"])
    return found[0] if found else None
