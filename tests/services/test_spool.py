"""The write-ahead spool on its own (services/spool.py), in a temporary directory."""

from __future__ import annotations

import os
import stat
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.interaction import parse_record
from services.spool import Spool, SpoolFull, encode

T0 = datetime(2026, 11, 2, tzinfo=UTC)
NOW = datetime(2026, 12, 4, tzinfo=UTC)


def batch(start: int, n: int) -> list:
    return [parse_record({"interaction_id": f"i{k}", "timestamp": (T0 + timedelta(seconds=k)).isoformat(),
                          "query": f"question {k}", "response": "answer", "extra": {"k": k}})
            for k in range(start, start + n)]


class Syncs:
    """os.fsync that also notes what each call covered (the file's size then)."""

    def __init__(self):
        self.sizes: list[int] = []

    def __call__(self, fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            self.sizes.append(st.st_size)
        os.fsync(fd)


def ids(recovered) -> list[str]:
    return [r.interaction_id for seg in recovered for r in seg.records]


def test_an_append_is_synced_before_it_returns_and_a_restart_reads_it_back_in_order(tmp_path):
    syncs = Syncs()
    spool = Spool(tmp_path / "spool", max_bytes=10**6, fsync=syncs)
    marks = [spool.append(batch(0, 3)), spool.append(batch(3, 2))]
    assert marks == [1, 2]
    [path] = spool.segments
    # one fsync per append, each covering the whole file as it was when the append returned
    assert syncs.sizes == [len(encode(batch(0, 3))), len(encode(batch(0, 5)))] == [syncs.sizes[0], path.stat().st_size]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    spool.close()

    again = Spool(tmp_path / "spool", max_bytes=10**6)
    recovered = list(again.recover(NOW))
    assert ids(recovered) == [f"i{k}" for k in range(5)]
    assert recovered[0].records[0] == batch(0, 1)[0]  # the same interaction, unknown fields included
    assert recovered[0].records[0].metadata == {"extra": {"k": 0}}
    assert [seg.dead_letters for seg in recovered] == [[]]


def test_concurrent_appends_share_one_fsync(tmp_path):
    """Group commit: appends that arrive while an fsync runs are covered by the next one."""
    release = threading.Event()
    calls: list[int] = []

    def slow_fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            calls.append(os.fstat(fd).st_size)
            if len(calls) == 1:
                release.wait(10)
        os.fsync(fd)

    spool = Spool(tmp_path, max_bytes=10**6, fsync=slow_fsync)
    marks: list[int] = []
    threads = [threading.Thread(target=lambda k=k: marks.append(spool.append(batch(k * 10, 2)))) for k in range(4)]
    threads[0].start()
    while not calls:
        time.sleep(0.001)
    for t in threads[1:]:
        t.start()
    while spool._written < 4:  # the other three wrote, and wait for the running fsync
        time.sleep(0.001)
    release.set()
    for t in threads:
        t.join()
    assert sorted(marks) == [1, 2, 3, 4]
    assert len(calls) == 2 and calls[1] == spool.segments[0].stat().st_size


def test_segments_rotate_and_are_replayed_oldest_first(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=300)
    for k in range(6):
        spool.append(batch(k * 2, 2))
    names = [p.name for p in spool.segments]
    assert len(names) > 2 and names == sorted(names)
    spool.close()
    again = Spool(tmp_path, max_bytes=10**6, segment_bytes=300)
    recovered = list(again.recover(NOW))
    assert [seg.mark for seg in recovered] == list(range(1, len(names) + 1))
    assert ids(recovered) == [f"i{k}" for k in range(12)]
    # a new run writes a segment of its own after the old ones, never into them
    again.append(batch(100, 1))
    assert again.segments[-1].name > names[-1] and len(again.segments) == len(names) + 1


def test_trim_deletes_only_segments_whose_every_append_is_done(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=1)  # one append per segment
    for k in range(3):
        spool.append(batch(k, 1))
    first, second, third = spool.segments
    spool.done(2)  # done out of order: 1 still waits, so nothing is settled
    assert spool.settled() == 0 and spool.trim(spool.settled()) == 0
    spool.done(1)
    assert spool.settled() == 2
    assert spool.trim(spool.settled()) == 2
    assert not first.exists() and not second.exists() and third.exists()
    spool.done(3)
    assert spool.trim(spool.settled()) == 1 and spool.segments == [] and spool.bytes == 0
    spool.append(batch(9, 1))  # the open segment was trimmed: the next append starts another
    assert len(spool.segments) == 1 and spool.segments[0].exists()


def test_the_open_segment_is_kept_while_an_append_in_it_is_not_done(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append(batch(0, 1))
    spool.append(batch(1, 1))
    spool.done(1)
    assert spool.trim(spool.settled()) == 0  # mark 2 shares the segment
    spool.done(2)
    assert spool.trim(spool.settled()) == 1


def test_recovered_segments_are_settled_only_once_done(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6, segment_bytes=1)
    for k in range(2):
        spool.append(batch(k, 1))
    spool.close()
    again = Spool(tmp_path, max_bytes=10**6, segment_bytes=1)
    recovered = list(again.recover(NOW))
    mark = again.append(batch(5, 1))
    assert mark == 3 and again.settled() == 0
    again.done(3)
    again.done(recovered[0].mark)
    assert again.settled() == 1
    again.done(recovered[1].mark)
    assert again.trim(again.settled()) == 3


def test_a_full_spool_refuses_and_writes_nothing(tmp_path):
    size = len(encode(batch(0, 2)))
    spool = Spool(tmp_path, max_bytes=size + 10)
    spool.append(batch(0, 2))
    with pytest.raises(SpoolFull, match="api.spool_max_bytes"):
        spool.append(batch(2, 2))
    assert spool.bytes == size == spool.segments[0].stat().st_size
    spool.done(1)
    spool.trim(spool.settled())
    spool.append(batch(2, 2))  # room again once trimmed


def test_a_torn_last_line_is_dead_lettered_and_the_rest_replayed(tmp_path):
    spool = Spool(tmp_path, max_bytes=10**6)
    spool.append(batch(0, 3))
    spool.close()
    [path] = spool.segments
    whole = encode(batch(3, 1))
    with path.open("ab") as fh:
        fh.write(b'{"interaction_id": "garbage", "timestamp": 5}\n')  # a line that reads but is no record
        fh.write(whole[: len(whole) // 2])  # a crash in the middle of a write
    again = Spool(tmp_path, max_bytes=10**6)
    [seg] = list(again.recover(NOW))
    assert ids([seg]) == ["i0", "i1", "i2"]
    assert [d.position for d in seg.dead_letters] == [f"{path.name} line 4", f"{path.name} line 5"]
    torn = seg.dead_letters[1]
    assert torn.source == "spool" and "torn" in torn.reason and torn.received_at == NOW
    assert "torn" not in seg.dead_letters[0].reason and seg.dead_letters[0].interaction_id == "garbage"


# ---- the ingest worker with a spool (services/ingest.py) -------------------------------------

class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def eventually(condition, seconds: float = 30.0) -> bool:
    """``condition()`` once it holds (the worker saves its checkpoint just after answering wait())."""
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def test_the_worker_trims_the_spool_only_after_a_checkpoint_covers_it(tmp_path, chdb):
    from services.ingest import EmbeddedIngestor, IngestUnavailable
    from services.settings import Settings
    from services.wiring import build_pipeline

    settings = Settings(data_dir=tmp_path, embedding={"backend": "hashing"}, cluster={"bootstrap_size": 10})
    saved: list[dict] = []
    failing = [True]

    def checkpoint(state: dict) -> None:
        if failing[0]:
            raise OSError("disk full")
        saved.append(state)

    clock = Clock()
    spool = Spool(tmp_path / "spool", max_bytes=len(encode(batch(0, 30))), segment_bytes=1)
    ing = EmbeddedIngestor(build_pipeline(settings), chdb, batch_size=8, checkpoint=checkpoint, checkpoint_seconds=10,
                           monotonic=clock, spool=spool).start()
    assert ing.wait(ing.submit(batch(0, 6)), 30).done  # waits for the bootstrap (10): only in memory and spool
    clock.now = 11
    assert ing.wait(ing.submit(batch(6, 6)), 30).done  # bootstrap done; the checkpoint after it fails
    assert eventually(lambda: ing.metrics.ingest_errors._value.get() == 1)
    assert len(spool.segments) == 2  # not covered by a saved state: kept
    with pytest.raises(IngestUnavailable, match="spool_max_bytes") as refused:
        ing.submit(batch(12, 20))
    assert refused.value.retry_after == 10 and ing.depth == 0 and len(spool.segments) == 2
    failing[0] = False
    clock.now = 22
    assert ing.wait(ing.submit(batch(12, 3)), 30).done
    assert eventually(lambda: saved and spool.segments == [])  # saved: every segment covered, trimmed
    ing.submit(batch(15, 3))  # queued, never processed: the process "dies" here (the worker is left running)
    assert len(spool.segments) == 1

    # The next run replays it before anything else; the first 15 are already stored.
    again = Spool(tmp_path / "spool", max_bytes=10**6, segment_bytes=1)
    restored = build_pipeline(settings, state=saved[-1])
    ing2 = EmbeddedIngestor(restored, chdb, batch_size=8, checkpoint=saved.append, spool=again).start()
    assert ing2.replayed == 3
    ing2.close()
    assert chdb.counts()["interactions"] == 18 and again.segments == []
