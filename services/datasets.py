"""Datasets shipped in the repository's ``data/`` folder.

Everything is found relative to this file, so a clone works from any directory and nothing reads
outside the repository.

>>> queries = load_banking77("test")
>>> len(queries), queries["card_arrival"][0]
(77, 'How do I locate my card?')
"""

from __future__ import annotations

import csv
from pathlib import Path

from pipelines.errors import ConfigError

SPLITS = ("train", "test")


def data_dir() -> Path:
    """The repository's ``data/`` folder."""
    return Path(__file__).resolve().parents[1] / "data"


def load_banking77(split: str = "train") -> dict[str, list[str]]:
    """BANKING77 queries by intent (``{intent: [query, ...]}``), in file order.

    Raises :class:`~pipelines.errors.ConfigError` for an unknown split or a missing file.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown BANKING77 split {split!r}; expected one of {', '.join(SPLITS)}")
    path = data_dir() / "banking77" / f"{split}.csv"
    if not path.is_file():
        raise ConfigError(
            f"BANKING77 {split} split not found at {path}; the repository's data/banking77/ "
            "folder is incomplete (see data/README.md)"
        )
    by_intent: dict[str, list[str]] = {}
    # newline="" because a few queries contain quoted line breaks.
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise ConfigError(f"{path} must have the columns text,category")
        for row in reader:
            by_intent.setdefault(row["category"], []).append(row["text"])
    return by_intent


def load_seed_queries(path: Path) -> list[str]:
    """Example queries to fit the first clusters on: a ``.txt`` file (one query a line), a
    ``.jsonl`` file (a ``query`` field per line, e.g. an earlier replay file) or a ``.csv`` file
    (a ``text`` or ``query`` column, e.g. BANKING77's ``train.csv``)."""
    import csv
    import json

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"seed file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                q = json.loads(line).get("query")
            except (json.JSONDecodeError, AttributeError):
                raise ConfigError(f"seed file {path} line {n}: not a JSON object") from None
            if isinstance(q, str) and q.strip():
                out.append(q)
        return out
    if path.suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
        col = next((c for c in ("text", "query") if rows and c in rows[0]), None)
        if col is None:
            raise ConfigError(f"seed file {path}: needs a 'text' or 'query' column")
        return [r[col] for r in rows if r[col] and r[col].strip()]
    raise ConfigError(f"seed file {path}: use .txt, .jsonl or .csv")
