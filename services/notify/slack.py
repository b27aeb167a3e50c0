"""Slack incoming webhooks, Block Kit: one message per incident event.

The message: a header (severity, what happened, the cluster or family), the summary, the facts
as fields (category, since, sessions and customers, cause, confident-but-wrong, gate, outreach,
clusters), up to three example answers, and the links. Text is cut to Slack's Block Kit limits:
a header's text at most 150 characters, a section's text 3,000, a field's 2,000 and at most 10
fields a section, at most 50 blocks a message. An update after resolution (late evidence) is an
informational message; it says the incident stays resolved.

>>> from services.notify.sample import sample_event
>>> from services.notify.notify_file import SlackChannel
>>> import json
>>> msg = json.loads(request(sample_event(), SlackChannel(type="slack", webhook_url="https://h"), Links()).body)
>>> msg["blocks"][0]["type"], msg["blocks"][0]["text"]["text"][:28]
('header', '[CRITICAL] OPENED: c001 "fee')
"""

from __future__ import annotations

from datetime import datetime

from pipelines.records import IncidentEvent
from services.notify.message import Links, Request, cause, gate, headline, kind, label, truncate
from services.notify.notify_file import SlackChannel

HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
FIELDS_PER_SECTION = 10
BLOCKS_LIMIT = 50
EXAMPLES = 3
_VERB = {"opened": "OPENED", "grew": "GREW", "late": "LATE EVIDENCE", "resolved": "RESOLVED"}


def escape(text: str) -> str:
    """Slack mrkdwn control characters as entities (``&``, ``<``, ``>``)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate(text, SECTION_LIMIT)}}


def _fields(pairs: list[tuple[str, str]]) -> list[dict]:
    """Sections of at most 10 fields, each ``*name*\\nvalue`` cut to 2,000 characters."""
    fields = [{"type": "mrkdwn", "text": truncate(f"*{name}*\n{escape(value)}", FIELD_LIMIT)} for name, value in pairs]
    return [{"type": "section", "fields": fields[k:k + FIELDS_PER_SECTION]}
            for k in range(0, len(fields), FIELDS_PER_SECTION)]


def blocks(ev: IncidentEvent, links: Links) -> list[dict]:
    what = kind(ev)
    header = f"[{ev.severity.upper()}] {_VERB[what]}: {label(ev)}"
    out: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": truncate(header, HEADER_LIMIT),
                                                   "emoji": False}}]
    if what == "late":
        out.append(_section("Late evidence from the incident's window: the blast radius grew after it resolved. "
                            "The incident stays resolved; nobody is paged."))
    elif what == "resolved":
        out.append(_section(f"Resolved at {ev.resolved_at or ev.event_at:%Y-%m-%d %H:%M} UTC: the clusters are back "
                            "to baseline."))
    out.append(_section(escape(ev.summary)))
    pairs = [("Category", ev.category),
             ("Since", f"{ev.onset_at:%Y-%m-%d %H:%M} UTC (detected {ev.detected_at:%Y-%m-%d %H:%M})"),
             ("Sessions / customers", f"{ev.affected_sessions} sessions, {ev.affected_customers} customers "
                                      f"({ev.below_baseline_count} failing answers)"),
             ("Cause", cause(ev) or "no shared document"),
             ("Confident but wrong", f"{ev.confident_wrong_count} answers at or above the gate"),
             ("Gate", gate(ev) or "no suggestion"),
             ("Outreach", "REQUIRED" if ev.outreach_required else "not required")]
    if len(ev.clusters) > 1:
        pairs.append(("Clusters", ", ".join(f'{m.cluster_id} "{m.cluster_label}"' for m in ev.members)
                      or ", ".join(ev.clusters)))
    out += _fields(pairs)
    if what in ("opened", "grew"):
        for x in ev.examples[:EXAMPLES]:
            out.append(_section(f"*Example* (session {escape(x.session_id or '-')}, faithfulness "
                                f"{_number(x.faithfulness)}, confidence {_number(x.confidence)})\n"
                                f">Q: {escape(x.query)}\n>A: {escape(x.response or '')}"))
    found = links.of(ev)
    if found:
        out.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": truncate(" | ".join(f"<{href}|{escape(text)}>" for text, href in found),
                                                SECTION_LIMIT)}]})
    return out[:BLOCKS_LIMIT]


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def request(ev: IncidentEvent, channel: SlackChannel, links: Links, now: datetime | None = None) -> Request:
    """The incoming-webhook POST for ``ev`` (``text`` is the notification's fallback line)."""
    return Request.json(channel.webhook_url.get_secret_value(),
                        {"text": truncate(headline(ev), SECTION_LIMIT), "blocks": blocks(ev, links)})
