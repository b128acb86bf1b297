"""The RPO=0 proof rests on what this controller itself watched: fresh contact with the primary,
an acker that has everything written a moment before the primary was lost, and has neither
restarted nor gone back since."""

from __future__ import annotations

from idc_ha.decide.contact import update_contacts
from idc_ha.decide.proof import Proof, prove_idc_failover
from idc_ha.model.ids import ShardName
from idc_ha.model.observation import Snapshot

from .builders import TOPO, changed, home_nodes, idc_lost, pos, records, snapshot, steady, watched, with_replica

SHARD = ShardName("shard1")
H = home_nodes()
IDC1_DOWN = idc_lost(TOPO, H, "IDC1")


def prove(hist: tuple[Snapshot, ...], *, lookback_s: float = 1.0) -> Proof:
    recs = records()
    contacts = update_contacts({}, hist, recs)
    return prove_idc_failover(recs[SHARD], hist[-1], TOPO, contacts.get(SHARD), lookback_s=lookback_s)


def test_a_watched_primary_lost_with_a_complete_acker_is_proven() -> None:
    """Three seconds of watching, then IDC1 gone: the acker is proven complete."""
    p = prove(watched(steady(IDC1_DOWN)))
    assert p.ok and p.candidate == "shard1-sx", p.reason


def test_without_contact_nothing_is_proven() -> None:
    """A controller that never saw the primary answer (it started after the loss) proves nothing."""
    p = prove(steady(IDC1_DOWN))
    assert not p.ok and "has not watched shard1-m answer" in p.reason


def test_a_primary_watched_too_briefly_proves_nothing() -> None:
    """Less than lookback_s of contact: there is no settled position to check the acker against."""
    p = prove(watched(steady(IDC1_DOWN), seconds=0.5))
    assert not p.ok and "watched for less than" in p.reason


def test_an_acker_missing_an_old_commit_is_not_proven() -> None:
    """The primary had written seq 120 well before it was lost but the acker only ever got 100: a
    commit went through without its ack (semi-sync toggled off and on between probes, say)."""
    ahead = changed(H, "shard1-m", gtid_binlog_pos=pos(TOPO, SHARD, 120), gtid_current_pos=pos(TOPO, SHARD, 120))
    p = prove(watched(steady(IDC1_DOWN), ahead))
    assert not p.ok and "lacks what shard1-m had written" in p.reason


def test_a_commit_in_flight_at_the_last_probe_does_not_block_the_proof() -> None:
    """A binlog tail written in the last moment before the loss (not yet received) is no gap."""
    lead = watched((), seconds=3.0)
    last = snapshot(changed(H, "shard1-m", gtid_binlog_pos=pos(TOPO, SHARD, 101)), at=0.0)
    hist = (*lead, last, *(snapshot(IDC1_DOWN, at=0.5 + k) for k in range(5)))
    p = prove(hist)
    assert p.ok, p.reason


def test_an_acker_that_restarted_after_the_loss_is_not_proven() -> None:
    """A restart with its source dead discards the relay log: the proof refuses."""
    restarted = changed(IDC1_DOWN, "shard1-sx", uptime_s=1)
    p = prove(watched(steady(restarted)))
    assert not p.ok and "restarted after shard1-m was last seen" in p.reason


def test_an_acker_that_went_back_is_not_proven() -> None:
    """Received 105 while the primary answered, 100 now: part of its relay log is gone."""
    both = changed(H, "shard1-m", gtid_binlog_pos=pos(TOPO, SHARD, 105))
    both = with_replica(both, "shard1-sx", gtid_io_pos=pos(TOPO, SHARD, 105))
    lead = watched((), seconds=3.0)
    hist = (*lead, snapshot(both, at=0.0), *(snapshot(IDC1_DOWN, at=0.5 + k) for k in range(5)))
    p = prove(hist)
    assert not p.ok and "went back" in p.reason


def test_an_acker_still_connected_to_the_primary_is_not_a_candidate() -> None:
    """If the acker still hears the primary, the primary is not gone for it: no promotion."""
    connected = with_replica(IDC1_DOWN, "shard1-sx", io_running="Yes")
    p = prove(watched(steady(connected)))
    assert not p.ok and "still connected" in p.reason
