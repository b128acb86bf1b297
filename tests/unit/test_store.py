"""FileStore: shard records, journal, operator controls, last tick and the daemon lock, in a directory."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from idc_ha.coord.store import FileStore
from idc_ha.errors import StoreCorrupt, StoreLocked
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import SyncState
from idc_ha.model.state import Control, Recovery

from .builders import TOPO, baseline, failover_op, pos, record, records
from .conftest import files

# -- records ----------------------------------------------------------------------------------------


def test_an_empty_store_has_no_records_or_controls(store: FileStore) -> None:
    """A store never written has no records, default controls, no journal and no tick view."""
    assert not store.exists()
    assert store.load_records() == {}
    assert store.load_control() == Control()
    assert list(store.journal()) == []
    assert store.read_tick() is None


def test_records_round_trip(store: FileStore) -> None:
    """Records written come back equal, every field included (GTID positions, baselines, operations)."""
    recs = records(shard1=SyncState.ASYNC)
    recs["shard1"] = recs["shard1"].model_copy(
        update={
            "recovery": Recovery(target=pos(TOPO, "shard1", 7), baseline=baseline(TOPO, "shard1-m", no_tx=2)),
            "promotion_point": GtidPos.parse("0-1-5,1-2-9"),
            "op": failover_op("shard1").model_copy(
                update={"promotion_point": pos(TOPO, "shard1", 6), "steps_done": ("fence", "stop_receiving")}
            ),
            "out": ("shard1-ms",),
        }
    )
    store.write_records(recs.values())
    assert store.exists()
    assert store.load_records() == recs
    assert FileStore(store.dir).load_records() == recs


def test_a_rewrite_replaces_the_record(store: FileStore) -> None:
    """Writing a shard's record again replaces it; other shards are untouched."""
    store.write_records(records().values())
    newer = record(TOPO, "shard1").model_copy(update={"epoch": 2, "primary": "shard1-sx"})
    store.write_records([newer])
    loaded = store.load_records()
    assert loaded["shard1"] == newer
    assert loaded["meta"] == records()["meta"]


def test_atomic_writes_leave_no_temporary_files(store: FileStore) -> None:
    """After records, controls and the tick view are written, only the final files remain."""
    store.write_records(records().values())
    store.write_records(records().values())
    store.write_control(Control(paused=True))
    store.write_tick({"tick": 1})
    assert files(store.dir) == ["control.json", "records.log", "tick.json"]


def test_writing_nothing_creates_nothing_but_the_directory(store: FileStore) -> None:
    """An empty batch of records writes no file."""
    store.write_records([])
    assert files(store.dir) == []


def test_a_corrupt_record_line_is_refused_not_guessed(store: FileStore) -> None:
    """A record line that does not parse, followed by others, raises StoreCorrupt with a hint."""
    store.write_records(records().values())
    log = store.dir / "records.log"
    lines = log.read_text().splitlines()
    log.write_text("\n".join([lines[0], '{"seq": 2, "record": {"shard": "shard1", "epoch": ', *lines[2:]]) + "\n")
    with pytest.raises(StoreCorrupt) as e:
        FileStore(store.dir).load_records()
    assert "records.log line 2" in str(e.value) and e.value.hint


def test_a_store_written_per_shard_file_is_read(store: FileStore) -> None:
    """A store written before records.log (one shards/<shard>.json each) is read, then written on."""
    store.shards_dir.mkdir(parents=True)
    for r in records().values():
        (store.shards_dir / f"{r.shard}.json").write_text(r.model_dump_json())
    assert store.load_records() == records()
    newer = record(TOPO, "shard2").model_copy(update={"epoch": 3})
    store.write_records([newer])
    assert FileStore(store.dir).load_records() == {**records(), "shard2": newer}


def test_a_leftover_temporary_file_is_ignored(store: FileStore) -> None:
    """A temporary file left by a crash mid-write is not read as a record."""
    store.write_records(records().values())
    (store.dir / ".records.json.999.tmp").write_text("torn")
    assert FileStore(store.dir).load_records() == records()


# -- journal ----------------------------------------------------------------------------------------


