"""The live pipeline's state on disk: atomic saves, periodic and final checkpoints, refusal of a foreign state."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from pipelines.errors import StateError
from pipelines.interaction import Context, Interaction
from services.checkpoint import Checkpoint
from services.cli import main
from services.ingest import EmbeddedIngestor
from services.settings import Settings
from services.store.chdb_store import ChdbStore
from services.wiring import build_pipeline

T0 = datetime(2026, 11, 2, tzinfo=UTC)
QUERIES = ["what is the exchange rate fee for euros", "how do I reset the pin of my card"]


def settings(tmp_path, **cluster) -> Settings:
    return Settings(data_dir=tmp_path, embedding={"backend": "hashing"},
                    cluster={"bootstrap_size": 30, **cluster})


def inter(k: int) -> Interaction:
    return Interaction(interaction_id=f"i{k}", session_id=f"s{k % 7}", timestamp=T0 + timedelta(minutes=k),
                       query=f"{QUERIES[k % 2]} {k % 3}", response="The fee is 2%.", confidence=0.9,
                       contexts=(Context(doc_id="fees", doc_version="v1", text="The fee is 2%."),))


def test_save_load_round_trip_and_no_temporary_files_left(tmp_path):
    cp = Checkpoint.in_data_dir(tmp_path)
    assert cp.load() is None
    cp.save({"kind": "x", "payload": {"a": [1, 2]}})
    cp.save({"kind": "x", "payload": {"a": [3]}})
    assert cp.load() == {"kind": "x", "payload": {"a": [3]}}
    assert [p.name for p in cp.path.parent.iterdir()] == ["pipeline.json.gz"]


@pytest.mark.parametrize("content", [b"not gzip", gzip.compress(b"{truncated"), gzip.compress(b"[1, 2]")])
def test_unreadable_checkpoint_is_a_state_error(tmp_path, content):
    cp = Checkpoint.in_data_dir(tmp_path)
    cp.path.parent.mkdir(parents=True)
    cp.path.write_bytes(content)
    with pytest.raises(StateError, match="pipeline.json.gz"):
        cp.load()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ingestor_saves_every_interval_and_at_close_without_fitting_early(tmp_path):
    s = settings(tmp_path)
    saved: list[dict] = []
    clock = Clock()
    with ChdbStore(tmp_path / "chdb") as store:
        store.migrate()
        ing = EmbeddedIngestor(build_pipeline(s), store, batch_size=8, checkpoint=saved.append,
                               checkpoint_seconds=10, monotonic=clock)
        ing.start()
        ing.wait(ing.submit([inter(k) for k in range(8)]), 30)
        assert saved == []  # not yet 10 s
        clock.now = 11
        ing.wait(ing.submit([inter(k) for k in range(8, 16)]), 30)
        # The worker saves right after it wakes the waiters: give it a moment (no timing assert).
        deadline = time.monotonic() + 30
        while not saved and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(saved) == 1 and json.loads(json.dumps(saved[0])) == saved[0]
        ing.submit([inter(k) for k in range(16, 20)])
        ing.close()
        assert len(saved) == 2
        assert store.counts()["interactions"] == 0  # 20 < bootstrap_size 30: kept, not fitted early
    restored = build_pipeline(s, state=saved[-1])
    out = restored.process([inter(k) for k in range(20, 30)])
    assert [x.interaction_id for x in out.scored] == [f"i{k}" for k in range(30)]


def test_without_a_checkpoint_close_still_fits_and_stores_everything(tmp_path):
    with ChdbStore(tmp_path / "chdb") as store:
        store.migrate()
        ing = EmbeddedIngestor(build_pipeline(settings(tmp_path)), store, batch_size=8)
        ing.start()
        ing.submit([inter(k) for k in range(12)])
        ing.close()
        assert store.counts()["interactions"] == 12


def test_serve_refuses_a_state_written_with_another_configuration(tmp_path, monkeypatch):
    p = build_pipeline(settings(tmp_path, refit_every=77))
    p.process([inter(k) for k in range(5)])
    Checkpoint.in_data_dir(tmp_path).save(p.to_state())
    monkeypatch.setenv("FAITHWATCH_EMBEDDING__BACKEND", "hashing")
    monkeypatch.setenv("FAITHWATCH_CLUSTER__BOOTSTRAP_SIZE", "30")
    monkeypatch.setenv("FAITHWATCH_API__TOKENS", '["t0ken"]')
    res = CliRunner().invoke(main, ["serve", "--data-dir", str(tmp_path), "--port", "0"])
    assert res.exit_code == 2
    assert "another configuration" in res.output and "--reset-state" in res.output
    assert Checkpoint.in_data_dir(tmp_path).exists()  # refused, not discarded
