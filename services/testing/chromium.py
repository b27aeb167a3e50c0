"""Debian's headless Chromium: load a page and read its DOM after scripts ran.

    html = dump_dom(Path("out/index.html"))   # the DOM as Chromium built it

:func:`ensure_installed` installs the ``chromium`` package with apt-get when it is missing.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from services.testing import ensure_debian_package

BINARY = "/usr/bin/chromium"
PACKAGE = "chromium"


def ensure_installed() -> str:
    return ensure_debian_package(BINARY, PACKAGE)


def dump_dom(page: Path, timeout: float = 60.0, budget_ms: int = 5000) -> str:
    """The serialized DOM of ``page`` (a local file) once it loaded and its scripts ran."""
    binary = ensure_installed()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--allow-file-access-from-files", f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout
