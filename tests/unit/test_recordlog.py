"""The records log under the file store: torn lines, folds, failed writes and slow fsyncs."""

from __future__ import annotations

import errno
import json
import os
import threading
import time

import pytest

from idc_ha.coord import recordlog
from idc_ha.coord.store import FileStore
from idc_ha.errors import StoreCorrupt

from .builders import TOPO, after_failover, failover_op, record, records
from .conftest import files


def test_a_torn_last_record_line_is_skipped(store: FileStore) -> None:
    """A crash mid-append leaves a torn last line: everything before it stands, and the next
    record written after it stands alone."""
    store.write_records(records().values())
    with open(store.dir / "records.log", "ab") as f:
        f.write(b'{"seq": 99, "record": {"shard": "shard1", "ep')
    again = FileStore(store.dir)
    assert again.load_records() == records()
    newer = record(TOPO, "shard1").model_copy(update={"epoch": 2})
    again.write_records([newer])
    assert FileStore(store.dir).load_records()["shard1"] == newer
    again.release()


def test_the_log_is_folded_into_a_snapshot(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the log is long it becomes records.json and a new log; a reader replays only lines
    newer than the snapshot, so a line the snapshot covers cannot roll a record back."""
    monkeypatch.setattr(recordlog, "COMPACT_LINES", 5)
    store.write_records(records().values())
    for k in range(2, 5):
        store.write_records([record(TOPO, "shard1").model_copy(update={"epoch": k})])
    assert (store.dir / "records.json").exists()
    assert files(store.dir) == ["records.json", "records.log"]  # the rotated log is gone
    header, *rest = (store.dir / "records.log").read_bytes().splitlines(keepends=True)
    assert json.loads(header) == {"start": 6} and len(rest) == 1  # the one after the fold
    old_line = b'{"seq": 1, "record": ' + records()["meta"].model_dump_json().encode() + b"}\n"
    (store.dir / "records.log").write_bytes(header + old_line + b"".join(rest))
    loaded = FileStore(store.dir).load_records()
    assert loaded["shard1"].epoch == 4 and loaded["meta"] == records()["meta"]


def test_a_reader_during_a_fold_misses_nothing(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """`idc-ha status` reads without the daemon's lock, so it may see the log after a fold and
    the snapshot from before it. It must notice the gap and read again, not miss the records in
    between (review 3, S2: it lost shard1's failover)."""
    monkeypatch.setattr(recordlog, "COMPACT_LINES", 4)
    store.write_records([record(TOPO, s.name) for s in TOPO.shards])
    store.write_records([record(TOPO, "shard2")])  # the 4th line: a fold, snapshot at seq 4
    moved = after_failover(TOPO, "shard1")
    store.write_records([moved])  # seq 5
    store.write_records([record(TOPO, "meta")] * 2)
    snapshot = store.dir / "records.json"
    before_fold = snapshot.read_bytes()
    store.write_records([record(TOPO, "meta")] * 4)  # a fold at seq 8; the new log starts at 9
    after_fold = snapshot.read_bytes()
    snapshot.write_bytes(before_fold)  # what a reader sees if it reads the snapshot mid-fold
    retried = []

    def fold_done(s: float) -> None:
        retried.append(s)
        snapshot.write_bytes(after_fold)

    monkeypatch.setattr(recordlog.time, "sleep", fold_done)
    seen = FileStore(store.dir).load_records()
    assert retried, "the reader saw the gap and read again"
    assert seen["shard1"] == moved


def test_a_gap_that_stays_is_corruption(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log starting past the snapshot for good (a file lost) is refused with a hint, never read
    as if nothing were missing."""
    monkeypatch.setattr(recordlog, "COMPACT_LINES", 4)
    store.write_records(records().values())
    store.write_records([record(TOPO, "meta")] * 6)  # folds; the log starts past the first snapshot
    (store.dir / "records.json").unlink()
    monkeypatch.setattr(recordlog.time, "sleep", lambda s: None)
    with pytest.raises(StoreCorrupt) as e:
        FileStore(store.dir).load_records()
    assert "gap" in str(e.value) and e.value.hint


def test_a_crash_mid_fold_loses_nothing(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the log was rotated and before the snapshot was written leaves the rotated log,
    the new one and the old snapshot: together they hold every record, and the next fold clears
    the leftovers."""
    monkeypatch.setattr(recordlog, "COMPACT_LINES", 4)
    store.write_records(records().values())
    real = recordlog.atomic_write

    def crash(*a: object, **kw: object) -> None:
        raise OSError(errno.EIO, "the process died here")

    monkeypatch.setattr(recordlog, "atomic_write", crash)
    moved = after_failover(TOPO, "shard1")
    store.write_records([moved])  # the 4th line: the fold rotates, then the snapshot fails
    assert files(store.dir) == ["records.log", "records.log.1"]
    assert FileStore(store.dir).load_records() == {**records(), "shard1": moved}
    monkeypatch.setattr(recordlog, "atomic_write", real)
    again = FileStore(store.dir)
    again.load_records()
    again.write_records([record(TOPO, "meta")] * 4)  # the next fold
    assert files(store.dir) == ["records.json", "records.log"]
    assert FileStore(store.dir).load_records()["shard1"] == moved
    again.release()


def test_a_failed_write_changes_nothing(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record write that fails (a full disk) raises, leaves the log as it was, and never reaches
    a later snapshot (review 3, S10: a failover record that failed to write came back after a
    fold, an operation nobody ran)."""
    monkeypatch.setattr(recordlog, "COMPACT_LINES", 5)
    store.write_records(records().values())
    size = (store.dir / "records.log").stat().st_size
    real_write = os.write
    fail = {"on": True}

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        if fail["on"]:
            fail["on"] = False
            real_write(fd, bytes(data)[:10])  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(recordlog.os, "write", full_disk)
    op = record(TOPO, "shard1").model_copy(update={"op": failover_op("shard1")})
    with pytest.raises(OSError):
        store.write_records([op])
    assert (store.dir / "records.log").stat().st_size == size
    store.write_records([record(TOPO, "shard2"), record(TOPO, "meta")])  # a fold runs
    assert (store.dir / "records.json").exists()
    assert FileStore(store.dir).load_records()["shard1"].op is None
    seqs = [json.loads(x).get("seq") for x in (store.dir / "records.log").read_bytes().splitlines()]
    assert seqs == [None]  # only the new log's header: 3 + 2 records folded, numbered 1..5


def test_appends_do_not_wait_for_a_slow_fsync(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """The group fsync runs in a worker; a journal line or a record appended meanwhile from the
    event loop must not wait for the disk (review 3, S1: it waited the whole fsync)."""
    store.write_records(records().values())
    store.append("start")
    real_fsync = os.fsync
    in_fsync = threading.Event()

    def slow_fsync(fd: int) -> None:
        in_fsync.set()
        time.sleep(1.0)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", slow_fsync)
    worker = threading.Thread(target=store.sync)
    worker.start()
    assert in_fsync.wait(5.0)
    t0 = time.monotonic()
    store.append("step_done", shard="shard2")
    store.write_records([record(TOPO, "shard2")], durable=False)
    waited = time.monotonic() - t0
    worker.join(10.0)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert waited < 0.5, f"an append waited {waited:.2f} s behind an fsync"


def test_a_fold_that_cannot_start_a_new_log_keeps_the_old_one(
    store: FileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fold whose new log cannot be created (a full disk, no file descriptors) puts the log back,
    raises nothing to the writers, and folds later (review 4, F6: the fold stayed 'in progress'
    for good and every later record went into the rotated file)."""
    monkeypatch.setattr(recordlog, "COMPACT_LINES", 4)
    real = recordlog.RecordLog._create
    fail = {"on": False}

    def create(self: recordlog.RecordLog, start: int) -> int:
        if fail["on"]:
            fail["on"] = False
            raise OSError(errno.EMFILE, "Too many open files")
        return real(self, start)

    monkeypatch.setattr(recordlog.RecordLog, "_create", create)
    store.write_records(records().values())
    fail["on"] = True
    store.write_records([record(TOPO, "shard1").model_copy(update={"epoch": 2})])  # the fold fails
    assert files(store.dir) == ["records.log"]
    for k in range(3, 6):
        store.write_records([record(TOPO, "shard1").model_copy(update={"epoch": k})])
    assert files(store.dir) == ["records.json", "records.log"]
    assert FileStore(store.dir).load_records()["shard1"].epoch == 5
