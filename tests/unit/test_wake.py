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


def _hung(finalizing: int = 3, **master: int) -> dict[NodeName, object]:
    """shard1-m as the deadlock shows it: no semi-sync client, a dump thread finalizing, commits
    waiting, while the acker's IO thread says it is connected with semi-sync on."""
    h = home_nodes()
    n = with_master(h, M, clients=0, wait_sessions=master.get("wait_sessions", 2))
    return changed(n, M, dump_finalizing_s=finalizing)


def _wakes(d: object) -> list[object]:
    return [s for s in d.reconcile.get(ShardName("shard1"), ()) if isinstance(s, WakeAckReceiver)]  # type: ignore[attr-defined]


def _hung_alerts(d: object) -> list[object]:
    return [a for a in d.alerts if a.kind == K.ACK_RECEIVER_HUNG]  # type: ignore[attr-defined]


def test_a_dump_thread_finalizing_past_the_limit_with_no_client_is_woken() -> None:
    h = home_nodes()
    hung = _hung(3)
    d = run(history((0.0, h), (1.0, hung)))
    assert _wakes(d) == [WakeAckReceiver(node=M, reason="wake the deadlocked semi-sync ack receiver")]
    [a] = _hung_alerts(d)
    assert "waited 3 s to finalize" in a.reason and "2 commit(s)" in a.reason  # type: ignore[attr-defined]


def test_a_short_finalize_a_registered_client_or_a_read_only_node_is_not_the_deadlock() -> None:
    h = home_nodes()
    assert _wakes(run(history((0.0, h), (1.0, _hung(1))))) == []  # under wake_after_s (2 s)
    registered = with_master(_hung(5), M, clients=1)
    assert _wakes(run(history((0.0, h), (1.0, registered)))) == []
    read_only = changed(_hung(5), M, read_only=True)
    assert _wakes(run(history((0.0, h), (1.0, read_only)))) == []


def test_paused_or_switched_off_it_is_alerted_with_the_cure_but_not_woken() -> None:
    h = home_nodes()
    hung = _hung(4)
    paused = run(history((0.0, h), (1.0, hung)), control=Control(paused=True))
    assert _wakes(paused) == []
    [a] = _hung_alerts(paused)
    assert "paused" in a.reason and "never switch semi-sync off" in a.hint  # type: ignore[attr-defined]
    off = run(history((0.0, h), (1.0, hung)), policy=Policy(rules=Rules(wake_ack_receiver=False)))
    assert _wakes(off) == [] and "rules.wake_ack_receiver is off" in _hung_alerts(off)[0].reason  # type: ignore[attr-defined]


def test_an_acker_that_lost_its_link_is_no_deadlock_and_gets_no_wake() -> None:
    """No dump thread finalizing: the acker is simply away; commits_stuck names it, no wake."""
    h = home_nodes()
    away = with_replica(with_master(h, M, clients=0, wait_sessions=1), SX, io_running="Connecting")
    assert _wakes(run(history((0.0, h), (1.0, away), (3.0, away)))) == []


async def test_the_daemon_wakes_a_deadlocked_primary_and_the_waiting_commits_are_acked_by_the_acker(
    tmp_path: Path,
) -> None:
    """On the fleet: shard1-m deadlocks with 5 commits waiting that the acker holds. The daemon
    attaches a silent semi-sync client; the acker registers and acks them; nothing forbidden is
    sent, and the silent client is detached once the acker is back."""
    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    alerts = MemoryAlertSink()
    d = daemon_on(fleet, config(tmp_path / "state"), Policy(), alerts)
    task = asyncio.create_task(d.run())
    r = Running(d, fleet, alerts, task)
    try:
        await r.until("IDC_SAFE on every shard", lambda: _all(d, lambda rec: rec.sync == SyncState.IDC_SAFE))
        m = fleet.nodes[M]
        m.hung_since = boottime()
        fleet.write(M, 5)
        assert m.wait_sessions == 5
        await r.until("the waiting commits acked", lambda: m.wait_sessions == 0)
        assert m.yes_tx >= 5 and m.no_tx == 0 and m.no_times == 0
        assert [s.sql for s in fleet.sent if "BINLOG DUMP" in s.sql and s.node == M]
        await r.until("the silent client detached", lambda: m.silent_clients == 0)
        wakes = [e for e in d.store.journal() if e["event"] == "reconcile" and e.get("step") == "wake_ack_receiver"]
        assert wakes and "woken" in str(wakes[0]["detail"]), wakes
        assert [a for a in alerts.alerts if a.kind == K.ACK_RECEIVER_HUNG and a.shard == "shard1"]
    finally:
        d.stop()
        await asyncio.wait_for(task, BOUND)
    assert fleet.forbidden() == []
