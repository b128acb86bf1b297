"""The controller's store: journal, per-shard records, operator controls, last tick's view.

``Store`` is the small interface the daemon and CLI use; ``FileStore`` keeps it in ``state_dir``
for a single controller, and an etcd store will implement the same interface for several.

Durability, in the file store:

* records: every version is a line of ``records.log`` (with a sequence number); a batch of any
  number of records costs one fsync (``write_records(durable=True)``, or ``durable=False`` and a
  later ``sync()``, which is how the daemon group-commits concurrent writers off the event loop:
  ``coord.book``). ``records.json`` is a snapshot (atomic: temporary file, fsync, rename, fsync of
  the directory) holding the sequence number it covers; reading takes the snapshot and replays
  the newer lines, skipping a torn last line. The log is folded into a new snapshot once it holds
  ``COMPACT_LINES`` lines. A store written by an older version (``shards/<name>.json``) is read as
  the first snapshot;
* journal: one JSON line per event, written to the OS at once and fsynced by the next ``sync()``
  (the daemon syncs every tick and whenever a record must be durable): an audit trail, whose last
  lines an OS crash may lose, while a process crash loses none;
* controls: written atomically like the snapshot;
* a lock (``flock`` on ``daemon.lock``) held for the daemon's whole life, so two daemons never act
  on one store; the kernel drops it if the process dies;
* the last tick's view (``tick.json``): atomic but not fsynced; it is for ``status``, not safety.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from idc_ha.errors import StoreCorrupt, StoreLocked
from idc_ha.model.ids import ShardName
from idc_ha.model.state import Control, ShardRecord

COMPACT_LINES = 5000


class Store(Protocol):
    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def load_records(self) -> dict[ShardName, ShardRecord]: ...
    def write_records(self, records: Iterable[ShardRecord], *, durable: bool = True) -> None: ...
    def sync(self) -> None: ...
    def append(self, event: str, **fields: Any) -> None: ...
    def journal(self) -> Iterator[dict[str, Any]]: ...
    def load_control(self) -> Control: ...
    def write_control(self, control: Control) -> None: ...
    def write_tick(self, view: dict[str, Any]) -> None: ...
    def read_tick(self) -> dict[str, Any] | None: ...


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes, *, durable: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class FileStore:
    """The store in a local directory, for one controller."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.shards_dir = state_dir / "shards"  # read only: stores written before records.log
        self._lock_fd: int | None = None
        self._journal: Any = None
        self._log: Any = None
        self._lock = threading.Lock()  # appends happen on the loop thread, sync() in a worker
        self._seq = 0
        self._logged = 0  # lines in records.log since the snapshot
        self._latest: dict[ShardName, ShardRecord] | None = None  # what the next snapshot holds
        self._made = False

    def exists(self) -> bool:
        return (self.dir / "records.json").exists() or (self.dir / "records.log").exists() or self.shards_dir.is_dir()

    def _ensure(self) -> None:
        if not self._made:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._made = True

    # -- lock
    def acquire(self) -> None:
        """Take the daemon lock for this process's life. Raises StoreLocked if another holds it."""
        self._ensure()
        fd = os.open(self.dir / "daemon.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            raise StoreLocked(
                f"another idc-ha daemon (pid {holder or '?'}) holds the store in {self.dir}",
                hint="stop it first; two daemons must never act on one store",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        self.sync()
        with self._lock:
            for attr in ("_journal", "_log"):
                f = getattr(self, attr)
                if f is not None:
                    f.close()
                    setattr(self, attr, None)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- records
    def _read(self) -> tuple[int, dict[ShardName, ShardRecord], int]:
        """(sequence covered, records, lines replayed) from the snapshot and the log."""
        out: dict[ShardName, ShardRecord] = {}
        upto = 0
        snap = self.dir / "records.json"
        try:
            if snap.exists():
                data = json.loads(snap.read_bytes())
                upto = int(data["seq"])
                for raw in data["records"]:
                    rec = ShardRecord.model_validate(raw)
                    out[rec.shard] = rec
            elif self.shards_dir.is_dir():
                for f in sorted(self.shards_dir.glob("*.json")):
                    rec = ShardRecord.model_validate_json(f.read_bytes())
                    out[rec.shard] = rec
        except (ValidationError, OSError, ValueError, KeyError, TypeError) as e:
            raise StoreCorrupt(
                f"cannot read the shard records in {self.dir}: {e}",
                hint="restore state_dir from a backup; the controller will not guess a layout",
            ) from e
        seq, replayed = upto, 0
        log = self.dir / "records.log"
        if log.exists():
            lines = log.read_bytes().split(b"\n")
            for k, line in enumerate(lines):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    rec = ShardRecord.model_validate(entry["record"])
                    n = int(entry["seq"])
                except (ValueError, ValidationError, KeyError, TypeError) as e:
                    if k >= len(lines) - 2:
                        continue  # a torn last line after a crash: everything before it stands
                    raise StoreCorrupt(
                        f"records.log line {k + 1} in {self.dir} is unreadable: {e}",
                        hint="restore state_dir from a backup; the controller will not guess a layout",
                    ) from e
                if n > upto:
                    out[rec.shard] = rec
                    replayed += 1
                seq = max(seq, n)
        return seq, out, replayed

    def load_records(self) -> dict[ShardName, ShardRecord]:
        seq, out, replayed = self._read()
        with self._lock:
            self._seq, self._logged, self._latest = seq, replayed, dict(out)
        return out

    def write_records(self, records: Iterable[ShardRecord], *, durable: bool = True) -> None:
        """Append the records to the log; with ``durable``, fsync before returning (one fsync for
        the whole batch). Without, they are durable after the next ``sync()``."""
        recs = list(records)
        if not recs:
            self._ensure()
            return
        with self._lock:
            if self._latest is None:
                self._seq, self._latest, self._logged = self._read()
            log = self._open_log()
            lines = []
            for rec in recs:
                self._seq += 1
                lines.append(
                    json.dumps({"seq": self._seq, "record": rec.model_dump(mode="json")}, separators=(",", ":"))
                )
                self._latest[rec.shard] = rec
            log.write(("\n".join(lines) + "\n").encode())
            log.flush()
            self._logged += len(recs)
        if durable:
            self.sync()

    def _open_log(self) -> Any:
        if self._log is None:
            self._ensure()
            path = self.dir / "records.log"
            if path.exists() and path.stat().st_size > 0:
                data = path.read_bytes()
                if not data.endswith(b"\n"):
                    # A torn last line from a crash mid-append: drop it (it was never durable).
                    with open(path, "r+b") as f:
                        f.truncate(data.rfind(b"\n") + 1)
                        os.fsync(f.fileno())
            self._log = open(path, "ab")
        return self._log

    def sync(self) -> None:
        """Make every record and journal line written so far durable (one fsync each); fold the
        log into a new snapshot once it is long. Blocking: the daemon calls it off the loop."""
        with self._lock:
            for f in (self._log, self._journal):
                if f is not None:
                    f.flush()
                    os.fsync(f.fileno())
            if self._logged >= COMPACT_LINES and self._latest is not None:
                self._compact()

    def _compact(self) -> None:
        assert self._latest is not None
        data = {"seq": self._seq, "records": [r.model_dump(mode="json") for r in self._latest.values()]}
        _atomic_write(self.dir / "records.json", json.dumps(data, separators=(",", ":")).encode(), durable=True)
        _fsync_dir(self.dir)
        if self._log is not None:
            self._log.close()
            self._log = None
        with open(self.dir / "records.log", "r+b") as f:
            f.truncate(0)
            os.fsync(f.fileno())
        self._logged = 0

    # -- journal
    def append(self, event: str, **fields: Any) -> None:
        """Append one event to the journal: written to the OS now, durable after the next ``sync()``."""
        line = json.dumps({"ts": time.time(), "event": event, **fields}, default=str, separators=(",", ":"))
        with self._lock:
            if self._journal is None:
                self._ensure()
                path = self.dir / "journal.jsonl"
                self._journal = open(path, "ab")
                if self._journal.tell() > 0:
                    with open(path, "rb") as f:
                        f.seek(-1, os.SEEK_END)
                        if f.read(1) != b"\n":
                            # A torn last line from a crash: end it, so the next event stands alone.
                            self._journal.write(b"\n")
            self._journal.write(line.encode() + b"\n")
            self._journal.flush()

    def journal(self) -> Iterator[dict[str, Any]]:
        path = self.dir / "journal.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash: everything before it stands

    # -- operator controls
    def load_control(self) -> Control:
        path = self.dir / "control.json"
        if not path.exists():
            return Control()
        try:
            return Control.model_validate_json(path.read_bytes())
        except ValidationError as e:
            raise StoreCorrupt(f"cannot read {path}: {e}", hint="fix or delete the file, then resume") from e

    def write_control(self, control: Control) -> None:
        self._ensure()
        _atomic_write(self.dir / "control.json", control.model_dump_json(indent=1).encode(), durable=True)
        _fsync_dir(self.dir)

    # -- last tick
    def write_tick(self, view: dict[str, Any]) -> None:
        self._ensure()
        _atomic_write(self.dir / "tick.json", json.dumps(view, default=str).encode(), durable=False)

    def read_tick(self) -> dict[str, Any] | None:
        path = self.dir / "tick.json"
        try:
            data: dict[str, Any] = json.loads(path.read_bytes())
            return data
        except (OSError, ValueError):
            return None
