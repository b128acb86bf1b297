"""The in-memory view of the shard records, written through to the store.

The tick and the executor share one ``RecordBook``. ``put`` writes durably first and only then
updates memory, so nothing in the process ever acts on a record the store does not hold.
"""

from __future__ import annotations

from idc_ha.coord.store import Store
from idc_ha.model.ids import ShardName
from idc_ha.model.state import ShardRecord


class RecordBook:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._recs: dict[ShardName, ShardRecord] = store.load_records()

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
