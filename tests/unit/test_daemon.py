"""The real daemon (tick loop, decide, executor, Fencer, store) over the simulated fleet: the same
code the lab runs, handed the fleet as its prober and admin."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from idc_ha.clock import boottime
from idc_ha.daemon import Daemon
from idc_ha.decide.contact import ACKER_GAP_S
from idc_ha.decide.tracks import Streak, Tracks
from idc_ha.model.config import Config
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.policy import Policy
from idc_ha.model.state import Control
from idc_ha.notify.alerts import MemoryAlertSink
from sim.fleet import Fleet, daemon_on

from .builders import SHARDS, TOPO, in_idc

BOUND = 20.0  # no wait in this file is longer


def config(state_dir: Path) -> Config:
    return Config.model_validate(
        {
            **TOPO.model_dump(),
            "state_dir": str(state_dir),
            "policy": "policies/default.toml",
            "mqtt": {"enabled": False},
            "probe": {"interval_s": 0.1},
        }
    )


class Running:
    def __init__(self, daemon: Daemon, fleet: Fleet, alerts: MemoryAlertSink, task: asyncio.Task[None]) -> None:
        self.daemon, self.fleet, self.alerts, self.task = daemon, fleet, alerts, task

    async def until(self, what: str, pred: Callable[[], bool]) -> None:
        deadline = time.monotonic() + BOUND
        while not pred():
            assert time.monotonic() < deadline, f"{what} not reached in {BOUND} s"
            assert not self.task.done(), f"the daemon stopped: {self.task}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    alerts = MemoryAlertSink()
    cfg = config(tmp_path / "state")
    d = daemon_on(fleet, cfg, Policy(), alerts)
    task = asyncio.create_task(d.run())
    r = Running(d, fleet, alerts, task)
    try:
        await r.until("IDC_SAFE on every shard", lambda: _all(d, lambda rec: rec.sync == SyncState.IDC_SAFE))
        await asyncio.sleep(1.5)  # watched long enough for the proof (min_watch_s 1 s)
        yield r
    finally:
        d.stop()
        await asyncio.wait_for(task, BOUND)
    assert fleet.forbidden() == [], "a KILL QUERY or master semi-sync OFF was sent"


def _all(d: Daemon, pred: Callable[..., bool]) -> bool:
    recs = d.book.all()
    return len(recs) == len(SHARDS) and all(pred(recs[ShardName(s)]) for s in SHARDS)


async def test_idc1_dead_moves_every_shard_to_idc2(running: Running) -> None:
    """Every IDC1 server refuses: every shard's acker is promoted, its cascade acks, writes reopen
    with semi-sync in force, and the old primaries wait to be fenced on return."""
    for n in in_idc(TOPO, "IDC1"):
        running.fleet.nodes[n].dead = True
    d = running.daemon
    await running.until(
        "every shard in IDC2", lambda: _all(d, lambda rec: rec.primary.endswith("-sx") and rec.op is None)
    )
    for s in SHARDS:
        rec = d.book.get(ShardName(s))
        assert rec is not None and rec.epoch == 2 and rec.sync == SyncState.NODE_SAFE and f"{s}-m" in rec.fence_pending
        o = running.fleet.observation(f"{s}-sx")
        assert not o.read_only and o.semisync_master is not None and o.semisync_master.clients == 1
    # The meta shard's routing table, on its new primary only, says what the routing messages say.
    rows = running.fleet.nodes["meta-sx"].routing_rows
    await running.until(
        "every row in the meta shard's table",
        lambda: {s: rows.get(s, {}).get("epoch") for s in SHARDS} == {s: 2 for s in SHARDS},
    )
    for s in SHARDS:
        host, port = TOPO.address_of(NodeName(f"{s}-sx"))
        assert {k: rows[s][k] for k in ("node", "host", "port", "idc")} == {
            "node": f"{s}-sx",
            "host": host,
            "port": port,
            "idc": "IDC2",
        }
    assert all(r["epoch"] == 1 for r in running.fleet.nodes["meta-m"].routing_rows.values())


async def test_a_paused_daemon_still_fences_a_writable_stray(running: Running) -> None:
    """Pause stops promotions, not fencing: a replica opened by mistake is made read-only."""
    running.daemon.store.write_control(Control(paused=True))
    running.fleet.nodes["shard1-rem"].read_only = False
    await running.until("shard1-rem fenced", lambda: running.fleet.nodes["shard1-rem"].read_only)


async def test_a_restarted_acker_is_started_relay_log_first(running: Running) -> None:
    """The acker restarts with skip-slave-start holding 30 unapplied transactions: the daemon
    applies them and starts its replication; commits on the primary are acknowledged again."""
    f = running.fleet
    sx = f.nodes["shard1-sx"]
    sx.apply_per_tick = 0
    f.write("shard1-m", 30)
    await running.until("the acker received 30", lambda: len(sx.replica.relay) == 30 if sx.replica else False)
    f.restart("shard1-sx", skip_slave_start=True, stale_info=True)
    sx.apply_per_tick = None
    await running.until("the acker acking again", lambda: f.observation("shard1-sx").semisync_slave.status)  # type: ignore[union-attr]
    assert sx.discarded == [] and sx.slave_pos.by_domain[0].seq == 130
    before = f.nodes["shard1-m"].yes_tx
    f.write("shard1-m", 5)
    await running.until("new commits acknowledged", lambda: f.nodes["shard1-m"].yes_tx == before + 5)


async def test_a_failed_fsync_stops_the_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the store cannot make a write durable the daemon stops with StoreFailed (systemd
    restarts it, and the new process reads what the disk holds) rather than act on records that
    may be lost."""
    import errno
    import os

    from idc_ha.errors import StoreFailed

    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    d = daemon_on(fleet, config(tmp_path / "state"), Policy(), MemoryAlertSink())
    task = asyncio.create_task(d.run())
    r = Running(d, fleet, MemoryAlertSink(), task)
    await r.until("a first tick", lambda: d.ticks > 2)

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", eio)
    with pytest.raises(StoreFailed):
        await asyncio.wait_for(task, BOUND)


