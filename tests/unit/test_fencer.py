"""The Fencer against an in-memory MariaDB (``sim.fleet``): a returning old primary is made
read-only on a fresh connection the moment it answers; a fence stuck behind a commit that waits for
an ack is reported once and left queued, and nothing is ever killed.

The scenario: shard1 failed over to ``shard1-sx`` (epoch 2) and its old primary ``shard1-m``, still
writable from before, is to be fenced on return.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from idc_ha.act.fence import Fencer
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import FileStore
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.notify.alerts import MemoryAlertSink
from idc_ha.ports import Admin
from sim.fleet import Fleet, Sent

from .builders import TOPO, record, settle

SHARD = ShardName("shard1")
M, SX, CAS = NodeName("shard1-m"), NodeName("shard1-sx"), NodeName("shard1-cas")
BOUND = 5.0  # no test awaits longer than this
FENCE = "SET GLOBAL read_only=ON"


@dataclass
class Controller:
    cluster: Fleet
    store: FileStore
    book: RecordBook
    alerts: MemoryAlertSink
    fencer: Fencer

    def pending(self) -> tuple[NodeName, ...]:
        rec = self.book.get(SHARD)
        assert rec is not None
        return rec.fence_pending

    def kinds(self) -> list[AlertKind]:
        return [a.kind for a in self.alerts.alerts]

    def events(self, event: str) -> list[dict[str, object]]:
        return [e for e in self.store.journal() if e["event"] == event]

    async def sweep(self) -> None:
        """One sweep of the Fencer, waiting for the attempts it started."""
        await self.fencer.sweep()
        await settle(self.fencer)


@pytest.fixture
async def ctl(tmp_path: Path) -> AsyncIterator[Controller]:
    """The cluster after the failover, with M pending a fence; afterwards, checks nothing ever sent
    a KILL or turned master semi-sync OFF, and stops every fence still in flight."""
    c = Fleet(TOPO).arrange_home()
    store = FileStore(tmp_path)
    book = RecordBook(store)
    book.put(
        record(TOPO, SHARD, sync=SyncState.NODE_SAFE).model_copy(
            update={"epoch": 2, "primary": SX, "ackers": (CAS,), "out": (M,), "fence_pending": (M,)}
        )
    )
    alerts = MemoryAlertSink()
    fencer = Fencer(cast(Admin, c), book, store, alerts)
    yield Controller(c, store, book, alerts, fencer)
    await fencer.close()
    assert c.forbidden() == [], "a KILL QUERY or master semi-sync OFF was sent"


async def until(cond: Callable[[], bool]) -> None:
    # A poll, not an Event: what the tests wait on (an alert, a journal line) signals nothing.
    while not cond():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


def sent_to(c: Fleet, node: NodeName) -> list[Sent]:
    return [s for s in c.sent if s.node == node]


async def test_a_dead_node_stays_pending_until_it_answers_then_is_fenced_first_thing(ctl: Controller) -> None:
    """A dead pending node stays pending; once it answers, the first statement it gets, on a fresh
    connection, is SET GLOBAL read_only=ON, and it leaves fence_pending with a 'fenced' event."""
    m = ctl.cluster.nodes[M]
    m.dead = True
    async with asyncio.timeout(BOUND):
        await ctl.sweep()
        await ctl.sweep()
        assert ctl.cluster.refused == [M, M] and sent_to(ctl.cluster, M) == []
        assert ctl.pending() == (M,) and not m.read_only and ctl.kinds() == []

        m.dead = False
        await ctl.sweep()
    first = sent_to(ctl.cluster, M)[0]
    assert (first.sql, first.fresh) == (FENCE, True)
    assert m.read_only and ctl.pending() == ()
    assert [e["node"] for e in ctl.events("fenced")] == [M]
    assert ctl.kinds() == [AlertKind.FENCED]

    async with asyncio.timeout(BOUND):
        await ctl.sweep()  # nothing is pending any more: nobody dials it again
    assert len(sent_to(ctl.cluster, M)) == 1


async def test_a_fence_blocked_behind_a_waiting_commit_is_reported_once_and_left_queued(ctl: Controller) -> None:
    """A fence queued behind a commit that waits for an ack gives one fence_blocked alert, stays
    pending and is never re-issued; nothing is killed, and the queued fence completes once that
    commit is gone."""
    m = ctl.cluster.nodes[M]
    m.read_only, m.wait_sessions = False, 1
    async with asyncio.timeout(BOUND):
        await ctl.fencer.sweep()
        await until(lambda: AlertKind.FENCE_BLOCKED in ctl.kinds())
        for _ in range(3):  # later sweeps find the fence still in flight
            await ctl.fencer.sweep()
            await asyncio.sleep(0.02)
    assert ctl.kinds() == [AlertKind.FENCE_BLOCKED]
    assert "1 commit(s)" in ctl.alerts.alerts[0].reason
    assert [e["waiting_sessions"] for e in ctl.events("fence_blocked")] == [1]
    assert [s.sql for s in sent_to(ctl.cluster, M)] == [
        FENCE,
        "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'",
    ]
    assert all(s.fresh for s in sent_to(ctl.cluster, M))
    assert ctl.pending() == (M,) and not m.read_only and m.wait_sessions == 1

    m.wait_sessions = 0  # e.g. its acker came back and acked it
    async with asyncio.timeout(BOUND):
        await settle(ctl.fencer)
    assert m.read_only and ctl.pending() == ()
    assert ctl.kinds() == [AlertKind.FENCE_BLOCKED, AlertKind.FENCED]
    assert [s.sql for s in sent_to(ctl.cluster, M)].count(FENCE) == 1
