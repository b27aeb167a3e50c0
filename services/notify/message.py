"""What every channel says about an incident event, and the HTTP request a channel renders.

The channels differ in shape (a PagerDuty event, Slack blocks, Alertmanager labels), not in
content: the headline, the event's kind, its links and its details come from here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from pipelines.incident import doc_name
from pipelines.records import IncidentEvent
from services import report

# opened; grew (an update while open: the blast radius grew or clusters joined, or it re-opened);
# late (an update after resolution: late evidence from the incident's window, never a page);
# resolved.
Kind = Literal["opened", "grew", "late", "resolved"]


def kind(ev: IncidentEvent) -> Kind:
    """What the event means for on-call (see :data:`Kind`)."""
    if ev.event == "updated":
        return "late" if ev.status == "resolved" else "grew"
    return ev.event


@dataclass(frozen=True)
class Links:
    """Where on-call reads more: the Grafana incident dashboard and the API's incident URL (each only
    when its base URL is set: ``notify.grafana_url``, ``notify.api_url``)."""

    grafana_url: str | None = None
    api_url: str | None = None

    def of(self, ev: IncidentEvent) -> list[tuple[str, str]]:
        """``(text, href)`` pairs for ``ev``.

        >>> Links("https://g.example/", "https://api.example").of(_sample())[1]
        ('faithwatch API: incident inc-1', 'https://api.example/v1/incidents/inc-1')
        """
        out = []
        incident = quote(ev.incident_id, safe="")
        if self.grafana_url:
            out.append((f"Grafana: incident {ev.incident_id}",
                        f"{self.grafana_url.rstrip('/')}/d/faithwatch-incident/incident?var-incident={incident}"))
        if self.api_url:
            out.append((f"faithwatch API: incident {ev.incident_id}",
                        f"{self.api_url.rstrip('/')}/v1/incidents/{incident}"))
        return out


@dataclass(frozen=True)
class Request:
    """One HTTP POST a channel sends: the exact body bytes (signatures cover them) and headers."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, url: str, payload: Any, headers: dict[str, str] | None = None) -> Request:
        body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return cls(url, body, {"Content-Type": "application/json", **(headers or {})})


def label(ev: IncidentEvent) -> str:
    """The cluster (or family) the incident is about: its first cluster's label, and how many more."""
    more = len(ev.clusters) - 1 if ev.clusters else 0
    text = f'{ev.cluster_id} "{ev.cluster_label}"'
    if more > 0:
        text += f" +{more} cluster{'s' if more > 1 else ''}"
    if ev.level == "family" and ev.family_ids:
        text += f" (family {', '.join(ev.family_ids)})"
    elif ev.level == "document" and ev.cause is not None:
        text += f" (readers of {doc_name(ev.cause)})"
    return text


_VERBS = {"opened": "OPENED", "grew": "GREW", "late": "LATE EVIDENCE (resolved)", "resolved": "RESOLVED"}


def headline(ev: IncidentEvent) -> str:
    """One line: severity, what happened, where, how big.

    >>> for part in headline(_sample()).split(" - "):
    ...     print(part)
    [CRITICAL] OPENED pricing: c001 "fees / fee"
    23 failing answers, 2 sessions, 1 customers since 2026-11-02 10:00 UTC
    """
    return (f"[{ev.severity.upper()}] {_VERBS[kind(ev)]} {ev.category}: {label(ev)} - "
            f"{ev.below_baseline_count} failing answers, {ev.affected_sessions} sessions, "
            f"{ev.affected_customers} customers since {ev.onset_at:%Y-%m-%d %H:%M} UTC")


def cause(ev: IncidentEvent) -> str | None:
    """The shared cause in one line (the cause document first), or None."""
    lines = report.document_lines(ev.to_json_dict())
    return "; ".join(text for _, text in lines) or None


def gate(ev: IncidentEvent) -> str | None:
    return report.gate_text(ev.suggested_gate.model_dump()) if ev.suggested_gate else None


def details(ev: IncidentEvent, links: Links) -> dict[str, Any]:
    """Everything on-call needs, as JSON-safe data (PagerDuty's custom_details, and the webhook's
    and Alertmanager's description are built from the same facts)."""
    data = ev.to_json_dict()
    return {
        "incident_id": ev.incident_id, "event": ev.event, "status": ev.status, "sequence": ev.sequence,
        "category": ev.category, "severity": ev.severity, "level": ev.level,
        "clusters": [{"cluster_id": m["cluster_id"], "label": m["cluster_label"], "family_id": m["family_id"],
                      "joined_by": m["joined_by"], "since": m["since"], "failing_answers": m["below_baseline_count"],
                      "sessions": m["affected_sessions"]} for m in data["members"]]
        or [{"cluster_id": ev.cluster_id, "label": ev.cluster_label}],
        "family_ids": list(ev.family_ids),
        "since": data["onset_at"], "detected_at": data["detected_at"], "resolved_at": data["resolved_at"],
        "blast_radius": {"failing_answers": ev.below_baseline_count, "sessions": ev.affected_sessions,
                         "customers": ev.affected_customers},
        "cause": cause(ev), "cause_documents": data["shared_documents"], "stale_contexts": ev.stale_contexts,
        "confident_but_wrong": ev.confident_wrong_count,
        "suggested_gate": gate(ev), "outreach_required": ev.outreach_required,
        "irreversible_actions": ev.irreversible_actions,
        "baseline_below_rate": ev.baseline_below_rate, "observed_below_rate": ev.observed_below_rate,
        "summary": ev.summary,
        "links": [{"text": text, "href": href} for text, href in links.of(ev)],
    }


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut.

    >>> truncate("abcdef", 4), truncate("abc", 4)
    ('abc…', 'abc')
    """
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _sample() -> IncidentEvent:  # for the doctests
    from services.notify.sample import sample_event

    return sample_event()
