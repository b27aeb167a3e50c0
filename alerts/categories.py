"""The intent-category policy users edit: ``alerts/categories.yaml``."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from pipelines.errors import ConfigError
from pipelines.policy import CategoryPolicy

DEFAULT_CATEGORIES = Path(__file__).resolve().parent / "categories.yaml"


def load_policy(path: Path) -> CategoryPolicy:
    """Read the intent categories file (``alerts/categories.yaml`` by default)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"categories file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"categories file {path}: {exc}") from None
    try:
        return CategoryPolicy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"categories file {path}: {where}: {err['msg']}") from None
