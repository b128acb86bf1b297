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
"""

from __future__ import annotations

import asyncio

from idc_ha.coord.store import Store
from idc_ha.model.ids import ShardName
from idc_ha.model.state import ShardRecord


class RecordBook:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._recs: dict[ShardName, ShardRecord] = store.load_records()
        self._next: asyncio.Future[None] | None = None  # the group fsync the next writers wait for
        self._syncing = False
        self._task: asyncio.Task[None] | None = None

    def get(self, shard: ShardName) -> ShardRecord | None:
        return self._recs.get(shard)

    def all(self) -> dict[ShardName, ShardRecord]:
        return dict(self._recs)

    def put(self, *records: ShardRecord) -> None:
        if not records:
            return
        self._store.write_records(records)
        for r in records:
            self._recs[r.shard] = r

    async def commit(self, *records: ShardRecord) -> None:
        """Durable on return; the fsync is shared with concurrent writers (see the docstring)."""
        if records:
            self._store.write_records(records, durable=False)
            for r in records:
                self._recs[r.shard] = r
        await self.sync()

    async def sync(self) -> None:
        """Until everything written so far (records and journal) is durable."""
        loop = asyncio.get_running_loop()
        if self._next is None:
            self._next = loop.create_future()
            if not self._syncing:
                self._task = loop.create_task(self._run(), name="store-sync")
        await asyncio.shield(self._next)

    async def _run(self) -> None:
        self._syncing = True
        try:
            while self._next is not None:
                fut, self._next = self._next, None
                try:
                    await asyncio.to_thread(self._store.sync)
                except Exception as e:
                    fut.set_exception(e)
                else:
                    fut.set_result(None)
        finally:
            self._syncing = False
