# ruff: noqa: F811
# F811 off in this file: the new_cluster fixture is imported from test_executor and taken by name.
"""The executor's checks before it commits or opens anything, stray writable nodes, and an acker
restarted with skip-slave-start, over the simulated fleet."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from idc_ha.act.fence import Fencer, pending
from idc_ha.decide.plan import OpenWrites, ShardPlan, StartReplica
from idc_ha.errors import StepFailed
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName
from idc_ha.model.policy import Fencing
from idc_ha.ports import Admin
from sim.fleet import Fleet, FleetRunner

from .builders import TOPO, pos, settle
from .test_executor import (
    BOUND,
    SHARD,
    assert_promoted_without_loss,
    daemon,
    new_cluster,  # noqa: F401  (a pytest fixture: tests take it by name)
    resume,
    started,
)

M, MS, SX, CAS, REM = (NodeName(f"shard1-{s}") for s in ("m", "ms", "sx", "cas", "rem"))


# -- 5. verify before commit, verified settings before open --------------------------------------------


async def test_verify_semisync_waits_until_the_cascade_holds_all_the_new_primary_holds(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The cascade acks but has not received the 50 transactions Sx applied: verify_semisync fails
    with FAILOVER_STUCK and nothing is committed or opened; once they arrive, the failover finishes."""
    c = new_cluster()
    c.nodes[CAS].stalled = True  # connected, but nothing arrives
    d = started(c, tmp_path)
    with pytest.raises(StepFailed, match="shard1-cas has received"):
        await resume(d)
    assert d.steps("step_failed") == ["verify_semisync"]
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_STUCK]
    assert c.nodes[SX].read_only
    rec = d.book.get(SHARD)
    assert rec is not None and (rec.epoch, rec.primary) == (1, M)
    c.nodes[CAS].stalled = False
    await resume(d)
    assert_promoted_without_loss(c, d.book)


async def test_the_verify_semisync_alert_names_its_shard(new_cluster: Callable[..., Fleet], tmp_path: Path) -> None:
    """The FAILOVER_STUCK alert of a verify that times out names the shard, like every other alert."""
    c = new_cluster()
    c.nodes[CAS].stalled = True
    d = started(c, tmp_path)
    with pytest.raises(StepFailed):
        await resume(d)
    assert [(a.shard, a.idc) for a in d.alerts.alerts] == [(SHARD, "IDC2")]


VERIFIED = dict(master_enabled=True, wait_point="AFTER_SYNC", master_timeout=SEMISYNC_TIMEOUT_NEVER, wait_no_slave=True)
UNVERIFIED = [
    pytest.param(dict(master_enabled=False), id="master-off"),
    pytest.param(dict(wait_point="AFTER_COMMIT"), id="after-commit"),
    pytest.param(dict(master_timeout=10_000), id="timeout-10s"),
    pytest.param(dict(wait_no_slave=False), id="wait-no-slave-off"),
]


@pytest.mark.parametrize("settings", UNVERIFIED)
async def test_open_writes_refuses_a_node_whose_master_semisync_is_not_verified(
    new_cluster: Callable[..., Fleet], tmp_path: Path, settings: dict[str, Any]
) -> None:
    """OpenWrites re-reads the master semi-sync settings and leaves the node read-only unless all of
    them are what the failover set."""
    c = new_cluster()
    for k, v in {**VERIFIED, **settings}.items():
        setattr(c.nodes[SX], k, v)
    d = started(c, tmp_path)
    rec = d.book.get(SHARD)
    assert rec is not None and rec.op is not None
    only_open = ShardPlan(shard=SHARD, op_id=rec.op.id, steps=(OpenWrites(node=SX, reason="test"),), reason="t")
    with pytest.raises(StepFailed, match="not opening writes"):
        async with asyncio.timeout(BOUND):
            await d.executor.run(only_open)
    assert c.nodes[SX].read_only and "SET GLOBAL read_only=OFF" not in c.statements(SX)


# -- a stray writable node ------------------------------------------------------------------------------


