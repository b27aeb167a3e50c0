"""Incident (uid ``faithwatch-incident``, variable ``incident``): timeline, blast radius,
shared documents, the suggested gate and its cost, outreach. Alerts link here
(``/d/faithwatch-incident/incident?var-incident=ID``)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard, stat, table, text

from dashboards import common as c
from dashboards.query import ClickHouseQuery, table_query

INCIDENT = "incident_id = '${incident}'"


def status_table() -> table.Panel:
    sql = f"""
        SELECT incident_id, status, severity, category, level, cluster_label, onset_at, detected_at, resolved_at,
               round(baseline_below_rate, 4) AS baseline_below_rate,
               round(observed_below_rate, 4) AS observed_below_rate,
               summary
        FROM incidents WHERE {INCIDENT}"""
    return c.default_table("Incident").height(5).with_target(table_query(sql))


def timeline_table() -> table.Panel:
    sql = f"""
        SELECT event_at, sequence, event, status, severity, below_baseline_count, affected_sessions,
               affected_customers, confident_wrong_count, clusters_added, summary
        FROM incident_events FINAL
        WHERE {INCIDENT}
        ORDER BY sequence"""
    return c.default_table("Timeline").height(8).with_target(table_query(sql))


def blast_radius_stat() -> stat.Panel:
    sql = f"""
        SELECT affected_sessions AS sessions, affected_customers AS customers,
               below_baseline_count AS failing_answers, confident_wrong_count AS confident_but_wrong,
               irreversible_actions
        FROM incidents WHERE {INCIDENT}"""
    return (c.default_stat("Blast radius").span(12)
            .data_links([c.link("Sessions (CSV, API token needed)",
                                "${api_url}/v1/incidents/${incident}/sessions?format=csv")])
            .with_target(table_query(sql)))


def sessions_csv_text() -> text.Panel:
    return c.markdown("Sessions", """
Every session in the blast radius, as CSV from the faithwatch API (send the API token as a Bearer token):

[`${api_url}/v1/incidents/${incident}/sessions?format=csv`](${api_url}/v1/incidents/${incident}/sessions?format=csv)

`faithwatch incidents sessions ${incident} --format csv` prints the same list.""")


def members_table() -> table.Panel:
    sql = f"""
        SELECT JSONExtractString(m, 'cluster_id') AS cluster_id, JSONExtractString(m, 'cluster_label') AS cluster,
               JSONExtractString(m, 'category') AS category, JSONExtractString(m, 'joined_by') AS joined_by,
               JSONExtractString(m, 'since') AS since, JSONExtractUInt(m, 'below_baseline_count') AS failing_answers,
               JSONExtractUInt(m, 'affected_sessions') AS sessions
        FROM incidents ARRAY JOIN JSONExtractArrayRaw(members) AS m
        WHERE {INCIDENT}"""
    return (c.default_table("Member clusters").span(12).height(8)
            .data_links([c.cluster_link()])
            .with_target(table_query(sql)))


def shared_documents_table() -> table.Panel:
    sql = f"""
        SELECT JSONExtractString(d, 'doc_id') AS doc_id, JSONExtractString(d, 'doc_version') AS doc_version,
               JSONExtractUInt(d, 'count') AS failing_answers, JSONExtractFloat(d, 'share') AS share,
               JSONExtractBool(d, 'stale') AS stale, JSONExtractString(d, 'indexed_at') AS indexed_at,
               JSONExtractString(d, 'doc_updated_at') AS doc_updated_at
        FROM incidents ARRAY JOIN JSONExtractArrayRaw(shared_documents) AS d
        WHERE {INCIDENT}
        ORDER BY failing_answers DESC"""
    return c.default_table("Shared documents").span(12).height(8).with_target(table_query(sql))


def gate_table() -> table.Panel:
    sql = f"""
        SELECT JSONExtractFloat(suggested_gate, 'threshold') AS gate,
               JSONExtractFloat(suggested_gate, 'current_gate') AS current_gate,
               JSONExtractUInt(suggested_gate, 'failing_held_back') AS failing_held_back,
               JSONExtractUInt(suggested_gate, 'failing_total') AS failing_total,
               JSONExtractUInt(suggested_gate, 'faithful_held_back') AS faithful_held_back,
               JSONExtractUInt(suggested_gate, 'faithful_total') AS faithful_total,
               JSONExtractFloat(suggested_gate, 'faithful_held_back_share') AS cost_faithful_share
        FROM incidents WHERE {INCIDENT} AND suggested_gate IS NOT NULL"""
    return (c.default_table("Suggested confidence gate and its cost").span(12).height(5)
            .description("The gate that would have held the failing answers back, and the share of the cluster's "
                         "faithful answers it would also hold back (its cost).")
            .with_target(table_query(sql)))


def outreach_table() -> table.Panel:
    sql = f"""
        SELECT i.outreach_required AS outreach_required, i.affected_customers AS customers,
               d.channel AS channel, d.event AS event, d.status AS delivery, d.attempts AS attempts,
               d.updated_at AS updated_at, d.error AS error
        FROM (SELECT incident_id, outreach_required, affected_customers FROM incidents WHERE {INCIDENT}) AS i
        LEFT JOIN (SELECT * FROM deliveries FINAL WHERE {INCIDENT}) AS d ON d.incident_id = i.incident_id
        ORDER BY d.sequence, d.channel"""
    return (c.default_table("Outreach and alert deliveries").span(12).height(5)
            .with_target(table_query(sql)))


def variable() -> dashboard.QueryVariable:
    return c.query_variable("incident", "Incident", """
        SELECT incident_id, concat(incident_id, ' · ', status, ' · ', cluster_label)
        FROM incidents ORDER BY detected_at DESC LIMIT 500""")


def api_variable() -> dashboard.TextBoxVariable:
    return dashboard.TextBoxVariable("api_url").label("faithwatch API").default_value("http://localhost:8000")


def annotations() -> dict[str, ClickHouseQuery]:
    return {}


def build() -> dashboard.Dashboard:
    return (c.base_dashboard("faithwatch · Incident", c.INCIDENT_UID,
                             "One incident: timeline, blast radius, shared documents, suggested gate, outreach.")
            .time("now-7d", "now")
            .with_variable(variable())
            .with_variable(api_variable())
            .with_panel(status_table())
            .with_panel(blast_radius_stat())
            .with_panel(sessions_csv_text())
            .with_panel(timeline_table())
            .with_panel(members_table())
            .with_panel(shared_documents_table())
            .with_panel(gate_table())
            .with_panel(outreach_table()))
