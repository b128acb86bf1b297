"""The Fencer against an in-memory MariaDB (``sim.fleet``): a returning old primary is made
read-only on a fresh connection the moment it answers; a fence stuck behind a commit that waits for
an ack is reported once, then got through the way ``decide/fence.py`` chooses: the machine's fence
command (the tail is truncated), else KILL CONNECTION of the waiters if the policy allows it (their
rows stay), else left queued. Never KILL QUERY, never semi-sync off, never on a node in the layout.

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
from idc_ha.model.alert import AlertKind, Severity
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.policy import Fencing
from idc_ha.model.topology import Topology
from idc_ha.notify.alerts import MemoryAlertSink
from idc_ha.ports import Admin
from sim.fleet import Fleet, FleetRunner, Sent

from .builders import TOPO, record, settle

SHARD = ShardName("shard1")
M, SX, CAS = NodeName("shard1-m"), NodeName("shard1-sx"), NodeName("shard1-cas")
BOUND = 5.0  # no test awaits longer than this
FENCE = "SET STATEMENT lock_wait_timeout=120 FOR SET GLOBAL read_only=ON"
WAITERS = "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for semi-sync ACK from slave'"
FAST = Fencing(blocked_after_s=0.05)


def with_fence_command(t: Topology) -> Topology:
    """``t`` with a fence command on every machine: ``fence NODE`` (the fleet runner restarts NODE
    as a replica)."""
    raw = t.model_dump()
    for m in raw["machines"]:
        m["fence_command"] = ["fence", "{node}", "--at", "{address}:{port}"]
    return Topology.model_validate(raw)


@dataclass
class Controller:
    cluster: Fleet
    store: FileStore
    book: RecordBook
    alerts: MemoryAlertSink
    fencer: Fencer
    runner: FleetRunner

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


def controller(
    tmp_path: Path, *, command: bool = False, policy: Fencing = FAST, rc: int = 0, effect: bool = True
) -> Controller:
    """The cluster after the failover, with M out of the layout and pending a fence."""
    t = with_fence_command(TOPO) if command else TOPO
    c = Fleet(t).arrange_home()
    store = FileStore(tmp_path)
    book = RecordBook(store)
    book.put(
        record(t, SHARD, sync=SyncState.NODE_SAFE).model_copy(
            update={"epoch": 2, "primary": SX, "ackers": (CAS,), "out": (M,), "fence_pending": (M,)}
        )
    )
    c.nodes[SX].read_only = False  # the new primary
    alerts = MemoryAlertSink()
    runner = FleetRunner(c, rc=rc, effect=effect)
    fencer = Fencer(cast(Admin, c), book, store, alerts, topology=t, policy=policy, runner=runner)
    return Controller(c, store, book, alerts, fencer, runner)


@pytest.fixture
async def made(tmp_path: Path) -> AsyncIterator[list[Controller]]:
    """Controllers made by a test; afterwards, checks none ever sent a KILL QUERY, a KILL of
    anything but a waiter's connection, or master semi-sync OFF, and stops every fence in flight."""
    out: list[Controller] = []
    yield out
    for ctl in out:
        await ctl.fencer.close()
        assert ctl.cluster.forbidden() == [], "a KILL QUERY or master semi-sync OFF was sent"


@pytest.fixture
def make(tmp_path: Path, made: list[Controller]) -> Callable[..., Controller]:
    def _make(**kw: object) -> Controller:
        made.append(controller(tmp_path / str(len(made)), **kw))  # type: ignore[arg-type]
        return made[-1]

    return _make


@pytest.fixture
def ctl(make: Callable[..., Controller]) -> Controller:
    return make()


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
    """With no fence command and kills not allowed: a fence queued behind a commit that waits for
    an ack gives one critical fence_blocked alert naming what to run, stays pending and is never
    re-issued; nothing is killed, and the queued fence completes once that commit is gone."""
    m = ctl.cluster.nodes[M]
    m.read_only, m.wait_sessions = False, 1
    async with asyncio.timeout(BOUND):
        await ctl.fencer.sweep()
        await until(lambda: AlertKind.FENCE_BLOCKED in ctl.kinds())
        for _ in range(3):  # later sweeps find the fence still in flight
            await ctl.fencer.sweep()
            await asyncio.sleep(0.02)
    assert ctl.kinds() == [AlertKind.FENCE_BLOCKED]
    blocked = ctl.alerts.alerts[0]
    assert "1 commit(s)" in blocked.reason and blocked.severity is Severity.CRITICAL
    assert "restart shard1-m as a replica" in blocked.hint and "never KILL QUERY" in blocked.hint
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


def strand(ctl: Controller, count: int) -> None:
    """M's acker was moved away (the failover); ``count`` commits on M then wait for an ack."""
    ctl.cluster.nodes[SX].replica = None
    ctl.cluster.rewired()
    ctl.cluster.write(M, count)
    assert ctl.cluster.nodes[M].wait_sessions == count


async def blocked_then_settled(ctl: Controller) -> None:
    ctl.cluster.nodes[M].read_only = False
    async with asyncio.timeout(BOUND):
        await ctl.sweep()
        await ctl.sweep()  # the restarted node is fenced on the next dial