async def _tick_starts(tmp_path: Path, tick: Callable[[Daemon], Awaitable[None]], n: int) -> list[float]:
    """When each of ``n`` ticks started, with an operation running and the loop woken as often as
    finishing operations wake it."""
    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    cfg = config(tmp_path / "state")
    cfg = cfg.model_copy(update={"probe": cfg.probe.model_copy(update={"interval_s": 0.01})})
    d = daemon_on(fleet, cfg, Policy(), MemoryAlertSink())
    starts: list[float] = []

    async def timed() -> None:
        starts.append(time.monotonic())
        await tick(d)

    d.tick = timed  # type: ignore[assignment,method-assign]
    op = asyncio.create_task(asyncio.sleep(BOUND))
    d.ops[ShardName("shard1")] = op
    loop = asyncio.create_task(d._tick_loop())
    deadline = time.monotonic() + BOUND
    try:
        while len(starts) < n:
            assert time.monotonic() < deadline, f"{n} ticks not reached in {BOUND} s"
            d.wake()
            await asyncio.sleep(0.002)
        return starts
    finally:
        d.stop()
        op.cancel()
        await asyncio.wait_for(loop, BOUND)
        d.store.release()


async def test_running_operations_get_the_loop_between_ticks(tmp_path: Path) -> None:
    """While operations run, the loop rests as long as a tick held it before the next one, however
    often finishing operations wake it: at thousands of shards a tick holds the event loop for most
    of a second, and back-to-back ticks starved the failovers (scale bench)."""
    held = 0.05

    async def busy(d: Daemon) -> None:
        time.sleep(held)  # noqa: ASYNC251  (decide holds the event loop)
        d.held = held

    gaps = [b - a for a, b in itertools.pairwise(await _tick_starts(tmp_path, busy, 6))]
    assert min(gaps) >= 2 * held * 0.95, gaps  # the tick, then as long again for the operations


