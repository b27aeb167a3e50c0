"""PagerDuty Events API v2: one PagerDuty alert per incident, keyed by its id.

``opened`` and growth (an ``updated`` event while open, a re-opening included) are a ``trigger``
with ``dedup_key`` = the incident id, so growth updates the alert PagerDuty already has instead of
paging again; ``resolved`` is a ``resolve``. An update that arrives after resolution (late evidence
from the incident's window) sends nothing: it must not page. Limits from the Events API v2
reference: ``payload.summary`` at most 1,024 characters, ``dedup_key`` at most 255, severity one
of critical, error, warning, info; PagerDuty answers 202, and asks to retry 429 and 5xx.

>>> from services.notify.sample import sample_event
>>> from services.notify.notify_file import PagerDutyChannel
>>> pd = PagerDutyChannel(type="pagerduty", routing_key="R0UT1NG")
>>> import json
>>> body = json.loads(request(sample_event(), pd, Links()).body)
>>> body["event_action"], body["dedup_key"], body["payload"]["severity"]
('trigger', 'inc-1', 'critical')
>>> request(sample_event(event="updated", sequence=3, status="resolved"), pd, Links()) is None
True
"""

from __future__ import annotations

from datetime import datetime

from pipelines.records import IncidentEvent
from services.notify.message import Links, Request, details, headline, kind, truncate
from services.notify.notify_file import PagerDutyChannel

SUMMARY_LIMIT = 1024
DEDUP_KEY_LIMIT = 255


def request(ev: IncidentEvent, channel: PagerDutyChannel, links: Links, now: datetime | None = None) -> Request | None:
    """The Events API v2 request for ``ev``, or None when it must not reach PagerDuty."""
    what = kind(ev)
    if what == "late":
        return None
    if len(ev.incident_id) > DEDUP_KEY_LIMIT:
        raise ValueError(f"incident id longer than PagerDuty's {DEDUP_KEY_LIMIT}-character dedup_key")
    body: dict = {"routing_key": channel.routing_key.get_secret_value(), "dedup_key": ev.incident_id,
                  "event_action": "resolve" if what == "resolved" else "trigger"}
    if what != "resolved":
        body["payload"] = {
            "summary": truncate(headline(ev), SUMMARY_LIMIT),
            "source": channel.source,
            "severity": channel.severities[ev.severity],
            "timestamp": ev.event_at.isoformat(),
            "component": ev.cluster_id,
            "group": ev.category,
            "class": "faithfulness incident",
            "custom_details": details(ev, links),
        }
        body["client"] = "faithwatch"
        found = links.of(ev)
        if found:
            body["client_url"] = found[0][1]
            body["links"] = [{"href": href, "text": text} for text, href in found]
    return Request.json(channel.url, body)