async def test_a_blocked_fence_runs_the_machines_fence_command_and_the_tail_is_gone(
    make: Callable[..., Controller],
) -> None:
    """First choice: the fence command, with the node's facts in its argv. The restart as a
    replica truncates the waiting commits; the node is read-only and fenced, nothing is killed."""
    ctl = make(command=True)
    m = ctl.cluster.nodes[M]
    before = len(m.binlog)
    strand(ctl, 2)
    await blocked_then_settled(ctl)
    host, port = TOPO.address_of(M)
    assert ctl.runner.calls == [("fence", M, "--at", f"{host}:{port}")]
    assert len(m.binlog) == before, "the never-acknowledged tail survived the fence command"
    assert m.read_only and ctl.pending() == () and m.killed_waiters == 0
    assert ctl.kinds() == [AlertKind.FENCE_BLOCKED, AlertKind.FENCED]
    assert ctl.alerts.alerts[0].severity is Severity.WARNING
    assert [(e["rc"], e["node"]) for e in ctl.events("fence_command")] == [(0, M)]
    assert [e["way"] for e in ctl.events("fence_blocked")] == ["command"]


async def test_a_failed_fence_command_falls_back_to_killing_the_waiters_when_the_policy_allows(
    make: Callable[..., Controller],
) -> None:
    """The command fails: fence_failed (critical) with its output, then KILL CONNECTION of each
    waiter (kill_waiters). The fence goes through, and the killed commits stay in the binlog."""
    ctl = make(command=True, rc=3, policy=Fencing(blocked_after_s=0.05, kill_waiters=True))
    m = ctl.cluster.nodes[M]
    strand(ctl, 2)
    after = len(m.binlog)
    await blocked_then_settled(ctl)
    assert AlertKind.FENCE_FAILED in ctl.kinds()
    failed = next(a for a in ctl.alerts.alerts if a.kind is AlertKind.FENCE_FAILED)
    assert "exit 3" in failed.reason and "fence failed" in failed.reason and failed.severity is Severity.CRITICAL
    kills = [s.sql for s in sent_to(ctl.cluster, M) if s.sql.startswith("KILL")]
    assert len(kills) == 2 and all(k.startswith("KILL CONNECTION ") for k in kills)
    assert m.read_only and ctl.pending() == () and m.killed_waiters == 2
    assert len(m.binlog) == after, "a killed waiter's commit stays: the node is errant"
    [killed] = ctl.events("fence_killed")
    assert len(killed["connections"]) == 2 and killed["fenced"] is True  # type: ignore[arg-type]


async def test_a_fence_command_that_changes_nothing_is_reported_and_not_rerun_at_once(
    make: Callable[..., Controller],
) -> None:
    """A command that exits 0 but leaves the fence queued is a failure (fence_failed); with kills
    not allowed the fence stays queued, and sweeps meanwhile neither re-run it nor kill."""
    ctl = make(command=True, effect=False)
    m = ctl.cluster.nodes[M]
    m.read_only, m.wait_sessions = False, 1
    async with asyncio.timeout(BOUND):
        await ctl.fencer.sweep()
        await until(lambda: AlertKind.FENCE_FAILED in ctl.kinds())
        for _ in range(3):
            await ctl.fencer.sweep()
            await asyncio.sleep(0.02)
    failed = next(a for a in ctl.alerts.alerts if a.kind is AlertKind.FENCE_FAILED)
    assert "exited 0 but its fence still waits" in failed.reason
    assert len(ctl.runner.calls) == 1 and m.killed_waiters == 0
    assert not m.read_only and ctl.pending() == (M,)


async def blocked_and_only_reported(ctl: Controller) -> None:
    """M writable with a commit waiting: its fence blocks, is reported, and nothing restarts or kills it."""
    m = ctl.cluster.nodes[M]
    m.read_only, m.wait_sessions = False, 1
    async with asyncio.timeout(BOUND):
        await ctl.fencer.sweep()
        await until(lambda: AlertKind.FENCE_BLOCKED in ctl.kinds())
        await asyncio.sleep(0.2)  # several more rounds of asking
    assert ctl.runner.calls == [] and m.killed_waiters == 0


async def test_nothing_is_restarted_or_killed_on_a_node_the_record_still_holds(
    make: Callable[..., Controller],
) -> None:
    """A failover in flight fences its old primary before the new layout is recorded: a blocked
    fence there is only reported, even with a fence command and kills allowed."""
    ctl = make(command=True, policy=Fencing(blocked_after_s=0.05, kill_waiters=True))
    rec = ctl.book.get(SHARD)
    assert rec is not None
    ctl.book.put(rec.model_copy(update={"primary": M, "out": (), "upstreams": {**rec.upstreams, SX: M}}))
    await blocked_and_only_reported(ctl)
    assert [e["way"] for e in ctl.events("fence_blocked")] == ["wait"]
    ctl.book.put(rec)  # the failover commits its layout: M is out, and its blocked fence is asked again
    async with asyncio.timeout(BOUND):
        await until(lambda: len(ctl.runner.calls) == 1)
        await settle(ctl.fencer)
    assert [e["way"] for e in ctl.events("fence_blocked")] == ["wait", "command"]


async def test_nothing_is_restarted_while_the_recorded_primary_is_not_writable(
    make: Callable[..., Controller],
) -> None:
    """The failover was undone by hand (the recorded primary read-only, M writable again): M may
    be the real primary, so its blocked fence is only reported, whatever the policy allows."""
    ctl = make(command=True, policy=Fencing(blocked_after_s=0.05, kill_waiters=True))
    ctl.cluster.nodes[SX].read_only = True
    await blocked_and_only_reported(ctl)
    assert ctl.alerts.alerts[0].severity is Severity.CRITICAL
