"""Prometheus Alertmanager, API v2: ``POST /api/v2/alerts`` with one alert per incident.

Labels identify the alert (Alertmanager groups and deduplicates by them): ``alertname``
``FaithwatchIncident``, ``incident_id``, ``cluster`` (the first member), ``category``,
``severity``. Annotations carry the text: ``summary`` (the headline), ``description`` (the
facts), ``links``. ``startsAt`` is the incident's onset; a resolved incident is sent with
``endsAt`` = its resolution, which ends the alert. A firing alert without ``endsAt`` expires
after Alertmanager's ``resolve_timeout`` unless it is sent again (re-sending while open is left
to the long-running drivers). An update after resolution sends nothing: the alert stays ended.

>>> from services.notify.sample import sample_event
>>> from services.notify.notify_file import AlertmanagerChannel
>>> import json
>>> [alert] = json.loads(request(sample_event(), AlertmanagerChannel(type="alertmanager", url="http://am:9093"),
...                              Links()).body)
>>> alert["labels"]["alertname"], alert["startsAt"], "endsAt" in alert
('FaithwatchIncident', '2026-11-02T10:00:00+00:00', False)
"""

from __future__ import annotations

from datetime import datetime

from pipelines.records import IncidentEvent
from services.notify.message import Links, Request, cause, gate, headline, kind
from services.notify.notify_file import AlertmanagerChannel

ALERTNAME = "FaithwatchIncident"


def description(ev: IncidentEvent) -> str:
    lines = [ev.summary,
             f"since {ev.onset_at:%Y-%m-%d %H:%M} UTC; {ev.below_baseline_count} failing answers, "
             f"{ev.affected_sessions} sessions, {ev.affected_customers} customers",
             f"clusters: {', '.join(ev.clusters or (ev.cluster_id,))}",
             f"cause: {cause(ev) or 'no shared document'}",
             f"confident but wrong: {ev.confident_wrong_count}",
             f"gate: {gate(ev) or 'no suggestion'}",
             f"outreach: {'REQUIRED' if ev.outreach_required else 'not required'}"]
    return "\n".join(lines)


def alert(ev: IncidentEvent, links: Links) -> dict:
    found = links.of(ev)
    out: dict = {
        "labels": {"alertname": ALERTNAME, "incident_id": ev.incident_id, "cluster": ev.cluster_id,
                   "category": ev.category, "severity": ev.severity},
        "annotations": {"summary": headline(ev), "description": description(ev),
                        "links": " ".join(href for _, href in found)},
        "startsAt": ev.onset_at.isoformat(),
    }
    if kind(ev) == "resolved":
        out["endsAt"] = (ev.resolved_at or ev.event_at).isoformat()
    if found:
        out["generatorURL"] = found[0][1]
    return out


def request(ev: IncidentEvent, channel: AlertmanagerChannel, links: Links,
            now: datetime | None = None) -> Request | None:
    if kind(ev) == "late":
        return None
    return Request.json(f"{channel.url.rstrip('/')}/api/v2/alerts", [alert(ev, links)])
