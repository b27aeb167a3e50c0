"""``faithwatch dashboards sync``: the folder, the ClickHouse data source and the dashboards,
put into a running Grafana through its HTTP API (grafana-client, a service-account token).

Idempotent: the folder and the data source are created when missing and updated otherwise (by
their fixed uids), and every dashboard is saved with ``overwrite`` into the folder, so running it
again leaves one folder, one data source and three dashboards, at their new versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards.common import FOLDER_TITLE, FOLDER_UID
from dashboards.query import DATASOURCE_UID, PLUGIN_ID
from pipelines.errors import ConfigError, FaithwatchError

DATASOURCE_NAME = "faithwatch ClickHouse"


class SyncError(FaithwatchError):
    """Grafana refused a request (the message says which and why)."""


@dataclass(frozen=True)
class ClickHouseTarget:
    """Where Grafana reads the store: a ClickHouse server, or ``/clickhouse`` on ``faithwatch serve``."""

    url: str  # http(s)://host:port[/path]
    user: str
    password: str
    database: str

    def datasource(self) -> dict:
        """The data source as Grafana's ``POST /api/datasources`` takes it."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"the ClickHouse URL for Grafana must be http(s)://host:port, got {self.url!r}")
        secure = parts.scheme == "https"
        json_data = {"host": parts.hostname, "port": parts.port or (8443 if secure else 8123), "protocol": "http",
                     "secure": secure, "username": self.user, "defaultDatabase": self.database}
        if parts.path.strip("/"):
            json_data["path"] = parts.path
        return {"name": DATASOURCE_NAME, "uid": DATASOURCE_UID, "type": PLUGIN_ID, "access": "proxy",
                "isDefault": True, "jsonData": json_data, "secureJsonData": {"password": self.password}}


def _missing(error: GrafanaException) -> bool:
    return isinstance(error, GrafanaClientError) and error.status_code == 404


def sync(grafana: GrafanaApi, dashboards: Mapping[str, dict], target: ClickHouseTarget) -> list[str]:
    """Puts everything into ``grafana``; returns what it did, one line per object."""
    done = []
    try:
        try:
            grafana.folder.get_folder(FOLDER_UID)
        except GrafanaException as error:
            if not _missing(error):
                raise
            grafana.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            done.append(f"folder {FOLDER_UID}: created")
        else:
            grafana.folder.update_folder(FOLDER_UID, title=FOLDER_TITLE, overwrite=True)
            done.append(f"folder {FOLDER_UID}: updated")
        source = target.datasource()
        try:
            grafana.datasource.get_datasource_by_uid(DATASOURCE_UID)
        except GrafanaException as error:
            if not _missing(error):
                raise
            grafana.datasource.create_datasource(source)
            done.append(f"data source {DATASOURCE_UID}: created")
        else:
            grafana.datasource.update_datasource_by_uid(DATASOURCE_UID, source)
            done.append(f"data source {DATASOURCE_UID}: updated")
        for name, model in sorted(dashboards.items()):
            saved = grafana.dashboard.update_dashboard({
                "dashboard": {**model, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                "message": "faithwatch dashboards sync"})
            done.append(f"dashboard {model['uid']} ({name}): version {saved.get('version')}, {saved.get('url')}")
    except GrafanaException as error:
        raise SyncError(f"Grafana refused a request: {error.status_code} {error}") from error
    except OSError as error:
        raise SyncError(f"cannot reach Grafana: {error}") from error
    return done


def connect(url: str, token: str | None) -> GrafanaApi:
    if not token:
        raise ConfigError("a Grafana service-account token is needed (--grafana-token or GRAFANA_TOKEN)")
    return GrafanaApi.from_url(url, credential=token, timeout=30)
