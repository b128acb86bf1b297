"""The shard records on disk: an append-only log folded now and then into a snapshot.

Files in the store's directory:

* ``records.log``: the current log. Its first line is a header ``{"start": N}`` (the sequence
  number of its first record), then one ``{"seq": n, "record": {...}}`` line per record version,
  numbered without gaps. A log written by an older version has no header;
* ``records.log.<start>``: logs rotated out by a fold, deleted once a snapshot covers them;
* ``records.json``: the snapshot, ``{"seq": N, "records": [...]}``, written atomically.

Writing (one process: the daemon holds the store's lock):

* ``append`` writes a batch with one ``write`` on an unbuffered descriptor. If it fails (a full
  disk, EIO) the file is cut back to where it was and nothing in memory changes: a record that
  was never written can never reach a snapshot later;
* ``sync`` fsyncs a duplicate of the descriptor *outside* the lock, so appends from the event
  loop never wait behind the disk;
* a fold rotates the log under the lock (rename, new log with its header: no I/O wait), then,
  outside it, fsyncs the rotated log and the directory, writes the snapshot and deletes the
  rotated logs it covers. A crash at any point leaves logs and a snapshot that together hold
  every record.

Reading (any process, no lock: ``idc-ha status`` while the daemon folds): the logs first, then
the snapshot; the lines newer than the snapshot must continue it without a gap, and a log whose
header starts past the snapshot shows a fold happened in between. Either way the reader reads
again; a torn last line after a crash is skipped.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import structlog
from pydantic import ValidationError

from idc_ha.errors import StoreCorrupt
from idc_ha.model.ids import ShardName
from idc_ha.model.state import ShardRecord

log = structlog.get_logger("idc_ha.store")

COMPACT_LINES = 5000
READ_ATTEMPTS = 50
HINT = "restore state_dir from a backup; the controller will not guess a layout"

Records = dict[ShardName, ShardRecord]


def fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, durable: bool) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _line(seq: int, rec: ShardRecord) -> bytes:
    return json.dumps({"seq": seq, "record": rec.model_dump(mode="json")}, separators=(",", ":")).encode()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Log:
    """One log file as read: the sequence number it starts at (its header's; for an older log
    without one, the rotated file's suffix or its first entry; None for an empty one) and its
    entries."""

    def __init__(self, path: Path, data: bytes, start: int | None = None) -> None:
        self.start = start
        self.entries: list[tuple[int, ShardRecord]] = []
        lines = data.split(b"\n")
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if k == 0 and "start" in entry:
                    self.start = int(entry["start"])
                    continue
                self.entries.append((int(entry["seq"]), ShardRecord.model_validate(entry["record"])))
            except (ValueError, ValidationError, KeyError, TypeError) as e:
                if k >= len(lines) - 2:
                    continue  # a torn last line after a crash: everything before it stands
                raise StoreCorrupt(f"{path.name} line {k + 1} in {path.parent} is unreadable: {e}", hint=HINT) from e
        if self.start is None and self.entries:
            self.start = self.entries[0][0]


class RecordLog:
    def __init__(self, directory: Path, legacy_dir: Path) -> None:
        self.dir = directory
        self.legacy_dir = legacy_dir  # shards/<name>.json: read only, as the first snapshot
        self.path = directory / "records.log"
        self.snapshot = directory / "records.json"
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._start = 1  # the sequence number the current log starts at (names it when rotated)
        self._seq = 0
        self._logged = 0  # record lines since the snapshot
        self._latest: Records | None = None  # what the next snapshot holds
        self._folding = False

    def exists(self) -> bool:
        return self.snapshot.exists() or self.path.exists() or self.legacy_dir.is_dir() or bool(self._rotated())

    def _rotated(self) -> list[tuple[int, Path]]:
        out: list[tuple[int, Path]] = []
        for p in self.dir.glob("records.log.*"):
            suffix = p.name.rsplit(".", 1)[1]
            if suffix.isdigit():
                out.append((int(suffix), p))
        return sorted(out)

    # -- reading
    def read(self) -> tuple[int, Records, int]:
        """(sequence covered, records, lines newer than the snapshot), consistent even while the
        writer folds (see the module docstring)."""
        why = ""
        for attempt in range(READ_ATTEMPTS):
            logs = []
            for start, p in (*self._rotated(), (None, self.path)):
                try:
                    logs.append(_Log(p, p.read_bytes(), start))
                except FileNotFoundError:
                    continue  # deleted by a fold: a snapshot covering it is in place already
            upto, out = self._read_snapshot()
            newer: dict[int, ShardRecord] = {}
            seq = upto
            for log in logs:
                for n, rec in log.entries:
                    seq = max(seq, n)
                    if n > upto:
                        newer[n] = rec
            starts = [log.start for log in logs if log.start is not None]
            gap = next((n for n in range(upto + 1, upto + len(newer) + 1) if n not in newer), None)
            if gap is None and starts and min(starts) > upto + 1:
                gap = upto + 1
            if gap is None:
                for n in sorted(newer):
                    out[newer[n].shard] = newer[n]
                return seq, out, len(newer)
            why = f"record {gap} is in neither the snapshot (up to {upto}) nor the logs"
            time.sleep(min(0.001 * 2**attempt, 0.05))  # a fold ran while we read: read again
        raise StoreCorrupt(f"the shard records in {self.dir} have a gap: {why}", hint=HINT)

    def _read_snapshot(self) -> tuple[int, Records]:
        out: Records = {}
        try:
            if self.snapshot.exists():
                data = json.loads(self.snapshot.read_bytes())
                for raw in data["records"]:
                    rec = ShardRecord.model_validate(raw)
                    out[rec.shard] = rec
                return int(data["seq"]), out
            if self.legacy_dir.is_dir():
                for f in sorted(self.legacy_dir.glob("*.json")):
                    rec = ShardRecord.model_validate_json(f.read_bytes())
                    out[rec.shard] = rec
        except (ValidationError, OSError, ValueError, KeyError, TypeError) as e:
            raise StoreCorrupt(f"cannot read the shard records in {self.dir}: {e}", hint=HINT) from e
        return 0, out

    def load(self) -> Records:
        seq, out, replayed = self.read()
        with self._lock:
            self._seq, self._logged, self._latest = seq, replayed, dict(out)
        return out

    # -- writing
    def append(self, recs: list[ShardRecord]) -> None:
        """Write the records to the OS (durable after ``sync``). On failure the log is cut back
        and nothing changes, in the file or in memory."""
        with self._lock:
            if self._latest is None:
                self._seq, self._latest, self._logged = self.read()
            fd = self._open()
            data = b"".join(_line(self._seq + k + 1, r) + b"\n" for k, r in enumerate(recs))
            end = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, data)
            except OSError:
                try:
                    os.ftruncate(fd, end)
                except OSError:
                    self._close()  # reopened (and a torn tail cut) by the next append
                raise
            self._seq += len(recs)
            for r in recs:
                self._latest[r.shard] = r
            self._logged += len(recs)

    def _open(self) -> int:
        if self._fd is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self.path.exists() and self.path.stat().st_size > 0:
                data = self.path.read_bytes()
                if not data.endswith(b"\n"):
                    # A torn last line from a crash mid-append: drop it (it was never durable).
                    with open(self.path, "r+b") as f:
                        f.truncate(data.rfind(b"\n") + 1)
                        os.fsync(f.fileno())
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                self._start = _Log(self.path, self.path.read_bytes()).start or self._seq + 1
            else:
                self._fd = self._create(self._seq + 1)
        return self._fd

    def _create(self, start: int) -> int:
        self._start = start
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        _write_all(fd, json.dumps({"start": start}).encode() + b"\n")
        return fd

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close()

    def dup(self) -> int | None:
        """A duplicate of the log's descriptor, to fsync outside the lock (the caller closes it)."""
        with self._lock:
            return None if self._fd is None else os.dup(self._fd)

    def maybe_fold(self) -> None:
        """Fold the log into a new snapshot once it is long (blocking: called by ``sync``). Raises
        only if the rotated log cannot be made durable; a fold that fails otherwise is logged
        and tried again later (the logs still hold every record)."""
        with self._lock:
            if self._folding or self._latest is None or self._logged < COMPACT_LINES or self._fd is None:
                return
            old_fd, old_start = self._fd, self._start
            rotated = self.dir / f"records.log.{old_start}"  # unique: logs hold disjoint ranges
            try:
                os.rename(self.path, rotated)
                try:
                    self._fd = self._create(self._seq + 1)
                except OSError:
                    os.rename(rotated, self.path)  # keep appending to the log as it was
                    self._fd, self._start = old_fd, old_start
                    raise
            except OSError as e:
                log.warning("records log not folded; trying again later", error=str(e))
                self._logged = COMPACT_LINES // 2  # not at every sync
                return
            self._folding = True
            seq, latest = self._seq, list(self._latest.values())
            self._logged = 0
        try:
            os.fsync(old_fd)  # lines appended since the last fsync are in the rotated log only
            os.close(old_fd)
            self._snapshot(seq, latest)
        finally:
            with self._lock:
                self._folding = False

    def _snapshot(self, seq: int, latest: list[ShardRecord]) -> None:
        try:
            fsync_dir(self.dir)  # the rename and the new log
            data = {"seq": seq, "records": [r.model_dump(mode="json") for r in latest]}
            atomic_write(self.snapshot, json.dumps(data, separators=(",", ":")).encode(), durable=True)
            fsync_dir(self.dir)
            for start, p in self._rotated():
                if start <= seq:
                    p.unlink(missing_ok=True)
            fsync_dir(self.dir)
        except OSError as e:  # the logs still hold every record; the next fold writes a snapshot
            log.warning("records snapshot not written; the logs keep every record", error=str(e))
