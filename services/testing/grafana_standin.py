"""A stand-in for Grafana's HTTP API on 127.0.0.1: the folder, data source and dashboard endpoints
that ``faithwatch dashboards sync`` uses, each checked against Grafana's documented API (method,
path, required and allowed body fields, their types) and answering as Grafana does, with the
objects kept so a test reads what was saved. No Grafana server can be installed on the
development machine; this is what the sync is tested against.

>>> import httpx
>>> with GrafanaStandin(token="t") as grafana:
...     ok = httpx.post(grafana.url + "/api/folders", json={"uid": "f", "title": "F"},
...                     headers={"Authorization": "Bearer t"})
...     bad = httpx.post(grafana.url + "/api/datasources", json={"name": "x"}, headers={"Authorization": "Bearer t"})
...     ok.status_code, bad.status_code, grafana.rejected[0].reason
(200, 400, 'POST /api/datasources: missing field(s) access, type')

Documented at grafana.com/docs/grafana/latest/developers/http_api/ (folder, data_source,
dashboard). Every request needs ``Authorization: Bearer <token>`` (a service-account token).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
# Body fields per endpoint: (required, allowed) with their JSON types.
_FOLDER_CREATE = ({"title": str}, {"uid": str, "parentUid": str, "description": str})
_FOLDER_UPDATE = ({"title": str}, {"version": int, "overwrite": bool, "description": str, "uid": str})
_DATASOURCE = ({"name": str, "type": str, "access": str},
               {"uid": str, "url": str, "user": str, "database": str, "basicAuth": bool, "basicAuthUser": str,
                "withCredentials": bool, "isDefault": bool, "jsonData": dict, "secureJsonData": dict,
                "version": int, "readOnly": bool})
_DASHBOARD_SAVE = ({"dashboard": dict}, {"folderId": int, "folderUid": str, "message": str, "overwrite": bool})


@dataclass(frozen=True)
class Rejected:
    method: str
    path: str
    status: int
    reason: str


@dataclass
class GrafanaStandin:
    """``with GrafanaStandin(token=...) as grafana``: ``grafana.url``; what was saved in
    ``folders``, ``datasources``, ``dashboards`` (by uid); every request in ``requests``
    (method, path), every refusal in ``rejected``."""

    token: str
    folders: dict[str, dict] = field(default_factory=dict)
    datasources: dict[str, dict] = field(default_factory=dict)
    dashboards: dict[str, dict] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def __enter__(self) -> GrafanaStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                standin._handle(self, "GET", None)

            def do_POST(self) -> None:  # noqa: N802
                standin._handle(self, "POST", self._body())

            def do_PUT(self) -> None:  # noqa: N802
                standin._handle(self, "PUT", self._body())

            def do_DELETE(self) -> None:  # noqa: N802
                standin._handle(self, "DELETE", self._body())

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # ---- the API ---------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str, raw: bytes | None) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            self.requests.append((method, path))
            try:
                if handler.headers.get("Authorization") != f"Bearer {self.token}":
                    raise _Refusal(401, "Unauthorized", "missing or wrong bearer token")
                body = self._json(method, path, handler, raw)
                status, answer = self._route(method, path, body)
            except _Refusal as refusal:
                self.rejected.append(Rejected(method, path, refusal.status, refusal.reason))
                status, answer = refusal.status, {"message": refusal.message}
        data = json.dumps(answer).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _json(method: str, path: str, handler: BaseHTTPRequestHandler, raw: bytes | None) -> Any:
        if method not in ("POST", "PUT"):
            return None
        if not handler.headers.get("Content-Type", "").startswith("application/json"):
            raise _Refusal(415, "Unsupported Media Type", f"{method} {path}: Content-Type must be application/json")
        try:
            return json.loads(raw or b"")
        except ValueError as error:
            raise _Refusal(400, "bad request data", f"{method} {path}: body is not JSON ({error})") from None

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "GET" and path == "/api/health":
            return 200, {"database": "ok", "version": "11.6.0"}
        if match := re.fullmatch(r"/api/folders/([^/]+)", path):
            uid = match.group(1)
            if method == "GET":
                return self._get(self.folders, uid, "folder not found")
            if method == "PUT":
                _check(method, path, body, _FOLDER_UPDATE)
                if uid not in self.folders:
                    raise _Refusal(404, "folder not found", f"PUT {path}: no such folder")
                folder = self.folders[uid]
                if not body.get("overwrite") and body.get("version") != folder["version"]:
                    raise _Refusal(412, "the folder has been changed by someone else",
                                   f"PUT {path}: needs the current version or overwrite")
                folder.update(title=body["title"], version=folder["version"] + 1)
                return 200, folder
        if path == "/api/folders" and method == "POST":
            _check(method, path, body, _FOLDER_CREATE)
            uid = body.get("uid") or f"f{len(self.folders) + 1}"
            _uid(method, path, uid)
            if uid in self.folders or any(f["title"] == body["title"] for f in self.folders.values()):
                raise _Refusal(409, "a folder with the same name or uid already exists", f"POST {path}: exists")
            self.folders[uid] = {"id": len(self.folders) + 1, "uid": uid, "title": body["title"], "version": 1,
                                 "url": f"/dashboards/f/{uid}/"}
            return 200, self.folders[uid]
        if match := re.fullmatch(r"/api/datasources/uid/([^/]+)", path):
            uid = match.group(1)
            if method == "GET":
                return self._get(self.datasources, uid, "Data source not found")
            if method == "PUT":
                _check(method, path, body, _DATASOURCE)
                if uid not in self.datasources:
                    raise _Refusal(404, "Data source not found", f"PUT {path}: no such data source")
                _access(method, path, body)
                saved = {**self.datasources[uid], **body, "uid": uid,
                         "version": self.datasources[uid]["version"] + 1}
                self.datasources[uid] = saved
                return 200, {"datasource": _public(saved), "id": saved["id"], "message": "Datasource updated",
                             "name": saved["name"]}
        if path == "/api/datasources" and method == "POST":
            _check(method, path, body, _DATASOURCE)
            _access(method, path, body)
            uid = body.get("uid") or f"ds{len(self.datasources) + 1}"
            _uid(method, path, uid)
            if uid in self.datasources or any(d["name"] == body["name"] for d in self.datasources.values()):
                raise _Refusal(409, "data source with the same name already exists", f"POST {path}: exists")
            saved = {**body, "uid": uid, "id": len(self.datasources) + 1, "version": 1}
            self.datasources[uid] = saved
            return 200, {"datasource": _public(saved), "id": saved["id"], "message": "Datasource added",
                         "name": saved["name"]}
        if path == "/api/dashboards/db" and method == "POST":
            return 200, self._save_dashboard(method, path, body)
        raise _Refusal(404, "Not found", f"{method} {path}: not an endpoint of this API")

    def _save_dashboard(self, method: str, path: str, body: dict) -> dict:
        _check(method, path, body, _DASHBOARD_SAVE)
        model = body["dashboard"]
        if not isinstance(model.get("title"), str) or not model["title"].strip():
            raise _Refusal(400, "Dashboard title cannot be empty", f"{method} {path}: dashboard.title missing")
        uid = model.get("uid")
        if uid is not None:
            _uid(method, path, uid)
        folder = body.get("folderUid")
        if folder and folder not in self.folders:
            raise _Refusal(400, "folder not found", f"{method} {path}: folderUid {folder} does not exist")
        if not isinstance(model.get("panels", []), list):
            raise _Refusal(400, "bad request data", f"{method} {path}: dashboard.panels must be a list")
        existing = self.dashboards.get(uid)
        if existing and not body.get("overwrite") and model.get("version") != existing["dashboard"]["version"]:
            raise _Refusal(412, "The dashboard has been changed by someone else", f"{method} {path}: version")
        if model.get("id") is not None and (existing is None or existing["dashboard"]["id"] != model["id"]):
            raise _Refusal(404, "Dashboard not found", f"{method} {path}: dashboard.id names no dashboard")
        version = existing["dashboard"]["version"] + 1 if existing else 1
        number = existing["dashboard"]["id"] if existing else len(self.dashboards) + 1
        self.dashboards[uid] = {"dashboard": {**model, "id": number, "version": version}, "folderUid": folder,
                                "message": body.get("message")}
        slug = re.sub(r"[^a-z0-9]+", "-", model["title"].lower()).strip("-")
        return {"id": number, "uid": uid, "url": f"/d/{uid}/{slug}", "status": "success", "version": version,
                "slug": slug}

    @staticmethod
    def _get(objects: dict[str, dict], uid: str, missing: str) -> tuple[int, Any]:
        if uid not in objects:  # a lookup, not a refusal
            return 404, {"message": missing}
        return 200, _public(objects[uid])


class _Refusal(Exception):
    def __init__(self, status: int, message: str, reason: str):
        super().__init__(reason)
        self.status, self.message, self.reason = status, message, reason


def _check(method: str, path: str, body: Any, shape: tuple[dict[str, type], dict[str, type]]) -> None:
    required, allowed = shape
    if not isinstance(body, dict):
        raise _Refusal(400, "bad request data", f"{method} {path}: body must be a JSON object")
    missing = sorted(set(required) - set(body))
    if missing:
        raise _Refusal(400, "bad request data", f"{method} {path}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(body) - set(required) - set(allowed))
    if unknown:
        raise _Refusal(400, "bad request data", f"{method} {path}: unknown field(s) {', '.join(unknown)}")
    for name, value in body.items():
        expected = {**required, **allowed}[name]
        if value is not None and not isinstance(value, expected) or isinstance(value, bool) and expected is int:
            raise _Refusal(400, "bad request data", f"{method} {path}: {name} must be {expected.__name__}")


def _uid(method: str, path: str, uid: str) -> None:
    if not _UID.match(uid):
        raise _Refusal(400, "uid contains illegal characters or is too long", f"{method} {path}: bad uid {uid!r}")


def _access(method: str, path: str, body: dict) -> None:
    if body["access"] not in ("proxy", "direct"):
        raise _Refusal(400, "bad request data", f"{method} {path}: access must be proxy or direct")


def _public(saved: dict) -> dict:
    """What Grafana returns: secrets are never sent back, only which are set."""
    out = {k: v for k, v in saved.items() if k != "secureJsonData"}
    out["secureJsonFields"] = {name: True for name in saved.get("secureJsonData") or {}}
    return out
