"""RecordBook: group commit off the event loop, and a failed fsync that stops everything."""

from __future__ import annotations

import asyncio
import errno
import os
import threading
import time
from pathlib import Path

import pytest

from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import FileStore
from idc_ha.errors import StoreFailed
from idc_ha.observe.addresses import AddressBook

from .builders import TOPO, record, records


def test_a_failed_fsync_fails_every_writer_from_then_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an fsync error nobody knows what reached the disk: the waiting writer and every later
    one get StoreFailed (with a hint), so nothing acts on a record that may not be durable."""
    store = FileStore(tmp_path / "state")
    store.write_records(records().values())
    real = os.fsync

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    async def main() -> None:
        book = RecordBook(store)
        monkeypatch.setattr(os, "fsync", eio)
        with pytest.raises(StoreFailed) as e:
            await asyncio.wait_for(book.commit(record(TOPO, "shard1").model_copy(update={"epoch": 2})), 5.0)
        assert e.value.hint
        monkeypatch.setattr(os, "fsync", real)  # even once the disk answers again
        with pytest.raises(StoreFailed):
            await asyncio.wait_for(book.commit(record(TOPO, "shard2")), 5.0)
        with pytest.raises(StoreFailed):
            book.put(record(TOPO, "meta"))

    asyncio.run(main())


def test_a_hung_dns_lookup_does_not_hold_up_the_group_fsync(tmp_path: Path) -> None:
    """Twelve probers learning names that a hung resolver never answers: one lookup per name, on
    the DNS threads; the store's group fsync still completes at once (review 4, F3: lookups kept
    running past their timeout in asyncio's default pool, and every tick waited for the fsync)."""
    calls: list[str] = []
    release = threading.Event()

    def hung(host: str) -> frozenset[str]:
        calls.append(host)
        release.wait(10.0)
        return frozenset()

    async def main() -> float:
        names = AddressBook(TOPO, resolver=hung)
        book = RecordBook(FileStore(tmp_path / "state"))
        learners = [asyncio.create_task(names.learn(f"db{k % 3}.idc1")) for k in range(12)]
        await asyncio.sleep(0.05)
        t0 = time.monotonic()
        await asyncio.wait_for(book.commit(record(TOPO, "shard1")), 5.0)
        waited = time.monotonic() - t0
        await asyncio.gather(*learners)
        asked = sorted(calls)
        release.set()
        assert asked == ["db0.idc1", "db1.idc1"], "one lookup per name at a time, on two DNS threads"
        return waited

    assert asyncio.run(main()) < 0.5
