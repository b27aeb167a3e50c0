"""Alert channels: each incident event delivered once to PagerDuty, Slack, Alertmanager or a
signed webhook (docs/alerts.md).

- :mod:`services.notify.notify_file`: the ``--notify-file`` (channels and routes), read once.
- :mod:`services.notify.pagerduty`, :mod:`~services.notify.slack`,
  :mod:`~services.notify.alertmanager`, :mod:`~services.notify.webhook`: one channel each, a pure
  function from an :class:`~pipelines.records.IncidentEvent` to the HTTP request that channel
  takes (or None when the event must not reach it).
- :mod:`services.notify.transport`: one attempt over HTTP, its outcome (sent, retry, failed).
- :mod:`services.notify.outbox`: the deliveries table of the store, one row per (incident event,
  channel), and the backoff between attempts.
- :mod:`services.notify.notifier`: queues events into the outbox and delivers them on worker
  threads (one per channel), so a dead channel never slows the pipeline nor another channel.
"""