@pytest.mark.parametrize("holds", [True, False], ids=["held", "awaited"])
async def test_the_rest_never_spaces_probe_rounds_past_the_acker_gap(tmp_path: Path, holds: bool) -> None:
    """The rest is bounded so two probe rounds stay within ACKER_GAP_S (a longer gap restarts the
    acker's lost-link run and an owed failover is refused as unwatched), and a tick that only
    waited (a probe timing out, an fsync) earns no rest at all (review 5, F1: ticks 1.2 s apart)."""
    took = 0.6

    async def slow(d: Daemon) -> None:
        if holds:
            time.sleep(took)  # noqa: ASYNC251
            d.held = took
        else:
            await asyncio.sleep(took)  # a probe round waiting on a silent node: the loop is free
            d.held = 0.0

    gaps = [b - a for a, b in itertools.pairwise(await _tick_starts(tmp_path, slow, 4))]
    assert max(gaps) <= ACKER_GAP_S, gaps
    if not holds:
        assert max(gaps) < took + 0.2, gaps  # no rest for time the loop was free


def test_rounds_hurry_only_while_a_refusal_is_being_confirmed(tmp_path: Path) -> None:
    """A node refusing for less than confirm_refused_s (+ two intervals of slack) makes the next
    rounds come every HURRY_S, so the verdict lands as the window closes; a long-dead node, or one
    that times out (its probe costs a timeout), does not."""
    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    d = daemon_on(fleet, config(tmp_path / "state"), Policy(), MemoryAlertSink())
    try:
        assert not d._confirming_refusal()
        node = NodeName("shard1-m")
        fresh = Streak(since=100.0, rounds=1, refused=True, error="connection refused")
        d.memory = replace(d.memory, tracks=Tracks(at=100.1, streaks={node: fresh}))
        assert d._confirming_refusal()
        d.memory = replace(d.memory, tracks=Tracks(at=101.0, streaks={node: fresh}))  # 1 s on: confirmed long ago
        assert not d._confirming_refusal()
        silent = replace(fresh, refused=False, error="timed out")
        d.memory = replace(d.memory, tracks=Tracks(at=100.1, streaks={node: silent}))
        assert not d._confirming_refusal()
        # Its shard's failover already runs: hurried rounds would only take CPU from it.
        d.memory = replace(d.memory, tracks=Tracks(at=100.1, streaks={node: fresh}))
        loop = asyncio.new_event_loop()
        d.ops[ShardName("shard1")] = loop.create_future()  # type: ignore[assignment]  # not done: running
        assert not d._confirming_refusal()
        d.ops[ShardName("shard2")] = d.ops.pop(ShardName("shard1"))
        assert d._confirming_refusal()
        loop.close()
    finally:
        d.store.release()


async def _idc1_fails_over(r: Running) -> None:
    for n in in_idc(TOPO, "IDC1"):
        r.fleet.nodes[n].dead = True
    d = r.daemon
    await r.until("every shard in IDC2", lambda: _all(d, lambda rec: rec.primary.endswith("-sx") and rec.op is None))


async def test_idc1_returning_rejoins_as_replicas_of_the_new_primaries(running: Running) -> None:
    """IDC1 dies, every shard moves, IDC1 comes back as it was (writable old primaries): each old
    primary is fenced, and every IDC1 node rejoins as a replica of its shard's new primary, acking
    off, master semi-sync off, its promotion point dropped from the record."""
    await _idc1_fails_over(running)
    d, f = running.daemon, running.fleet
    for n in in_idc(TOPO, "IDC1"):
        f.nodes[n].dead = False
    idc1 = set(in_idc(TOPO, "IDC1"))
    await running.until("IDC1 back in every layout", lambda: _all(d, lambda rec: not (set(rec.out) & idc1)))
    for s in SHARDS:
        rec = d.book.get(ShardName(s))
        assert rec is not None
        for n in (f"{s}-m", f"{s}-ms"):
            # Rejoined behind the new primary; the home primary may already be the acker, with
            # the local candidate moving behind it (test_idc1_back_makes_every_shard_idc_safe_again...).
            up = rec.upstreams[NodeName(n)]
            assert up in (f"{s}-sx", f"{s}-m") and n not in rec.left_at
            o = f.observation(n)
            assert o.read_only and o.replica is not None and o.replica.source in (f"{s}-sx", up)
            assert o.semisync_slave is not None and o.semisync_slave.enabled == (n in rec.ackers)
            assert o.semisync_master is None or not o.semisync_master.enabled
    f.write("shard1-sx", 3)
    await running.until(
        "the rejoined old primary applies the new primary's commits",
        lambda: f.nodes["shard1-m"].current_pos == f.nodes["shard1-sx"].binlog_pos,
    )
    assert [e for e in d.store.journal() if e["event"] == "reconcile" and e["step"] == "rejoin"]


