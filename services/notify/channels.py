"""Which module renders which channel type: the one place that maps a notify-file channel to its
request builder."""

from __future__ import annotations

from datetime import datetime

from pipelines.records import IncidentEvent
from services.notify import alertmanager, pagerduty, slack, webhook
from services.notify.message import Links, Request
from services.notify.notify_file import Channel

_RENDER = {"pagerduty": pagerduty.request, "slack": slack.request, "webhook": webhook.request,
           "alertmanager": alertmanager.request}


def render(ev: IncidentEvent, channel: Channel, links: Links, now: datetime) -> Request | None:
    """The request ``channel`` takes for ``ev`` at ``now``, or None when the event must not reach it."""
    return _RENDER[channel.type](ev, channel, links, now)
