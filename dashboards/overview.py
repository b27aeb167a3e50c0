"""Overview: every family and cluster, their rates against the baseline, open incidents."""

from __future__ import annotations

import textwrap

from grafana_foundation_sdk.builders import dashboard, heatmap, stat, table, timeseries
from grafana_foundation_sdk.models.heatmap import HeatmapColorMode

from dashboards import common as c
from dashboards.query import ClickHouseQuery, Format, series_query, table_query

# One row per cluster over the time range, from the rollups (labels from clusters FINAL).
_CLUSTER_TOTALS = f"""
    SELECT cluster_id, sum(interactions) AS n, sum(below_baseline) AS below, sum(confident_wrong) AS cw,
           {c.QUANTILES}(faithfulness_q)[3] AS faithfulness_p50
    FROM ({c.rollup_over_range()})
    GROUP BY cluster_id"""
_LABELS = "SELECT cluster_id, label, category, ifNull(family_id, '') AS family_id, " \
          "ifNull(family_label, '') AS family_label FROM clusters FINAL"
_OPEN_BY_CLUSTER = f"""
    SELECT arrayJoin({c.MEMBERS}) AS cluster_id, count() AS open_incidents
    FROM incidents WHERE status = 'open' GROUP BY cluster_id"""


def open_incidents_stat() -> stat.Panel:
    sql = "SELECT count() AS open_incidents FROM incidents WHERE status = 'open'"
    return c.default_stat("Open incidents").with_target(table_query(sql))


def sessions_affected_stat() -> stat.Panel:
    sql = """
        SELECT uniqExact(session) AS sessions_affected
        FROM incidents ARRAY JOIN session_ids AS session
        WHERE onset_at <= $__toTime AND (status = 'open' OR resolved_at >= $__toTime - INTERVAL 24 HOUR)"""
    return (c.default_stat("Sessions affected (last 24 h)")
            .description("Distinct sessions in the blast radius of the incidents open in the 24 h before the "
                         "end of the time range.")
            .with_target(table_query(sql)))


def outreach_pending_stat() -> stat.Panel:
    sql = """
        SELECT count() AS outreach_pending, sum(affected_customers) AS customers
        FROM incidents WHERE status = 'open' AND outreach_required"""
    return (c.default_stat("Outreach pending")
            .description("Open incidents whose category requires proactive customer outreach.")
            .with_target(table_query(sql)))


def volume_stat() -> stat.Panel:
    sql = f"SELECT sum(interactions) AS answers FROM ({c.rollup_over_range()})"
    return c.default_stat("Answers in range").with_target(table_query(sql))


def clusters_table() -> table.Panel:
    sql = f"""
        SELECT l.family_label AS family, l.label AS cluster, l.category AS category, t.cluster_id AS cluster_id,
               t.n AS volume, round(t.faithfulness_p50, 3) AS faithfulness_median,
               round(b.baseline_low, 3) AS baseline_low,
               round(t.faithfulness_p50 - b.baseline_low, 3) AS above_band,
               round(t.below / t.n, 4) AS below_baseline_rate, round(t.cw / t.n, 4) AS confident_wrong_rate,
               o.open_incidents AS open_incidents
        FROM ({_CLUSTER_TOTALS}) AS t
        LEFT JOIN ({_LABELS}) AS l ON l.cluster_id = t.cluster_id
        LEFT JOIN (
            SELECT cluster_id, argMax(baseline_low, timestamp) AS baseline_low
            FROM interactions WHERE $__timeFilter(timestamp) GROUP BY cluster_id
        ) AS b ON b.cluster_id = t.cluster_id
        LEFT JOIN ({_OPEN_BY_CLUSTER}) AS o ON o.cluster_id = t.cluster_id
        ORDER BY open_incidents DESC, below_baseline_rate DESC, cluster_id"""
    return (c.default_table("Clusters").height(12)
            .description("Every cluster with answers in the time range: volume, median faithfulness against the "
                         "lower edge of its baseline band (the latest one in range), below-baseline and "
                         "confident-but-wrong rates, open incidents. Click a cluster for its dashboard.")
            .data_links([c.cluster_link()])
            .with_target(table_query(sql)))


def families_table() -> table.Panel:
    sql = f"""
        SELECT if(l.family_id = '', '(no family)', l.family_label) AS family, l.family_id AS family_id,
               uniqExact(t.cluster_id) AS clusters, sum(t.n) AS volume,
               round(sum(t.below) / sum(t.n), 4) AS below_baseline_rate,
               round(sum(t.cw) / sum(t.n), 4) AS confident_wrong_rate,
               sum(o.open_incidents) AS open_incident_memberships
        FROM ({_CLUSTER_TOTALS}) AS t
        LEFT JOIN ({_LABELS}) AS l ON l.cluster_id = t.cluster_id
        LEFT JOIN ({_OPEN_BY_CLUSTER}) AS o ON o.cluster_id = t.cluster_id
        GROUP BY family, family_id
        ORDER BY below_baseline_rate DESC, family"""
    return (c.default_table("Intent families").height(8)
            .description("Families of clusters (one intent in several phrasings) over the time range.")
            .with_target(table_query(sql)))


