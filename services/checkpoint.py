"""The live pipeline's state on disk, so a restarted ``faithwatch serve`` continues where it stopped.

:class:`Checkpoint` writes :meth:`pipelines.engine.Pipeline.to_state` as gzip-compressed JSON to
``DATA_DIR/state/pipeline.json.gz``: first to a temporary file in the same directory, flushed to
disk, then renamed over the old one, so a crash mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from pathlib import Path

from pipelines.errors import StateError
from services.private import private_dir


class Checkpoint:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> Checkpoint:
        return cls(Path(data_dir) / "state" / "pipeline.json.gz")

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict | None:
        """The saved state, or None if there is none. Raises StateError for an unreadable file."""
        if not self.exists():
            return None
        try:
            with gzip.open(self.path, "rt", encoding="utf-8") as fh:
                state = json.load(fh)
        except (OSError, EOFError, ValueError) as exc:
            raise StateError(f"pipeline checkpoint {self.path} cannot be read: {exc}") from exc
        if not isinstance(state, dict):
            raise StateError(f"pipeline checkpoint {self.path} is not a saved state")
        return state

    def save(self, state: dict) -> None:
        private_dir(self.path.parent)
        fd, tmp = tempfile.mkstemp(prefix=".pipeline-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as raw:
                with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3, mtime=0) as gz:
                    gz.write(json.dumps(state, separators=(",", ":")).encode("utf-8"))
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
