"""docker-compose.yml cannot run on this machine (no Docker engine): check it by reading."""

from __future__ import annotations

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
