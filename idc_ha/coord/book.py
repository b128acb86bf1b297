"""The in-memory view of the shard records, written through to the store.

The tick, the executor and the Fencer share one ``RecordBook``. Two ways of writing:

* ``put``: durable before memory changes and before it returns, one fsync on the calling thread
  (the CLI, tests);
* ``await commit``: the records are written to the OS and to memory at once (so the next
  read-modify-write of the same shard, by another task, starts from them: no lost update), then
  the caller waits for the next *group* fsync, which runs in a worker thread and covers every
  writer that arrived meanwhile. A writer acts on its record only after that. A process crash
  loses nothing written (it is in the OS already); an OS crash in the millisecond before the fsync
  could, and then nothing was acted on. A thousand failovers writing their records at the same
  moment cost a handful of fsyncs, and the event loop never blocks on the disk.

``await sync()`` makes the journal durable the same way (the daemon calls it every tick).

The fsyncs run on a thread of their own (not asyncio's default pool, which a hung DNS lookup may
fill). If one fails, what reached the disk is unknown: every waiting writer gets ``StoreFailed``,
and so does every later write, so nothing acts on a record that may not be durable; the daemon
stops, and the next one reads what the disk holds.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from idc_ha.coord.store import Store
from idc_ha.errors import StoreFailed
from idc_ha.model.ids import ShardName
from idc_ha.model.state import ShardRecord


class RecordBook:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._recs: dict[ShardName, ShardRecord] = store.load_records()
        self._next: asyncio.Future[None] | None = None  # the group fsync the next writers wait for
        self._syncing = False
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="idc-ha-fsync")
        self.failed: StoreFailed | None = None
        self.version = 0  # counts writes; ``written_since`` tells which shards changed after a point
        self._written: dict[ShardName, int] = {}

    def get(self, shard: ShardName) -> ShardRecord | None:
        return self._recs.get(shard)

    def all(self) -> dict[ShardName, ShardRecord]:
        return dict(self._recs)

    def written_since(self, version: int) -> frozenset[ShardName]:
        """The shards whose record changed in what the sync state, the proof, the rules and drift
        judge observations against after ``self.version`` was ``version``: the tick notes the
        version before its probe round, and an observation from that round may predate these
        records (an operation's step committed while the round ran). A write of only
        ``fence_pending``, ``reason`` or ``updated_wall`` (the Fencer's, on a shard with no
        operation) does not count: marking it would make the tick skip that shard's evidence, and
        a shard waiting for its failover must not lose a round of its watch (review 6, F1)."""
        return frozenset(s for s, v in self._written.items() if v > version)

    def _remember(self, records: tuple[ShardRecord, ...]) -> None:
        self.version += 1
        for r in records:
            old = self._recs.get(r.shard)
            self._recs[r.shard] = r
            if old is None or _judged(old) != _judged(r):
                self._written[r.shard] = self.version

    def _check(self) -> None:
        if self.failed is not None:
            raise self.failed

    def put(self, *records: ShardRecord) -> None:
        if not records:
            return
        self._check()
        self._store.write_records(records)
        self._remember(records)

    async def commit(self, *records: ShardRecord) -> None:
        """Durable on return; the fsync is shared with concurrent writers (see the docstring)."""
        self._check()
        if records:
            self._store.write_records(records, durable=False)
            self._remember(records)
        await self.sync()

    async def sync(self) -> None:
        """Until everything written so far (records and journal) is durable."""
        self._check()
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
            if not self._syncing:
                self._task = loop.create_task(self._run(), name="store-sync")
        await asyncio.shield(self._next)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self._syncing = True
        try:
            while self._next is not None:
                fut, self._next = self._next, None
                try:
                    await loop.run_in_executor(self._pool, self._store.sync)
                except Exception as e:
                    self.failed = StoreFailed(
                        f"the store could not make a write durable: {e}",
                        hint="check the disk of state_dir (space, errors in dmesg); the daemon stops, and "
                        "its restart reads what the disk holds",
                    )
                    fut.set_exception(self.failed)
                    if self._next is not None:
                        self._next.set_exception(self.failed)
                        self._next = None
                else:
                    fut.set_result(None)
        finally:
            self._syncing = False


_NOT_JUDGED = frozenset({"fence_pending", "reason", "updated_wall"})
_JUDGED = tuple(f for f in ShardRecord.model_fields if f not in _NOT_JUDGED)


def _judged(r: ShardRecord) -> tuple[object, ...]:
    return tuple(getattr(r, f) for f in _JUDGED)
