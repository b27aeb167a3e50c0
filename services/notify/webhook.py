"""A generic webhook, signed per the Standard Webhooks specification.

The body is the incident event as JSON (the same object as a ``--alerts-out`` line). Headers:
``webhook-id`` (``INCIDENT_ID:SEQUENCE``: stable per event, the receiver's idempotency key, the
same on every retry), ``webhook-timestamp`` (this attempt's Unix time) and ``webhook-signature``
``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the ``whsec_`` secret's bytes
(signed by the ``standardwebhooks`` package; a receiver verifies with any Standard Webhooks
library). Every event is sent, a late update after resolution included (its ``status`` says
resolved).

>>> from datetime import UTC, datetime
>>> from services.notify.sample import sample_event
>>> from services.notify.notify_file import WebhookChannel
>>> hook = WebhookChannel(type="webhook", url="https://x", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
>>> req = request(sample_event(), hook, Links(), datetime(2026, 11, 2, tzinfo=UTC))
>>> req.headers["webhook-id"], req.headers["webhook-timestamp"], req.headers["webhook-signature"][:3]
('inc-1:0', '1793577600', 'v1,')
"""

from __future__ import annotations

from datetime import UTC, datetime

from standardwebhooks import Webhook

from pipelines.records import IncidentEvent
from services.notify.message import Links, Request
from services.notify.notify_file import WebhookChannel


def message_id(ev: IncidentEvent) -> str:
    return f"{ev.incident_id}:{ev.sequence}"


def signature(secret: str, msg_id: str, timestamp: datetime, body: bytes) -> str:
    """``v1,<base64 signature>`` of ``msg_id.timestamp.body`` under the ``whsec_`` secret."""
    return Webhook(secret).sign(msg_id=msg_id, timestamp=timestamp.astimezone(UTC), data=body.decode("utf-8"))


def request(ev: IncidentEvent, channel: WebhookChannel, links: Links, now: datetime) -> Request:
    """The signed POST of ``ev``; ``now`` is this attempt's time (``webhook-timestamp``)."""
    plain = Request.json(channel.url, ev.to_json_dict())
    msg_id = message_id(ev)
    headers = {**plain.headers, "webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature(channel.secret.get_secret_value(), msg_id, now, plain.body)}
    return Request(plain.url, plain.body, headers)
