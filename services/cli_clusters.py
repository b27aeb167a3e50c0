"""``faithwatch clusters list|show``: the intent clusters in the store, as GET /v1/clusters shows them."""

from __future__ import annotations

import click

from pipelines.errors import FaithwatchError
from services import report
from services.cli import data_dir_option, format_option, main, reading_store
from services.columns import CLUSTER_COLUMNS, family_of

# The grouped table of `clusters list`: a family's row, then its member clusters indented under it.
GROUPED_COLUMNS = ["family/cluster", "label", "category", "size", "centroid_version", "first_seen", "last_seen",
                   "representative_query"]
NO_FAMILY = "(no family)"


def _clusters(n: int) -> str:
    return f"{n} cluster{'' if n == 1 else 's'}"


def grouped_rows(clusters: list[dict], families: list[dict]) -> list[dict]:
    """Rows for :data:`GROUPED_COLUMNS`: each family (id, label, category, total size, first and
    last seen), its members indented below it in the family's order, then the clusters stored
    without a family under ``(no family)``."""
    by_id = {c["cluster_id"]: c for c in clusters}
    rows: list[dict] = []

    def members(ids: list[str]) -> None:
        for cid in ids:
            c = by_id[cid]
            rows.append({**c, "family/cluster": f"  {cid}"})

    for f in families:
        rows.append({"family/cluster": f["family_id"], "label": f["label"], "category": f["category"],
                     "size": f["size"], "first_seen": f["first_seen"], "last_seen": f["last_seen"],
                     "representative_query": _clusters(f["n_clusters"])})
        members([cid for cid in f["clusters"] if cid in by_id])
    loose = [c["cluster_id"] for c in clusters if c.get("family_id") is None]
    if loose:
        rows.append({"family/cluster": NO_FAMILY, "representative_query": _clusters(len(loose))})
        members(loose)
    return rows

RATE_COLUMNS = ["window", "interactions", "below_baseline", "below_baseline_rate", "confident_wrong",
                "confident_wrong_rate", "mean_faithfulness", "mean_confidence", "first_at", "last_at"]
EXAMPLE_COLUMNS = ["timestamp", "session_id", "customer_id", "below_baseline", "faithfulness", "confidence",
                   "query", "response"]

def cluster_text(c: dict) -> str:
    low = c.get("last_baseline_low")
    f = c.get("family")
    family = "none stored" if f is None else (
        f"{f['family_id']} \"{f['label']}\" (category {f['category']}): {_clusters(f['n_clusters'])}, "
        f"{', '.join(f['clusters'])}")
    lines = [
        f"cluster   {c['cluster_id']} \"{c['label']}\" (category {c['category']})",
        f"family    {family}",
        f"terms     {', '.join(c.get('terms') or [])}",
        f"central   {c['representative_query']}",
        f"size      {c['size']} queries, centroid version {c['centroid_version']}; first seen "
        f"{c.get('first_seen') or '-'}, last seen {c.get('last_seen') or '-'}",
        f"baseline  band low {'-' if low is None else f'{low:.3f}'} when the latest answer was scored "
        f"(the live band: GET /v1/clusters/{c['cluster_id']} while serving)",
        f"incidents {', '.join(c.get('open_incidents') or []) or 'none open'}",
        "",
        "recent rates (windows end at the cluster's latest answer):",
        report.table(c["recent_rates"], RATE_COLUMNS, max_width=32),
        "",
        "latest answers (below baseline first):",
        report.table(c["examples"], EXAMPLE_COLUMNS, max_width=40),
    ]
    return "\n".join(lines)


@main.group("clusters")
def clusters_group():
    """Intent clusters from the store."""




@clusters_group.command("list")
@format_option
@data_dir_option
@click.pass_context
def clusters_list(ctx, fmt, data_dir):
    """Every cluster found so far, grouped by intent family (table), or one row per cluster with
    its family columns (csv, json)."""
    with reading_store(ctx, data_dir) as store:
        rows = store.list_clusters()
        families = store.list_families() if fmt == "table" else []
    if fmt == "table":
        click.echo(report.table(grouped_rows(rows, families), GROUPED_COLUMNS))
    else:
        click.echo(report.render(rows, CLUSTER_COLUMNS, fmt), nl=fmt != "csv")


@clusters_group.command("show")
@click.argument("cluster_id")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table: the cluster, its rates and latest answers; csv: the rate windows; json: everything")
@data_dir_option
@click.pass_context
def clusters_show(ctx, cluster_id, fmt, data_dir):
    """One cluster: label, category, family, recent rates and latest answers."""
    with reading_store(ctx, data_dir) as store:
        detail = store.cluster_detail(cluster_id)
        if detail is None:
            raise FaithwatchError(f"no cluster {cluster_id}")
        detail["open_incidents"] = [i["incident_id"] for i in
                                    store.list_incidents(status="open", cluster_id=cluster_id)]
        detail["family"] = family_of(store, detail)
    if fmt == "json":
        click.echo(report.as_json(detail))
    elif fmt == "csv":
        click.echo(report.as_csv(detail["recent_rates"], RATE_COLUMNS), nl=False)
    else:
        click.echo(cluster_text(detail))
