"""An outage over time, tick by tick as the daemon runs decide(): what the failover itself changes
(witnesses detached, new layouts) must not take back a verdict or a proof that is owed."""

from __future__ import annotations

from idc_ha.decide.verdicts import Health
from idc_ha.model.ids import NodeName

from .builders import TOPO, Ticker, changed, home_nodes, idc_lost, records

H = home_nodes()
DOWN = idc_lost(TOPO, H, "IDC1")


def test_an_idc_stays_down_while_its_witnesses_are_promoted_away() -> None:
    """IDC1 dies; shard2-sx notices 4 s after the other ackers, so meta and shard1 move first and
    their ackers are detached, which removes idc1-m2's only witness. IDC1 stays DEAD (none of its
    nodes answered since), and shard2 moves once its acker sees the loss."""
    c = Ticker(records())
    c.run(0.0, 3.0, H)
    late = {**DOWN, NodeName("shard2-sx"): H["shard2-sx"]}
    c.run(3.0, 7.4, late)
    assert set(c.plans) == {"meta", "shard1"}
    detached = dict(late)
    for s in ("meta", "shard1"):
        detached = changed(detached, f"{s}-sx", replica=None, read_only=False)
    c.run(7.4, 8.4, detached)
    d = c.run(8.4, 14.0, {**detached, NodeName("shard2-sx"): DOWN["shard2-sx"]})
    assert d.verdicts.idcs["IDC1"] == Health.DEAD
    assert "shard2" in c.plans, d.reasons["shard2"]


def test_an_idc_latched_down_is_released_when_a_node_answers() -> None:
    """The latch holds only while none of the IDC's nodes answers."""
    c = Ticker(records())
    c.run(0.0, 3.0, H)
    c.run(3.0, 6.0, DOWN)
    back = {**DOWN, NodeName("meta-ms"): H["meta-ms"]}
    d = c.run(6.0, 6.4, back)
    assert d.verdicts.idcs["IDC1"] != Health.DEAD


def test_an_acker_missed_in_the_primarys_last_round_does_not_block_the_proof() -> None:
    """The acker's probe timed out in the very round the primary last answered: its observation
    from the round before stands (it cannot have restarted unseen: its boot time says so later)."""
    c = Ticker(records())
    c.run(0.0, 3.0, H)
    c.run(3.0, 3.2, changed(H, "shard1-sx", reachable=False, failure="timeout", error="timed out"))
    c.run(3.2, 8.0, DOWN)
    assert set(c.plans) == {"meta", "shard1", "shard2"}


def test_acks_by_an_unseen_client_across_a_missed_round_are_caught() -> None:
    """The acker is cut off (a stale client count stays 1); the primary misses one probe; when it
    answers again 50 more commits were acknowledged, and the acker, seen in every round, acked none
    of them: another semi-sync client acks, so the shard is no longer IDC_SAFE."""
    from idc_ha.model.ids import SyncState
    from idc_ha.model.observation import SemiSyncSlave

    from .builders import lost, pos, with_master, with_replica

    away = with_replica(H, "shard1-sx", io_running="Connecting", last_io_errno=2013)
    away = changed(away, "shard1-sx", semisync_slave=SemiSyncSlave(enabled=True, status=False))
    c = Ticker(records())
    c.run(0.0, 3.0, H)
    c.run(3.0, 4.0, away)
    c.run(4.0, 4.2, lost(TOPO, away, ["shard1-m"], witnessed=False))
    acked = with_master(changed(away, "shard1-m", gtid_binlog_pos=pos(TOPO, "shard1", 150)), "shard1-m", yes_tx=1050)
    c.run(4.2, 4.4, acked)
    assert c.recs["shard1"].sync == SyncState.UNKNOWN and "another semi-sync client" in c.recs["shard1"].reason
