"""docker-compose.yml cannot run on this machine (no Docker engine): check it by reading."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from pydantic import BaseModel

from services.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def setting_exists(var: str) -> bool:
    parts = var.removeprefix("FAITHWATCH_").lower().split("__")
    model: type[BaseModel] = Settings
    for p in parts:
        field = model.model_fields.get(p)
        if field is None:
            return False
        ann = field.annotation
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None  # type: ignore[assignment]
        if model is None and p != parts[-1]:
            return False
    return True


def test_compose_environment_names_real_settings():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    seen = 0
    for name, svc in compose["services"].items():
        for var in (svc.get("environment") or {}):
            if var.startswith("FAITHWATCH_"):
                seen += 1
                assert setting_exists(var), f"{name}: {var} is not a setting"
    assert seen


def test_setting_check_rejects_unknown_names():
    assert setting_exists("FAITHWATCH_STORE__BACKEND") and not setting_exists("FAITHWATCH_STORE__NOPE")


def test_dockerfile_copies_every_package_and_the_data():
    text = (ROOT / "Dockerfile").read_text()
    for d in ("pipelines", "services", "alerts", "dashboards", "data"):
        assert f"COPY {d} {d}" in text


def test_dockerfile_installs_the_cpu_torch_wheel_before_the_package():
    text = (ROOT / "Dockerfile").read_text()
    cpu = text.index("torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert cpu < text.index("pip install --no-cache-dir -e .")


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_full_stack_services_with_health_checks_and_volumes():
    services = compose()["services"]
    for name in ("kafka", "clickhouse", "grafana", "alertmanager", "worker", "api", "migrate"):
        assert name in services, name
    for name in ("kafka", "clickhouse", "grafana", "alertmanager", "api"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in ("kafka", "clickhouse", "grafana", "alertmanager"):
        assert any(":/var/lib" in v or v.endswith(":/alertmanager") for v in services[name]["volumes"]), name
    named = set(compose()["volumes"])
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert used <= named


def test_grafana_provisions_the_data_source_and_the_dashboards_in_one_folder():
    grafana = compose()["services"]["grafana"]
    mounts = {}
    for volume in grafana["volumes"]:
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            assert (ROOT / host).is_dir(), host
            mounts[container] = ROOT / host
    datasources = mounts["/etc/grafana/provisioning/datasources"]
    (source,) = [d for f in sorted(datasources.glob("*.yaml")) for d in yaml.safe_load(f.read_text())["datasources"]]
    assert source["type"] == "grafana-clickhouse-datasource"
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    (provider,) = [p for f in sorted(mounts["/etc/grafana/provisioning/dashboards"].glob("*.yaml"))
                   for p in yaml.safe_load(f.read_text())["providers"]]
    assert provider["type"] == "file" and provider["folder"] and provider["folderUid"]
    assert not provider["options"].get("foldersFromFilesStructure")
    json_dir = mounts[provider["options"]["path"]]
    files = sorted(json_dir.glob("*.json"))
    assert [f.name for f in files] == ["cluster.json", "incident.json", "overview.json"]
    for f in files:
        model = json.loads(f.read_text())
        assert {t["datasource"]["uid"] for p in model["panels"] for t in p.get("targets", [])} == {source["uid"]}


def test_every_command_the_stack_runs_is_a_faithwatch_command():
    from services.cli import main

    for name, svc in compose()["services"].items():
        if svc.get("image") == "faithwatch:latest" and name != "tools":
            assert svc["command"][0] in main.commands, f"{name}: {svc['command']}"


def test_stack_wiring_matches_the_settings():
    services = compose()["services"]
    env = {name: svc.get("environment") or {} for name, svc in services.items()}
    for name in ("worker", "api", "migrate"):
        assert env[name]["FAITHWATCH_STORE__BACKEND"] == "clickhouse"
        assert env[name]["FAITHWATCH_STORE__URL"] == "http://clickhouse:8123"
        assert env[name]["FAITHWATCH_KAFKA__BROKERS"] == "kafka://kafka:9092"
        assert env[name]["FAITHWATCH_STORE__DATABASE"] == env["clickhouse"]["CLICKHOUSE_DB"]
        assert env[name]["FAITHWATCH_STORE__USER"] == env["clickhouse"]["CLICKHOUSE_USER"]
    assert env["api"]["FAITHWATCH_API__INGEST"] == "kafka"  # the API publishes; the workers process
    assert "PLAINTEXT://kafka:9092" in env["kafka"]["KAFKA_ADVERTISED_LISTENERS"]
    # Grafana's provisioned data source points at the ClickHouse service and database.
    ds = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/clickhouse.yaml").read_text())["datasources"][0]
    assert ds["type"] == "grafana-clickhouse-datasource" and ds["jsonData"]["host"] == "clickhouse"
    assert ds["jsonData"]["defaultDatabase"] == env["clickhouse"]["CLICKHOUSE_DB"]
    assert "grafana-clickhouse-datasource" in env["grafana"]["GF_INSTALL_PLUGINS"]
    am = yaml.safe_load((ROOT / "alerts/alertmanager.yml").read_text())
    assert am["route"]["receiver"] in {r["name"] for r in am["receivers"]}


def test_alert_delivery_is_wired_from_the_workers_to_alertmanager():
    """The workers (and the API, which checks it) read the stack's notify file; it names the
    Alertmanager service; Alertmanager routes faithwatch's alerts per incident and keeps them
    firing longer than the workers take to re-send them; amtool accepts its config."""
    import subprocess

    from services.notify.alertmanager import ALERTNAME
    from services.notify.notify_file import load_notify_file
    from services.settings import NotifySettings
    from services.testing.alertmanager import ensure_installed

    services = compose()["services"]
    for name in ("worker", "api"):
        env, volumes = services[name]["environment"], services[name].get("volumes", [])
        mounted = {v.split(":")[1]: v.split(":")[0] for v in volumes}
        target = env["FAITHWATCH_NOTIFY_FILE"]
        assert mounted.get(target) == "./alerts/notify.yml", f"{name} does not mount the notify file at {target}"
    assert "alertmanager" in services["worker"]["depends_on"]
    notify = load_notify_file(ROOT / "alerts/notify.yml", environ={})
    am_port = services["alertmanager"]["ports"][0].split(":")[-1]
    assert {c.type: c.url for c in notify.channels.values()} == {"alertmanager": f"http://alertmanager:{am_port}"}
    assert notify.route({"category": "pricing", "severity": "critical"}), "no route takes an incident"
    am = yaml.safe_load((ROOT / "alerts/alertmanager.yml").read_text())
    [ours] = [r for r in am["route"]["routes"] if f'alertname="{ALERTNAME}"' in r["matchers"]]
    assert ours["receiver"] in {r["name"] for r in am["receivers"]} and ours["group_by"] == ["incident_id"]
    refresh = float(services["worker"]["environment"]["FAITHWATCH_NOTIFY__ALERTMANAGER_REFRESH_SECONDS"])
    assert 0 < refresh < int(am["global"]["resolve_timeout"].removesuffix("m")) * 60
    assert refresh == NotifySettings().alertmanager_refresh_seconds  # the documented default
    amtool = Path(ensure_installed()).with_name("amtool")
    check = subprocess.run([str(amtool), "check-config", str(ROOT / "alerts/alertmanager.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_embedded_profile_runs_grafana_on_serves_clickhouse_endpoint():
    """`--profile embedded`: serve on its chDB store, and a Grafana whose one data source is serve's
    /clickhouse, with every variable the provisioning file reads set, and the same dashboards."""
    services = compose()["services"]
    serve, grafana = services["embedded"], services["grafana-embedded"]
    assert serve["profiles"] == ["embedded"] == grafana["profiles"]
    assert serve["command"][0] == "serve" and "FAITHWATCH_STORE__BACKEND" not in serve["environment"]
    assert "FAITHWATCH_API__TOKENS" in serve["environment"] and serve.get("healthcheck")
    port = serve["command"][serve["command"].index("--port") + 1]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    text = "".join(f.read_text() for f in sorted(mounts["/etc/grafana/provisioning/datasources"].glob("*.yaml")))
    (source,) = yaml.safe_load(text)["datasources"]
    assert source["jsonData"]["path"] == "/clickhouse" and source["jsonData"]["protocol"] == "http"
    for var in re.findall(r"\$\{(\w+)\}", text):
        assert var in grafana["environment"], var
    assert grafana["environment"]["SERVE_HOST"] == "embedded"
    assert grafana["environment"]["SERVE_PORT"] == port
    # The same dashboards as the server stack's Grafana (provider file and JSON).
    full = {v.split(":")[1]: ROOT / v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith("./")}
    for path in ("/etc/grafana/provisioning/dashboards", "/etc/grafana/dashboards/faithwatch"):
        assert mounts[path] == full[path] and mounts[path].is_dir(), path
