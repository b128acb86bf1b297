"""The MariaDB 10.11 ack-receiver deadlock: seen, named, and woken with a semi-sync client that
never acks (decide/wake.py, act/wake.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from idc_ha.clock import boottime
from idc_ha.decide.plan import WakeAckReceiver
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.policy import Policy, Rules
from idc_ha.model.state import Control
from idc_ha.notify.alerts import MemoryAlertSink
from sim.fleet import Fleet, daemon_on

from .builders import TOPO, changed, history, home_nodes, with_master, with_replica
from .test_daemon import BOUND, Running, _all, config
from .test_rules import K, run

M, SX = NodeName("shard1-m"), NodeName("shard1-sx")


def _hung(thread: int = 45, **master: int) -> dict[NodeName, object]:
    """shard1-m as the deadlock shows it: no semi-sync client, dump thread ``thread`` finalizing,
    commits waiting, while the acker's IO thread says it is connected with semi-sync on."""
    h = home_nodes()
    n = with_master(h, M, clients=0, wait_sessions=master.get("wait_sessions", 2))
    return changed(n, M, finalizing_dump=thread)


def _wakes(d: object) -> list[object]:
    return [s for s in d.reconcile.get(ShardName("shard1"), ()) if isinstance(s, WakeAckReceiver)]  # type: ignore[attr-defined]


def _hung_alerts(d: object) -> list[object]:
    return [a for a in d.alerts if a.kind == K.ACK_RECEIVER_HUNG]  # type: ignore[attr-defined]


def test_the_same_dump_thread_finalizing_past_the_limit_with_the_acker_connected_is_woken() -> None:
    h = home_nodes()
    d = run(history((0.0, h), (1.0, _hung()), (2.0, _hung()), (3.1, _hung())))
    assert _wakes(d) == [WakeAckReceiver(node=M, acker=SX, reason="wake the deadlocked semi-sync ack receiver")]
    [a] = _hung_alerts(d)
    assert "waited 2.1 s to finalize" in a.reason and "2 commit(s)" in a.reason  # type: ignore[attr-defined]


def test_one_sighting_another_thread_or_a_registered_client_is_not_the_deadlock() -> None:
    """A dump thread passes through 'Waiting to finalize termination' whenever it ends (its TIME
    counts from the dump's start, so it is no help): only the same id seen for wake_after_s is."""
    h = home_nodes()
    assert _wakes(run(history((0.0, h), (3.0, _hung())))) == []  # one sighting
    assert _wakes(run(history((0.0, h), (1.0, _hung(45)), (3.5, _hung(46))))) == []  # a new thread each time
    registered = with_master(_hung(), M, clients=1)
    assert _wakes(run(history((0.0, h), (1.0, registered), (3.5, registered)))) == []
    read_only = changed(_hung(), M, read_only=True)
    assert _wakes(run(history((0.0, h), (1.0, read_only), (3.5, read_only)))) == []


def test_an_acker_that_is_away_or_settings_that_release_waiters_get_no_wake() -> None:
    """No deadlock while the acker is simply away (reconnecting): commits_stuck names that. With
    wait_no_slave off (waiters go async when the last client leaves) it is no RPO=0 shard anyway."""
    h = home_nodes()
    away = with_replica(_hung(), SX, io_running="Connecting")
    assert _wakes(run(history((0.0, h), (1.0, away), (3.5, away)))) == []
    loose = with_master(_hung(), M, wait_no_slave=False)
    assert _wakes(run(history((0.0, h), (1.0, loose), (3.5, loose)))) == []


def test_paused_or_switched_off_it_is_alerted_with_the_cure_but_not_woken() -> None:
    h = home_nodes()
    frames = history((0.0, h), (1.0, _hung()), (3.5, _hung()))
    paused = run(frames, control=Control(paused=True))
    assert _wakes(paused) == []
    [a] = _hung_alerts(paused)
    assert "paused" in a.reason and "never switch semi-sync off" in a.hint.lower()  # type: ignore[attr-defined]
    off = run(frames, policy=Policy(rules=Rules(wake_ack_receiver=False)))
    assert _wakes(off) == [] and "rules.wake_ack_receiver is off" in _hung_alerts(off)[0].reason  # type: ignore[attr-defined]


async def _daemon(tmp_path: Path) -> tuple[Running, Fleet]:
    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    alerts = MemoryAlertSink()
    d = daemon_on(fleet, config(tmp_path / "state"), Policy(), alerts)
    r = Running(d, fleet, alerts, asyncio.create_task(d.run()))
    await r.until("IDC_SAFE on every shard", lambda: _all(d, lambda rec: rec.sync == SyncState.IDC_SAFE))
    return r, fleet


async def _stop(r: Running) -> None:
    r.daemon.stop()
    await asyncio.wait_for(r.task, BOUND)
    assert r.fleet.forbidden() == []


def _journal(r: Running, event: str) -> list[dict[str, object]]:
    return [e for e in r.daemon.store.journal() if e["event"] == event and e.get("step") == "wake_ack_receiver"]


async def test_the_wake_releases_nothing_the_acker_has_not_received(tmp_path: Path) -> None:
    """shard1-m deadlocks with 5 commits waiting; the acker receives nothing (stalled) even once
    woken: the commits keep waiting through the wake, and are acked once it receives them."""
    r, fleet = await _daemon(tmp_path)
    try:
        m, sx = fleet.nodes[M], fleet.nodes[SX]
        sx.stalled = True
        m.hung_since = boottime()
        fleet.write(M, 5)
        await r.until("the wake", lambda: bool(_journal(r, "reconcile")))
        assert "woken" in str(_journal(r, "reconcile")[0]["detail"])
        replica = fleet.observation(SX).replica
        assert replica is not None
        held = f"BINLOG DUMP GTID '{replica.gtid_io_pos}' "
        assert [s.sql for s in fleet.sent if s.node == M and held in s.sql], "not started from what the acker holds"
        assert m.wait_sessions == 5 and m.no_tx == 0, "the wake released commits the acker never received"
        sx.stalled = False
        await r.until("the waiting commits acked", lambda: m.wait_sessions == 0)
        assert m.yes_tx >= 5 and m.no_times == 0
        await r.until("the silent client detached", lambda: m.silent_clients == 0)
        assert [a for a in r.alerts.alerts if a.kind == K.ACK_RECEIVER_HUNG and a.shard == "shard1"]
    finally:
        await _stop(r)


async def test_an_acker_missing_the_oldest_binlog_start_is_not_woken(tmp_path: Path) -> None:
    """The oldest binlog starts past what the acker holds (older files purged): a silent client
    starting there could acknowledge commits the acker lacks, so the wake is refused and journaled."""
    r, fleet = await _daemon(tmp_path)
    try:
        m, sx = fleet.nodes[M], fleet.nodes[SX]
        sx.stalled = True
        m.hung_since = boottime()
        fleet.write(M, 5)  # they wait: no client is registered, and the acker holds none of them
        m.purged = len(m.binlog) - 2  # the oldest file now starts after transactions the acker lacks
        await r.until("the refusal", lambda: bool(_journal(r, "reconcile_failed")))
        error = str(_journal(r, "reconcile_failed")[0]["error"])
        assert "do not hold shard1-sx's position" in error and "1236" in error, error
        assert m.wait_sessions == 5 and m.silent_clients == 0 and m.hung_since is not None
    finally:
        await _stop(r)
