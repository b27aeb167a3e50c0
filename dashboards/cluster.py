"""Cluster (variable ``cluster``): one cluster's faithfulness and confidence against its band,
volume, failing answers, the documents they cite, its incidents."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, table, timeseries
from grafana_foundation_sdk.models.common import GraphDrawStyle

from dashboards import common as c
from dashboards.query import ClickHouseQuery, series_query, table_query

CLUSTER = "cluster_id = '${cluster}'"


def _quantiles(column: str) -> str:
    return f"""
        SELECT time, q[1] AS p05, q[2] AS p25, q[3] AS p50, q[4] AS p75, q[5] AS p95
        FROM (
            SELECT $__timeInterval(bucket) AS time, {c.QUANTILES}({column}) AS q
            FROM ({c.rollup_by_interval(where=CLUSTER)})
            GROUP BY time
        )
        ORDER BY time"""


def faithfulness_timeseries() -> timeseries.Panel:
    band = """
        SELECT $__timeInterval(timestamp) AS time, avg(baseline_low) AS baseline_low
        FROM interactions
        WHERE cluster_id = '${cluster}' AND $__timeFilter(timestamp)
        GROUP BY time ORDER BY time"""
    return (c.default_timeseries("Faithfulness quantiles against the baseline band").span(24)
            .description("p05..p95 of faithfulness per interval (rollups) and the lower edge of the cluster's "
                         "baseline band when the answers were scored (below it: a below-baseline answer).")
            .min(0).max(1)
            .with_target(series_query(_quantiles("faithfulness_q"), "A"))
            .with_target(series_query(band, "B")))


def confidence_timeseries() -> timeseries.Panel:
    return (c.default_timeseries("Confidence quantiles").min(0).max(1)
            .with_target(series_query(_quantiles("confidence_q"))))


def volume_timeseries() -> timeseries.Panel:
    sql = f"""
        SELECT $__timeInterval(bucket) AS time, sum(interactions) AS answers, sum(below_baseline) AS below_baseline,
               sum(confident_wrong) AS confident_wrong
        FROM ({c.rollup_by_interval(where=CLUSTER)})
        GROUP BY time ORDER BY time"""
    return (c.default_timeseries("Volume").draw_style(GraphDrawStyle.BARS).fill_opacity(60)
            .with_target(series_query(sql)))


def failing_examples_table() -> table.Panel:
    sql = """
        SELECT timestamp, interaction_id, session_id, customer_id, round(faithfulness, 3) AS faithfulness,
               round(confidence, 3) AS confidence, confident_wrong, stale_context, query, response, incident_id
        FROM interactions
        WHERE cluster_id = '${cluster}' AND $__timeFilter(timestamp) AND below_baseline
        ORDER BY timestamp DESC
        LIMIT 1 BY interaction_id
        LIMIT 50"""
    return (c.default_table("Failing answers (latest 50 below baseline)").height(10)
            .data_links([c.incident_link()])
            .with_target(table_query(sql)))


def documents_table() -> table.Panel:
    sql = """
        SELECT doc_id, doc_version, count() AS failing_answers, countIf(stale) AS stale_contexts,
               round(count() / any(total), 3) AS share_of_failing, max(timestamp) AS last_cited
        FROM (
            SELECT timestamp, context_doc_ids, context_doc_versions, context_stale,
                   count() OVER () AS total
            FROM interactions
            WHERE cluster_id = '${cluster}' AND $__timeFilter(timestamp) AND below_baseline
        )
        ARRAY JOIN context_doc_ids AS doc_id, context_doc_versions AS doc_version, context_stale AS stale
        WHERE doc_id IS NOT NULL
        GROUP BY doc_id, doc_version
        ORDER BY failing_answers DESC
        LIMIT 20"""
    return (c.default_table("Implicated documents").span(12).height(8)
            .description("Documents retrieved for the failing answers in range; stale: the passage was indexed "
                         "before the document last changed.")
            .with_target(table_query(sql)))


def incidents_table() -> table.Panel:
    sql = f"""
        SELECT incident_id, status, severity, onset_at, detected_at, resolved_at, affected_sessions,
               below_baseline_count, summary
        FROM incidents
        WHERE has({c.MEMBERS}, '${{cluster}}')
        ORDER BY onset_at DESC
        LIMIT 50"""
    return (c.default_table("This cluster's incidents").span(12).height(8)
            .data_links([c.incident_link()])
            .with_target(table_query(sql)))


def variable() -> dashboard.QueryVariable:
    return c.query_variable("cluster", "Cluster", """
        SELECT cluster_id, concat(label, ' (', cluster_id, ')') FROM clusters FINAL ORDER BY label, cluster_id""")


def annotations() -> dict[str, ClickHouseQuery]:
    return {}


def build() -> dashboard.Dashboard:
    return (c.base_dashboard("faithwatch · Cluster", c.CLUSTER_UID,
                             "One intent cluster: faithfulness and confidence against its baseline band, volume, "
                             "failing answers, implicated documents, incidents.")
            .with_variable(variable())
            .with_panel(faithfulness_timeseries())
            .with_panel(confidence_timeseries())
            .with_panel(volume_timeseries())
            .with_panel(failing_examples_table())
            .with_panel(documents_table())
            .with_panel(incidents_table()))
