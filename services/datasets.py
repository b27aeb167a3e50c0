"""Datasets shipped in the repository's ``data/`` folder.

Everything is found relative to this file, so a clone works from any directory and nothing reads
outside the repository.

>>> queries = load_banking77("test")
>>> len(queries), queries["card_arrival"][0]
(77, 'How do I locate my card?')
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipelines.errors import ConfigError

SPLITS = ("train", "test")


def data_dir() -> Path:
    """The repository's ``data/`` folder."""
    return Path(__file__).resolve().parents[1] / "data"


def _file(folder: str, name: str) -> Path:
    path = data_dir() / folder / name
    if not path.is_file():
        raise ConfigError(f"{path} not found: the repository's data/{folder}/ folder is incomplete "
                          "(see data/README.md)")
    return path


def _intent_csv(path: Path) -> dict[str, list[str]]:
    by_intent: dict[str, list[str]] = {}
    # newline="" because a few queries contain quoted line breaks.
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"text", "category"} <= set(reader.fieldnames):
            raise ConfigError(f"{path} must have the columns text,category")
        for row in reader:
            by_intent.setdefault(row["category"], []).append(row["text"])
    return by_intent


def load_banking77(split: str = "train") -> dict[str, list[str]]:
    """BANKING77 queries by intent (``{intent: [query, ...]}``), in file order.

    Raises :class:`~pipelines.errors.ConfigError` for an unknown split or a missing file.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown BANKING77 split {split!r}; expected one of {', '.join(SPLITS)}")
    return _intent_csv(_file("banking77", f"{split}.csv"))


def load_hwu64(split: str = "train") -> dict[str, list[str]]:
    """HWU64 queries by intent; splits train, val, test.

    >>> len(load_hwu64("test"))
    64
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown HWU64 split {split!r}; expected train, val or test")
    return _intent_csv(_file("hwu64", f"{split}.csv"))


def load_clinc150(split: str = "train", out_of_scope: bool = False) -> dict[str, list[str]]:
    """CLINC150 in-scope queries by intent (150 intents); splits train, val, test.

    ``out_of_scope`` adds the split's out-of-scope queries under the intent ``"oos"``.

    >>> q = load_clinc150("test")
    >>> len(q), sum(map(len, q.values()))
    (150, 4500)
    """
    if split not in ("train", "val", "test"):
        raise ConfigError(f"unknown CLINC150 split {split!r}; expected train, val or test")
    data = json.loads(_file("clinc150", "data_full.json").read_text(encoding="utf-8"))
    by_intent: dict[str, list[str]] = {}
    for text, intent in data[split] + (data[f"oos_{split}"] if out_of_scope else []):
        by_intent.setdefault(intent, []).append(text)
    return by_intent


_INTENT_LOADERS = {"banking77": load_banking77, "clinc150": load_clinc150, "hwu64": load_hwu64}
INTENT_SETS = tuple(_INTENT_LOADERS)


def load_intents(name: str, split: str = "train") -> dict[str, list[str]]:
    """One of the intent data sets by name (``banking77``, ``clinc150``, ``hwu64``; any case).

    >>> len(load_intents("HWU64", "test"))
    64
    """
    if name.lower() not in _INTENT_LOADERS:
        raise ConfigError(f"unknown intent data set {name!r}; expected one of {', '.join(INTENT_SETS)}")
    return _INTENT_LOADERS[name.lower()](split)


def load_halueval(task: str = "qa") -> list[dict]:
    """HaluEval ``qa`` (knowledge, question, right_answer, hallucinated_answer) or ``dialogue``
    (knowledge, dialogue_history, right_response, hallucinated_response) records, in file order.

    >>> qa = load_halueval("qa")
    >>> len(qa), sorted(qa[0])
    (10000, ['hallucinated_answer', 'knowledge', 'question', 'right_answer'])
    """
    if task not in ("qa", "dialogue"):
        raise ConfigError(f"unknown HaluEval task {task!r}; expected qa or dialogue")
    path = _file("halueval", f"{task}_data.json")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_seed_queries(path: Path) -> list[str]:
    """Example queries to fit the first clusters on: a ``.txt`` file (one query a line), a
    ``.jsonl`` file (a ``query`` field per line, e.g. an earlier replay file) or a ``.csv`` file
    (a ``text`` or ``query`` column, e.g. BANKING77's ``train.csv``)."""

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
