"""The notify file (``--notify-file F`` / ``FAITHWATCH_NOTIFY_FILE``): alert channels and routes.

Its shape is a contract (docs/alerts.md)::

    channels:
      pager: {type: pagerduty, routing_key: "${PD_ROUTING_KEY}"}   # url optional
      team:  {type: slack, webhook_url: "${SLACK_WEBHOOK_URL}"}
      hook:  {type: webhook, url: https://example.com/faithwatch, secret: "${WEBHOOK_SECRET}"}
      am:    {type: alertmanager, url: http://alertmanager:9093}
    routes:                  # first match wins; a route without match takes every incident
      - match: {category: pricing, severity: critical}
        channels: [pager, team]
      - channels: [team]

``${VAR}`` in any string is read from the environment when the file is loaded; secrets
(routing keys, Slack webhook URLs, signing secrets) are ``SecretStr`` and print masked. Anything
unusable (unknown channel or type, a missing key, an unset variable) is one
:class:`~pipelines.errors.ConfigError` line naming the file and the key.

>>> import os
>>> nf = NotifyFile.model_validate({"channels": {"am": {"type": "alertmanager", "url": "http://am:9093"}},
...                                 "routes": [{"channels": ["am"]}]})
>>> nf.route({"category": "pricing", "severity": "critical", "clusters": ["c001"], "family_ids": []})
['am']
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from pipelines.errors import ConfigError

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
PagerDutySeverity = Literal["critical", "error", "warning", "info"]
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PagerDutyChannel(_Strict):
    """PagerDuty Events API v2: trigger on open and growth, resolve on resolution."""

    type: Literal["pagerduty"]
    routing_key: SecretStr = Field(description="the Events API v2 integration key of the service")
    url: str = Field(PAGERDUTY_EVENTS_URL, description="the events endpoint (a proxy, or PagerDuty's EU endpoint)")
    source: str = Field("faithwatch", description="payload.source: where the problem is")
    severities: dict[Literal["info", "warning", "critical"], PagerDutySeverity] = Field(
        default_factory=lambda: {"info": "info", "warning": "warning", "critical": "critical"},
        description="incident severity -> PagerDuty severity (e.g. {warning: error})")

    @field_validator("severities")
    @classmethod
    def _complete(cls, value: dict) -> dict:
        return {"info": "info", "warning": "warning", "critical": "critical", **value}


class SlackChannel(_Strict):
    """A Slack incoming webhook, Block Kit messages."""

    type: Literal["slack"]
    webhook_url: SecretStr = Field(description="https://hooks.slack.com/services/... (a secret: it is the credential)")


class WebhookChannel(_Strict):
    """Any HTTP endpoint: the incident event JSON, signed per the Standard Webhooks spec."""

    type: Literal["webhook"]
    url: str
    secret: SecretStr = Field(description="whsec_ followed by base64 (24 to 64 random bytes)")

    @field_validator("secret")
    @classmethod
    def _signing_secret(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value()
        if not text.startswith("whsec_"):
            raise ValueError("a Standard Webhooks secret starts with whsec_ (then base64)")
        body = text.removeprefix("whsec_")
        try:
            key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        except binascii.Error:
            raise ValueError("not base64 after whsec_") from None
        if not key:
            raise ValueError("empty after whsec_")
        return value


class AlertmanagerChannel(_Strict):
    """Prometheus Alertmanager's v2 API: POST /api/v2/alerts."""

    type: Literal["alertmanager"]
    url: str = Field(description="the Alertmanager base URL, e.g. http://alertmanager:9093")


Channel = Annotated[PagerDutyChannel | SlackChannel | WebhookChannel | AlertmanagerChannel,
                    Field(discriminator="type")]
CHANNEL_TYPES: dict[str, type[BaseModel]] = {
    "pagerduty": PagerDutyChannel, "slack": SlackChannel, "webhook": WebhookChannel,
    "alertmanager": AlertmanagerChannel}

MatchValue = Annotated[str | list[str], Field()]


class RouteMatch(_Strict):
    """Every key given must match (a list: any of its values). ``cluster`` and ``family`` match any
    member cluster or family of the incident."""

    category: MatchValue | None = None
    severity: MatchValue | None = None
    cluster: MatchValue | None = None
    family: MatchValue | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        def wanted(value: MatchValue) -> set[str]:
            return {value} if isinstance(value, str) else set(value)

        checks = [(self.category, {event["category"]}), (self.severity, {event["severity"]}),
                  (self.cluster, set(event.get("clusters") or ()) | {event.get("cluster_id")}),
                  (self.family, set(event.get("family_ids") or ()))]
        return all(value is None or wanted(value) & have for value, have in checks)


class Route(_Strict):
    match: RouteMatch | None = None
    channels: list[str] = Field(min_length=1)


class NotifyFile(_Strict):
    channels: dict[str, Channel] = Field(min_length=1)
    routes: list[Route] = Field(min_length=1)

    @model_validator(mode="after")
    def _known_channels(self) -> NotifyFile:
        for k, route in enumerate(self.routes):
            for name in route.channels:
                if name not in self.channels:
                    raise ValueError(f"routes.{k}.channels: unknown channel {name!r} "
                                     f"(channels: {', '.join(self.channels)})")
        return self

    def route(self, event: Mapping[str, Any]) -> list[str]:
        """The channels of the first route that matches ``event`` (an incident event as JSON);
        none when no route does."""
        for route in self.routes:
            if route.match is None or route.match.matches(event):
                return list(route.channels)
        return []

    def masked(self) -> dict:
        """The file as loaded, secrets masked (for ``config show``)."""
        return self.model_dump(mode="json")


def expand(value: Any, environ: Mapping[str, str], where: str = "") -> Any:
    """``value`` (parsed YAML) with every ``${VAR}`` in its strings replaced from ``environ``.

    >>> expand({"a": ["x-${K}"]}, {"K": "1"})
    {'a': ['x-1']}
    """
    if isinstance(value, str):
        def one(match: re.Match) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{where or 'value'}: environment variable {name} is not set")
            return environ[name]

        return _VARIABLE.sub(one, value)
    if isinstance(value, dict):
        return {key: expand(item, environ, f"{where}.{key}" if where else str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, environ, f"{where}.{k}") for k, item in enumerate(value)]
    return value


def parse_notify_file(data: Any, environ: Mapping[str, str], source: str = "notify file") -> NotifyFile:
    """Validate parsed YAML; every problem is one ConfigError line prefixed with ``source``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with channels and routes")
    try:
        data = expand(data, environ)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    channels = data.get("channels")
    if isinstance(channels, dict):
        for name, raw in channels.items():
            kind = raw.get("type") if isinstance(raw, dict) else None
            if kind not in CHANNEL_TYPES:
                raise ConfigError(f"{source}: channels.{name}.type: unknown channel type {kind!r} "
                                  f"(use {', '.join(CHANNEL_TYPES)})")
    try:
        return NotifyFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        # The union's tag (channels.NAME.TYPE.key) says nothing the file does not: drop it.
        loc = [str(p) for p in err["loc"] if not (len(err["loc"]) > 2 and err["loc"][0] == "channels"
                                                   and p in CHANNEL_TYPES)]
        message = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{source}: {'.'.join(loc) + ': ' if loc else ''}{message}") from None


def load_notify_file(path: Path, environ: Mapping[str, str] | None = None) -> NotifyFile:
    """Read and validate the notify file at ``path`` (``${VAR}`` from ``environ``, default the process's)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"notify file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"notify file {path}: not YAML: {' '.join(str(exc).split())}") from None
    return parse_notify_file(data, os.environ if environ is None else environ, f"notify file {path}")