def below_baseline_heatmap() -> heatmap.Panel:
    sql = f"""
        SELECT $__timeInterval(bucket) AS time, if(l.label = '', r.cluster_id, l.label) AS cluster,
               sum(r.below_baseline) / sum(r.interactions) AS below_baseline_rate
        FROM ({c.rollup_by_interval("cluster_id, bucket, interactions, below_baseline")}) AS r
        LEFT JOIN ({_LABELS}) AS l ON l.cluster_id = r.cluster_id
        GROUP BY time, cluster
        ORDER BY time, cluster"""
    return (heatmap.Panel().title("Below-baseline rate by cluster").datasource(c.ds()).height(10).span(24)
            .calculate(False).unit("percentunit")
            .color(heatmap.HeatmapColorOptions().mode(HeatmapColorMode.SCHEME).scheme("Oranges").steps(64))
            .with_target(series_query(sql)))


def family_rate_timeseries() -> timeseries.Panel:
    sql = f"""
        SELECT $__timeInterval(bucket) AS time, if(l.family_label = '', '(no family)', l.family_label) AS family,
               sum(r.below_baseline) / sum(r.interactions) AS below_baseline_rate
        FROM ({c.rollup_by_interval("cluster_id, bucket, interactions, below_baseline")}) AS r
        LEFT JOIN ({_LABELS}) AS l ON l.cluster_id = r.cluster_id
        GROUP BY time, family
        ORDER BY time, family"""
    return c.default_timeseries("Below-baseline rate by family", "percentunit").with_target(series_query(sql))


def deferral_rate_timeseries() -> timeseries.Panel:
    sql = f"""
        SELECT $__timeInterval(g.minute) AS time, if(l.label = '', g.cluster_id, l.label) AS intent,
               sumIf(g.calls, g.decision = 'defer') / sum(g.calls) AS deferral_rate
        FROM gate_decision_minutes AS g
        LEFT JOIN ({_LABELS}) AS l ON l.cluster_id = g.cluster_id
        WHERE $__timeFilter(g.minute)
        GROUP BY time, intent
        ORDER BY time, intent"""
    return (c.default_timeseries("Human-deferral rate by intent (confidence gate)", "percentunit")
            .description("Share of POST /v1/gate decisions deferred to a human, per cluster ('unassigned': a "
                         "query close to no cluster), from the gate's decision log (gate_decision_minutes, "
                         "processing time). Empty when no product calls the gate.")
            .with_target(series_query(sql)))


def volume_timeseries() -> timeseries.Panel:
    sql = f"""
        SELECT $__timeInterval(bucket) AS time, sum(interactions) AS answers,
               sum(below_baseline) AS below_baseline, sum(confident_wrong) AS confident_wrong
        FROM ({c.rollup_by_interval()})
        GROUP BY time ORDER BY time"""
    return c.default_timeseries("Answers, below baseline, confident but wrong").with_target(series_query(sql))


def open_incidents_table() -> table.Panel:
    sql = """
        SELECT incident_id, severity, category, cluster_label, length(member_clusters) AS clusters, onset_at,
               detected_at, affected_sessions, affected_customers, outreach_required, summary
        FROM incidents
        WHERE status = 'open' OR (resolved_at >= $__fromTime AND onset_at <= $__toTime)
        ORDER BY status = 'open' DESC, detected_at DESC
        LIMIT 100"""
    return (c.default_table("Incidents open or resolved in range").height(8)
            .data_links([c.incident_link()])
            .with_target(table_query(sql)))


def incident_annotation_sql() -> str:
    return """
        SELECT onset_at AS time, ifNull(resolved_at, toDateTime64($__toTime, 3)) AS timeEnd,
               concat(severity, ' · ', cluster_label, ': ', summary) AS text, [category, status] AS tags
        FROM incidents
        WHERE onset_at <= $__toTime AND (resolved_at IS NULL OR resolved_at >= $__fromTime)"""


def annotations() -> dict[str, ClickHouseQuery]:
    """Annotation name -> its query. Grafana keeps an annotation's query in ``target``, which
    :mod:`dashboards.generate` fills in (the SDK's AnnotationTarget is Prometheus-shaped)."""
    return {"Incidents": ClickHouseQuery(textwrap.dedent(incident_annotation_sql()).strip(), Format.TABLE, "Anno")}


def build() -> dashboard.Dashboard:
    return (c.base_dashboard("faithwatch · Overview", c.OVERVIEW_UID,
                             "Every intent family and cluster: answers, faithfulness against the baseline band, "
                             "below-baseline and confident-but-wrong rates, incidents.")
            .annotation(dashboard.AnnotationQuery().name("Incidents").datasource(c.ds()).enable(True)
                        .icon_color("red"))
            .with_panel(open_incidents_stat())
            .with_panel(sessions_affected_stat())
            .with_panel(outreach_pending_stat())
            .with_panel(volume_stat())
            .with_panel(clusters_table())
            .with_panel(below_baseline_heatmap())
            .with_panel(family_rate_timeseries())
            .with_panel(volume_timeseries())
            .with_panel(deferral_rate_timeseries())
            .with_panel(families_table())
            .with_panel(open_incidents_table()))
