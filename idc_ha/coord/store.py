"""The controller's store: journal, per-shard records, operator controls, last tick's view.

``Store`` is the small interface the daemon and CLI use; ``FileStore`` keeps it in ``state_dir``
for a single controller, and an etcd store will implement the same interface for several.

Durability, in the file store:

* records: an append-only log folded now and then into a snapshot (``coord.recordlog``); a
  batch of any number of records costs one fsync (``write_records(durable=True)``, or
  ``durable=False`` and a later ``sync()``, which is how the daemon group-commits concurrent
  writers off the event loop: ``coord.book``). A store written by an older version
  (``shards/<name>.json``) is read as the first snapshot;
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

from idc_ha.coord.recordlog import RecordLog, atomic_write, fsync_dir
from idc_ha.errors import StoreCorrupt, StoreLocked
from idc_ha.model.ids import ShardName
from idc_ha.model.state import Control, ShardRecord


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


class FileStore:
    """The store in a local directory, for one controller."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.shards_dir = state_dir / "shards"  # read only: stores written before records.log
        self._lock_fd: int | None = None
        self._journal: Any = None
        self._lock = threading.Lock()  # journal appends happen on the loop thread, sync() in a worker
        self._records = RecordLog(state_dir, self.shards_dir)
        self._made = False

    def exists(self) -> bool:
        return self._records.exists()

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
            if self._journal is not None:
                self._journal.close()
                self._journal = None
        self._records.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- records
    def load_records(self) -> dict[ShardName, ShardRecord]:
        return self._records.load()

    def write_records(self, records: Iterable[ShardRecord], *, durable: bool = True) -> None:
        """Append the records to the log; with ``durable``, fsync before returning (one fsync for
        the whole batch). Without, they are durable after the next ``sync()``. A failed write
        raises and changes nothing."""
        recs = list(records)
        self._ensure()
        if not recs:
            return
        self._records.append(recs)
        if durable:
            self.sync()

    def sync(self) -> None:
        """Make every record and journal line written so far durable (one fsync each), then fold
        the log into a new snapshot once it is long. Blocking, so the daemon calls it off the loop;
        the fsyncs run on duplicated descriptors outside the lock, so appends never wait on them."""
        with self._lock:
            if self._journal is not None:
                self._journal.flush()
            fds = [self._records.dup()]
            if self._journal is not None:
                fds.append(os.dup(self._journal.fileno()))
        try:
            for fd in fds:
                if fd is not None:
                    os.fsync(fd)
        finally:
            for fd in fds:
                if fd is not None:
                    os.close(fd)
        self._records.maybe_fold()

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
        atomic_write(self.dir / "control.json", control.model_dump_json(indent=1).encode(), durable=True)
        fsync_dir(self.dir)

    # -- last tick
    def write_tick(self, view: dict[str, Any]) -> None:
        self._ensure()
        atomic_write(self.dir / "tick.json", json.dumps(view, default=str).encode(), durable=False)

    def read_tick(self) -> dict[str, Any] | None:
        path = self.dir / "tick.json"
        try:
            data: dict[str, Any] = json.loads(path.read_bytes())
            return data
        except (OSError, ValueError):
            return None