async def test_a_stray_writable_node_that_could_not_be_fenced_is_fenced_when_it_returns(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """A writable remote the failover could not reach to fence is fenced by the Fencer when it
    answers again, so Sx is not left as one of two writable nodes."""
    c = new_cluster()
    rem = c.nodes[REM]
    rem.read_only, rem.dead = False, True  # seen writable by decide(), then unreachable at the fence
    d = started(c, tmp_path, fence=(M, REM))
    await resume(d)
    assert not c.nodes[SX].read_only  # the failover went on: "unreachable, fenced on return"
    assert REM in pending(d.book)
    rem.dead = False
    fencer = Fencer(cast(Admin, c), d.book, d.store, d.alerts, topology=c.t, policy=Fencing(), runner=FleetRunner(c))
    async with asyncio.timeout(BOUND):
        await fencer.sweep()
        await settle(fencer)
    assert rem.read_only, "two writable nodes: the new primary and the stray"
    assert REM not in pending(d.book)


async def test_a_reachable_stray_that_cannot_be_fenced_keeps_writes_closed(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """A writable remote that answers but whose fence is stuck (a commit waits for an ack there)
    stops the failover before writes open, with an alert; it is handed to the Fencer meanwhile."""
    c = new_cluster()
    rem = c.nodes[REM]
    rem.read_only, rem.wait_sessions = False, 1
    d = started(c, tmp_path, fence=(M, REM))
    with pytest.raises(StepFailed, match="could not be made read-only"):
        await resume(d)
    assert c.nodes[SX].read_only, "writes opened while another node stayed writable"
    assert REM in pending(d.book)
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_STUCK]


# -- 8. an acker restarted with skip-slave-start (relay log kept, relay-log.info maybe stale) -----------


@pytest.mark.parametrize("stale", [False, True], ids=["info-current", "info-stale"])
async def test_a_failover_resumed_after_the_acker_crashed_applies_its_whole_relay_log(
    new_cluster: Callable[..., Fleet], tmp_path: Path, stale: bool
) -> None:
    """Sx crashed mid-failover and came back with skip-slave-start: both threads stopped, Gtid_IO_Pos
    empty, relay-log.info possibly pointing at the start of its relay log (measured after a crash).
    The executor finds the first unapplied transaction by reading the relay log, applies the 40
    left, and promotes with every one of M's transactions: none re-applied, none discarded."""
    c = new_cluster(applied=10)
    c.restart(SX, skip_slave_start=True, stale_info=stale)
    r = c.nodes[SX].replica
    assert r is not None and (r.io, r.sql, str(r.io_pos)) == ("No", "No", "")
    d = started(c, tmp_path)
    await resume(d)
    assert_promoted_without_loss(c, d.book)
    resumed = [x for x in c.statements(SX) if x.startswith("CHANGE MASTER TO MASTER_USE_GTID=no")]
    assert resumed == ["CHANGE MASTER TO MASTER_USE_GTID=no, RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=1004"]


async def test_start_replica_applies_the_relay_log_before_the_io_thread_reconnects(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The acker restarted (skip-slave-start, stale relay-log.info) while M is alive: the reconcile
    step applies what its relay log holds from the first unapplied transaction, only then switches
    back to GTID mode and starts both threads; it acks again and nothing was discarded."""
    c = Fleet(TOPO).arrange_home(seq=100)
    c.write(M, 30)
    sx = c.nodes[SX]
    sx.apply_per_tick = 0
    c.tick()  # Sx received 30 it has not applied
    c.restart(SX, skip_slave_start=True, stale_info=True)
    sx.apply_per_tick = None
    d = daemon(c, tmp_path)
    detail = await asyncio.wait_for(d.executor.reconcile_step(StartReplica(node=SX, source=M, reason="t")), BOUND)
    assert "relay log applied" in detail
    stmts = [x for x in c.statements(SX) if not x.startswith("SHOW")]
    assert stmts[0] == "CHANGE MASTER TO MASTER_USE_GTID=no, RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=4"
    assert stmts[1:3] == ["START SLAVE SQL_THREAD", "STOP SLAVE"]
    assert "MASTER_USE_GTID=slave_pos" in stmts[3] and stmts[4] == "START SLAVE"
    # The one START with both threads stopped comes after everything received was applied.
    assert sx.discarded == [] and sx.traps == ["START SLAVE"]
    assert sx.slave_pos == pos(TOPO, SHARD, 130)
    o = await c.observe(SX)
    assert o.replica is not None and o.replica.io_connected and o.semisync_slave is not None and o.semisync_slave.status
    assert c.forbidden() == []


async def test_start_replica_stops_on_a_sql_error_and_keeps_the_relay_log(tmp_path: Path) -> None:
    """Applying the relay log fails (the SQL thread stops with an error): the step alerts and raises,
    and never starts the IO thread, which would discard the rest of the relay log."""
    c = Fleet(TOPO).arrange_home(seq=100)
    c.write(M, 30)
    sx = c.nodes[SX]
    sx.apply_per_tick = 0
    c.tick()
    c.restart(SX, skip_slave_start=True)
    r = sx.replica
    assert r is not None
    r.log = [*r.log[:20], r.log[10], *r.log[20:]]  # a transaction the SQL thread will refuse (1950)
    sx.apply_per_tick = None
    d = daemon(c, tmp_path)
    with pytest.raises(StepFailed, match="SQL thread error 1950"):
        await asyncio.wait_for(d.executor.reconcile_step(StartReplica(node=SX, source=M, reason="t")), BOUND)
    assert "START SLAVE" not in c.statements(SX) and sx.discarded == []
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_STUCK]


async def test_a_group_cut_off_half_way_in_the_relay_log_is_not_waited_for(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The link went in the middle of transaction 151: its GTID event is in Sx's relay log, its
    commit is not, and it was never acknowledged. After a crash of Sx (skip-slave-start) the
    failover applies the 50 complete transactions and promotes, instead of waiting for 151."""
    from idc_ha.model.gtid import Gtid

    c = new_cluster(applied=10)
    r = c.nodes[SX].replica
    assert r is not None
    r.partial = Gtid(0, c.nodes[M].server_id, 151)
    c.restart(SX, skip_slave_start=True)
    d = started(c, tmp_path)
    await resume(d)
    assert_promoted_without_loss(c, d.book)


async def test_arming_an_acker_that_acks_with_the_setting_off_switches_the_setting_on(tmp_path: Path) -> None:
    """The acker still acks on the role it negotiated, but rpl_semi_sync_slave_enabled was switched
    off: the reconcile switches it back on (the next reconnect would come back async otherwise),
    without restarting its IO thread."""
    from idc_ha.decide.plan import ArmAcker

    c = Fleet(TOPO).arrange_home()
    c.nodes[SX].slave_enabled = False
    d = daemon(c, tmp_path)
    detail = await asyncio.wait_for(d.executor.reconcile_step(ArmAcker(node=SX, source=M, reason="t")), BOUND)
    assert "switched back on" in detail
    assert c.statements(SX) == ["SET GLOBAL rpl_semi_sync_slave_enabled=ON"] and c.nodes[SX].slave_enabled
