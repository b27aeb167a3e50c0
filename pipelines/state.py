"""One shape for every stateful stage (baselines, detectors, clusterers, trackers).

A stateful stage declares ``STATE_VERSION`` and the names of its state attributes; ``to_state``
returns a JSON-safe dict carrying that version and a fingerprint of the configuration, and
``from_state`` refuses a state written by another version or configuration, so a changed
parameter never silently reads old state. Configuration is kept apart from state.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pipelines.errors import StateError


def fingerprint(config: Any) -> str:
    """A short stable hash of a configuration (pydantic model, dataclass-like or plain dict)."""
    if hasattr(config, "model_dump"):
        data = config.model_dump(mode="json")
    elif isinstance(config, dict):
        data = config
    else:
        data = vars(config)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def envelope(kind: str, version: int, config: Any, payload: dict) -> dict:
    """Wrap a stage's payload with what ``check_envelope`` verifies on restore."""
    return {"kind": kind, "version": version, "config": fingerprint(config), "payload": payload}


def check_envelope(state: dict, kind: str, version: int, config: Any) -> dict:
    """Return the payload of ``state`` or raise :class:`StateError` saying why it cannot be used."""
    if not isinstance(state, dict) or "payload" not in state:
        raise StateError(f"{kind}: not a saved state")
    if state.get("kind") != kind:
        raise StateError(f"{kind}: state is for {state.get('kind')!r}")
    if state.get("version") != version:
        raise StateError(f"{kind}: state version {state.get('version')} != {version}")
    if state.get("config") != fingerprint(config):
        raise StateError(f"{kind}: state was written with another configuration")
    return state["payload"]
