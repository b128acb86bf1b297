"""The controller's store: journal, per-shard records, operator controls, last tick's view.

``Store`` is the small interface the daemon and CLI use; ``FileStore`` keeps it in ``state_dir``
for a single controller, and an etcd store will implement the same interface for several.

Durability, in the file store:

* journal: one JSON line per event, appended, flushed and fsynced before the call returns;
* records (``shards/<name>.json``) and controls: written to a temporary file, fsynced, renamed
  over the old one, then the directory is fsynced, so a crash leaves the old or the new record,
  never a torn one;
* a lock (``flock`` on ``daemon.lock``) held for the daemon's whole life, so two daemons never act
  on one store; the kernel drops it if the process dies;
* the last tick's view (``tick.json``): atomic but not fsynced; it is for ``status``, not safety.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from idc_ha.errors import StoreCorrupt, StoreLocked
from idc_ha.model.ids import ShardName
from idc_ha.model.state import Control, ShardRecord


class Store(Protocol):
    def acquire(self) -> None: ...
    def release(self) -> None: ...
    def load_records(self) -> dict[ShardName, ShardRecord]: ...
    def write_records(self, records: Iterable[ShardRecord]) -> None: ...
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
        self.shards_dir = state_dir / "shards"
        self._lock_fd: int | None = None
        self._journal: Any = None

    def exists(self) -> bool:
        return self.shards_dir.is_dir()

    def _ensure(self) -> None:
        self.shards_dir.mkdir(parents=True, exist_ok=True)

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
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- records
    def load_records(self) -> dict[ShardName, ShardRecord]:
        out: dict[ShardName, ShardRecord] = {}
        if not self.shards_dir.is_dir():
            return out
        for f in sorted(self.shards_dir.glob("*.json")):
            try:
                rec = ShardRecord.model_validate_json(f.read_bytes())
            except (ValidationError, OSError) as e:
                raise StoreCorrupt(
                    f"cannot read the shard record {f}: {e}",
                    hint="restore it from the journal or a backup; the controller will not guess a layout",
                ) from e
            out[rec.shard] = rec
        return out

    def write_records(self, records: Iterable[ShardRecord]) -> None:
        """Write records durably: each file atomically, then one fsync of the directory."""
        self._ensure()
        wrote = False
        for rec in records:
            _atomic_write(self.shards_dir / f"{rec.shard}.json", rec.model_dump_json(indent=1).encode(), durable=True)
            wrote = True
        if wrote:
            _fsync_dir(self.shards_dir)

    # -- journal
    def append(self, event: str, **fields: Any) -> None:
        """Append one event to the journal and fsync it before returning."""
        self._ensure()
        if self._journal is None:
            path = self.dir / "journal.jsonl"
            self._journal = open(path, "ab")
            if self._journal.tell() > 0:
                with open(path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        # A torn last line from a crash: end it, so the next event stands alone.
                        self._journal.write(b"\n")
        line = json.dumps({"ts": time.time(), "event": event, **fields}, default=str, separators=(",", ":"))
        self._journal.write(line.encode() + b"\n")
        self._journal.flush()
        os.fsync(self._journal.fileno())

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
