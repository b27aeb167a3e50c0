"""The BANKING77 copy ships with the repository and loads without reading anything outside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import services.datasets as datasets
from pipelines.errors import ConfigError
from services.datasets import data_dir, load_banking77

REPO = Path(__file__).resolve().parents[2]


def test_data_dir_is_the_repository_data_folder():
    assert data_dir() == REPO / "data"
    for name in ("train.csv", "test.csv", "categories.json", "ATTRIBUTION.md",
                 "LICENSE-CC-BY-4.0.txt"):
        assert (data_dir() / "banking77" / name).is_file()


@pytest.mark.parametrize(("split", "rows"), [("train", 10_003), ("test", 3_080)])
def test_loader_returns_all_77_intents_with_real_queries(split, rows):
    queries = load_banking77(split)
    categories = json.loads((data_dir() / "banking77" / "categories.json").read_text())
    assert len(queries) == 77 and set(queries) == set(categories)
    assert sum(len(v) for v in queries.values()) == rows
    assert all(q.strip() for qs in queries.values() for q in qs)


def test_loader_preserves_file_order():
    queries = load_banking77()
    assert queries["card_arrival"][:2] == [
        "I am still waiting on my card?",
        "What can I do if my card still hasn't arrived after 2 weeks?",
    ]
    assert "How much is the exchange fee?" in queries["exchange_charge"]


@pytest.mark.parametrize("split", ["validation", "", "TRAIN"])
def test_unknown_split_is_a_config_error(split):
    with pytest.raises(ConfigError, match="unknown BANKING77 split"):
        load_banking77(split)


@pytest.mark.parametrize(("name", "split", "intents", "queries"), [
    ("banking77", "test", 77, 3080), ("CLINC150", "test", 150, 4500), ("HWU64", "test", 64, 1076),
    ("hwu64", "train", 64, None)])
def test_intent_sets_load_by_name_in_any_case(name, split, intents, queries):
    by_intent = datasets.load_intents(name, split)
    assert len(by_intent) == intents
    assert queries is None or sum(map(len, by_intent.values())) == queries
    assert by_intent == getattr(datasets, f"load_{name.lower()}")(split)


def test_an_unknown_intent_set_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown intent data set 'snips'; expected one of banking77, clinc150"):
        datasets.load_intents("snips")


def test_missing_file_is_a_clear_config_error(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "data_dir", lambda: tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_banking77("train")


def test_seed_files_in_three_formats(tmp_path):
    import json

    import pytest

    from pipelines.errors import ConfigError
    from services.datasets import load_seed_queries

    (tmp_path / "s.txt").write_text("fee?\n\n  card lost \n")
    (tmp_path / "s.jsonl").write_text(json.dumps({"query": "fee?"}) + "\n\n" + json.dumps({"query": "card"}) + "\n")
    (tmp_path / "s.csv").write_text("text,category\nfee?,a\ncard,b\n")
    assert load_seed_queries(tmp_path / "s.txt") == ["fee?", "card lost"]
    assert load_seed_queries(tmp_path / "s.jsonl") == ["fee?", "card"]
    assert load_seed_queries(tmp_path / "s.csv") == ["fee?", "card"]
    (tmp_path / "bad.jsonl").write_text("[1]\n")
    for bad, match in [("bad.jsonl", "line 1"), ("nope.txt", "does not exist")]:
        with pytest.raises(ConfigError, match=match):
            load_seed_queries(tmp_path / bad)
    (tmp_path / "s.parquet").write_text("")
    with pytest.raises(ConfigError, match="use .txt"):
        load_seed_queries(tmp_path / "s.parquet")