async def test_idc1_back_makes_every_shard_idc_safe_again_and_a_second_disaster_moves_it_home(
    running: Running,
) -> None:
    """After the rejoin, each shard's home primary becomes its acker (IDC1 is the standby IDC), the
    cascade in IDC2 stops acking, the local candidate and the remote follow the new acker, and the
    shard is proven IDC_SAFE at a new epoch. Then IDC2 dies: every shard moves back to IDC1 (the
    home primary writes, the local candidate acks) with every acknowledged commit."""
    await _idc1_fails_over(running)
    d, f = running.daemon, running.fleet
    for n in in_idc(TOPO, "IDC1"):
        f.nodes[n].dead = False
    await running.until(
        "every shard IDC_SAFE with its home primary acking",
        lambda: _all(d, lambda rec: rec.sync == SyncState.IDC_SAFE and rec.ackers == (f"{rec.shard}-m",)),
    )
    for s in SHARDS:
        rec = d.book.get(ShardName(s))
        assert rec is not None and rec.epoch == 3 and rec.primary == f"{s}-sx"
        assert rec.upstreams == {f"{s}-m": f"{s}-sx", f"{s}-cas": f"{s}-sx", f"{s}-ms": f"{s}-m", f"{s}-rem": f"{s}-m"}
        await running.until(f"{s}'s followers rewired", lambda s=s: f.observation(f"{s}-rem").source == f"{s}-m")
        assert f.observation(f"{s}-ms").source == f"{s}-m"
        cas = f.observation(f"{s}-cas").semisync_slave
        assert cas is not None and not cas.enabled and not cas.status
        m = f.observation(f"{s}-sx").semisync_master
        assert m is not None and m.clients == 1
    acked = {s: f.nodes[f"{s}-sx"].yes_tx for s in SHARDS}
    for s in SHARDS:
        f.write(f"{s}-sx", 4)
    await running.until(
        "the new commits acknowledged", lambda: all(f.nodes[f"{s}-sx"].yes_tx == acked[s] + 4 for s in SHARDS)
    )
    held = {s: f.nodes[f"{s}-sx"].binlog_pos for s in SHARDS}
    await asyncio.sleep(1.5)  # the new acker watched long enough for the proof (min_watch_s 1 s)
    for n in in_idc(TOPO, "IDC2"):
        f.nodes[n].dead = True
    await running.until(
        "every shard back in IDC1", lambda: _all(d, lambda rec: rec.primary == f"{rec.shard}-m" and rec.op is None)
    )
    for s in SHARDS:
        rec = d.book.get(ShardName(s))
        assert rec is not None and rec.sync == SyncState.NODE_SAFE and rec.ackers == (f"{s}-ms",) and rec.epoch == 4
        assert f.nodes[f"{s}-m"].binlog_pos.contains(held[s]), "an acknowledged commit was lost"
        assert not f.observation(f"{s}-m").read_only


