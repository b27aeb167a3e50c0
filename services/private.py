"""Files only the service's user may read: the data dir holds every stored answer, customer id
and dead letter (raw records), so it is 0700 and what faithwatch writes in it 0600.

>>> import tempfile, stat
>>> root = Path(tempfile.mkdtemp())
>>> oct(stat.S_IMODE(private_dir(root / "data").stat().st_mode))
'0o700'
>>> with private_append(root / "data" / "x.jsonl") as fh:
...     _ = fh.write("{}\\n")
>>> oct(stat.S_IMODE((root / "data" / "x.jsonl").stat().st_mode))
'0o600'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO


def private_dir(path: Path) -> Path:
    """``path`` created if missing (parents as usual) and made 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def private_append(path: Path) -> IO[str]:
    """``path`` opened to append text, created 0600 (an existing file is made 0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "a", encoding="utf-8")


def restrict_tree(path: Path) -> None:
    """Every directory under ``path`` 0700 and every file 0600 (what another program, e.g. chDB,
    created there with its own modes; what it removes meanwhile is skipped)."""
    for root, _dirs, files in os.walk(path):
        _chmod(root, 0o700)
        for name in files:
            target = os.path.join(root, name)
            if not os.path.islink(target):
                _chmod(target, 0o600)


def _chmod(path: str, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except FileNotFoundError:  # the engine's background merges remove temporary files meanwhile
        pass