def test_journal_append_and_read_in_order(store: FileStore) -> None:
    """Appended events come back in order, with their fields, event name and timestamp."""
    store.append("daemon_start", pid=42)
    store.append("record", shard="shard1", sync=SyncState.IDC_SAFE, ackers=("shard1-sx",))
    events = list(store.journal())
    assert [e["event"] for e in events] == ["daemon_start", "record"]
    assert events[0]["pid"] == 42
    assert events[1]["sync"] == "IDC_SAFE" and events[1]["ackers"] == ["shard1-sx"]
    assert all(isinstance(e["ts"], float) for e in events)


def test_journal_survives_a_new_store_object(store: FileStore) -> None:
    """The journal is a file: another FileStore on the same directory reads and extends it."""
    store.append("a")
    store.release()
    other = FileStore(store.dir)
    other.append("b")
    other.release()
    assert [e["event"] for e in FileStore(store.dir).journal()] == ["a", "b"]


def test_a_torn_last_line_is_skipped(store: FileStore) -> None:
    """A crash mid-append leaves a partial last line; everything before it still reads."""
    store.append("a")
    store.append("b")
    store.release()
    with open(store.dir / "journal.jsonl", "ab") as f:
        f.write(b'{"ts": 1.0, "event": "to')
    assert [e["event"] for e in store.journal()] == ["a", "b"]


def test_the_first_event_after_a_torn_line_is_kept(store: FileStore) -> None:
    """An event appended (and fsynced) after a crash left a torn line is read back."""
    store.append("a")
    store.release()
    with open(store.dir / "journal.jsonl", "ab") as f:
        f.write(b'{"ts": 1.0, "event": "to')
    store.append("after_crash")
    assert [e["event"] for e in store.journal()] == ["a", "after_crash"]


# -- controls and tick ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "control",
    [
        Control(),
        Control(paused=True, reason="drill", updated_wall=5.0),
        Control(paused_shards=("shard1", "meta")),
    ],
    ids=["default", "paused", "some-shards"],
)
def test_control_round_trip(store: FileStore, control: Control) -> None:
    """Operator controls written are read back equal."""
    store.write_control(control)
    assert store.load_control() == control


def test_a_corrupt_control_file_is_refused(store: FileStore) -> None:
    """A control file that does not parse raises StoreCorrupt rather than silently resuming."""
    store.write_control(Control(paused=True))
    (store.dir / "control.json").write_text("{paused")
    with pytest.raises(StoreCorrupt):
        store.load_control()


def test_tick_view_round_trip_and_unreadable_tick(store: FileStore) -> None:
    """The last tick's view reads back; an unreadable one reads as None (it is for status only)."""
    store.write_tick({"ticks": 3, "when": 1.5})
    assert store.read_tick() == {"ticks": 3, "when": 1.5}
    (store.dir / "tick.json").write_text("{")
    assert store.read_tick() is None


# -- the daemon lock --------------------------------------------------------------------------------


def test_a_second_store_in_the_same_process_is_locked_out(store: FileStore) -> None:
    """flock is per open file description: a second FileStore on the same directory cannot acquire,
    and the error names the holder's pid."""
    store.acquire()
    with pytest.raises(StoreLocked) as e:
        FileStore(store.dir).acquire()
    assert f"pid {os.getpid()}" in str(e.value)
    assert e.value.hint


def test_release_lets_another_store_acquire(store: FileStore) -> None:
    """Once released, the lock can be taken by another store, which records its own pid."""
    store.acquire()
    store.release()
    other = FileStore(store.dir)
    other.acquire()
    try:
        assert (store.dir / "daemon.lock").read_text() == str(os.getpid())
    finally:
        other.release()


HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from idc_ha.coord.store import FileStore
    s = FileStore(Path(sys.argv[1]))
    s.acquire()
    print("locked", flush=True)
    sys.stdin.readline()
    s.release()
""")


def test_a_store_held_by_another_process_is_locked_out(tmp_path: Path) -> None:
    """While another process holds the store, acquire raises StoreLocked naming that process's pid;
    once it is gone, the lock is free."""
    state = tmp_path / "state"
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLocked) as e:
            FileStore(state).acquire()
        assert f"pid {holder.pid}" in str(e.value)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    mine = FileStore(state)
    mine.acquire()
    mine.release()