async def test_a_node_returning_with_a_never_acknowledged_tail_is_marked_for_a_rebuild(running: Running) -> None:
    """shard1's acker stops receiving; two commits on shard1-m wait for an ack (its local replica
    shard1-ms gets them); IDC1 dies and comes back. Both hold 2 transactions past the promotion
    point: they stay out, are marked needs_rebuild, and the alert names the GTIDs."""
    f, d = running.fleet, running.daemon
    f.nodes["shard1-sx"].stalled = True
    f.write("shard1-m", 2)
    f.nodes["shard1-m"].wait_sessions = 2  # nothing reaches the stalled acker: they wait for its ack
    await running.until(
        "shard1-ms got the waiting commits", lambda: f.nodes["shard1-ms"].current_pos == f.nodes["shard1-m"].binlog_pos
    )
    tail = f.nodes["shard1-m"].binlog_pos
    assert f.nodes["shard1-m"].wait_sessions == 2
    await _idc1_fails_over(running)
    for n in in_idc(TOPO, "IDC1"):
        f.nodes[n].dead = False
    f.nodes["shard1-m"].wait_sessions = 0  # e.g. their clients gave up and the server was restarted
    await running.until(
        "shard1-m and shard1-ms marked for a rebuild, and alerted (after the record is written)",
        lambda: (
            set((d.book.get(ShardName("shard1")) or d.book.all()["shard1"]).needs_rebuild) == {"shard1-m", "shard1-ms"}
            and any(a.kind == "needs_rebuild" and a.node == "shard1-m" for a in running.alerts.alerts)
        ),
    )
    rec = d.book.get(ShardName("shard1"))
    assert rec is not None and {"shard1-m", "shard1-ms"} <= set(rec.out)
    alerts = [a for a in running.alerts.alerts if a.kind == "needs_rebuild" and a.node == "shard1-m"]
    assert alerts and f"{tail} (point " in alerts[0].reason and "2 transaction(s) past it" in alerts[0].reason
    assert f.observation("shard1-m").replica is None, "an errant node was made a replica"


async def test_hooks_run_with_the_event_in_their_environment_and_a_failing_one_undoes_nothing(tmp_path: Path) -> None:
    """hooks.failover exits 1: every shard still fails over, and hook_failed names the shard; the
    fence and rejoin hooks run when IDC1 returns, each with the event's environment."""
    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    alerts = MemoryAlertSink()
    raw = config(tmp_path / "state").model_dump()
    cfg = Config.model_validate({**raw, "hooks": {"failover": ["false"], "fence": ["true"], "rejoin": ["true"]}})
    d = daemon_on(fleet, cfg, Policy(), alerts)
    task = asyncio.create_task(d.run())
    r = Running(d, fleet, alerts, task)
    try:
        await r.until("IDC_SAFE on every shard", lambda: _all(d, lambda rec: rec.sync == SyncState.IDC_SAFE))
        await asyncio.sleep(1.5)
        await _idc1_fails_over(r)
        await r.until(
            "hook_failed for every shard",
            lambda: {a.shard for a in alerts.alerts if a.kind == "hook_failed"} == set(SHARDS),
        )
        for n in in_idc(TOPO, "IDC1"):
            fleet.nodes[n].dead = False
        idc1 = set(in_idc(TOPO, "IDC1"))
        await r.until("IDC1 back in every layout", lambda: _all(d, lambda rec: not (set(rec.out) & idc1)))
        envs = d.hooks.runner.envs  # type: ignore[attr-defined]
        await r.until(
            "the rejoin hooks ran", lambda: sum(e.get("IDC_HA_EVENT") == "rejoin" for e in envs) == 2 * len(SHARDS)
        )
    finally:
        d.stop()
        await asyncio.wait_for(task, BOUND)
    failover = [e for e in envs if e.get("IDC_HA_EVENT") == "failover" and e["IDC_HA_SHARD"] == "shard1"]
    host, port = TOPO.address_of(NodeName("shard1-sx"))
    assert [{k: v for k, v in e.items() if k.startswith("IDC_HA_") and k != "IDC_HA_REASON"} for e in failover] == [
        {
            "IDC_HA_EVENT": "failover",
            "IDC_HA_SHARD": "shard1",
            "IDC_HA_EPOCH": "2",
            "IDC_HA_PRIMARY_NODE": "shard1-sx",
            "IDC_HA_PRIMARY_HOST": host,
            "IDC_HA_PRIMARY_PORT": str(port),
            "IDC_HA_PRIMARY_IDC": "IDC2",
            "IDC_HA_OLD_PRIMARY": "shard1-m",
        }
    ]
    assert "IDC IDC1 down" in failover[0]["IDC_HA_REASON"]
    assert {e["IDC_HA_OLD_PRIMARY"] for e in envs if e.get("IDC_HA_EVENT") == "fence"} >= {f"{s}-m" for s in SHARDS}
    assert all(rec.primary.endswith("-sx") for rec in d.book.all().values()), "a failing hook undid a failover"
