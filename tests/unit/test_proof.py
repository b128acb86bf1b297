"""The RPO=0 proof rests on what this controller itself watched: an unbroken watch of the primary
up to its loss, a blind spell (last answer -> loss corroborated by the acker) within the bound, and
an acker that has neither restarted nor gone back since."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from idc_ha.decide.contact import update_contacts
from idc_ha.decide.proof import Proof, prove_idc_failover
from idc_ha.model.ids import NodeName, ShardName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.policy import Proof as ProofPolicy

from .builders import (
    TOPO,
    changed,
    home_nodes,
    idc_lost,
    pos,
    records,
    snapshot,
    steady,
    watched,
    with_master,
    with_replica,
)

SHARD = ShardName("shard1")
SX = NodeName("shard1-sx")
H = home_nodes()
IDC1_DOWN = idc_lost(TOPO, H, "IDC1")
IDC1_SILENT = idc_lost(TOPO, H, "IDC1", witnessed=False)  # the controller is cut off; the acker still hears M
Nodes = dict[NodeName, NodeObservation]


def prove(hist: tuple[Snapshot, ...], **policy: float) -> Proof:
    recs = records()
    pol = ProofPolicy(**policy)
    contacts = update_contacts({}, hist, recs, max_blind_s=pol.max_blind_s)
    return prove_idc_failover(recs[SHARD], hist[-1], TOPO, contacts.get(SHARD), policy=pol)


def frames(*parts: tuple[Nodes, float, int], start: float = 0.0) -> tuple[Snapshot, ...]:
    """Consecutive phases ``(nodes, seconds, rounds)``: each phase's rounds spread over its seconds."""
    out: list[Snapshot] = []
    at = start
    for nodes, seconds, rounds in parts:
        step = seconds / rounds
        for _ in range(rounds):
            out.append(snapshot(nodes, at=at))
            at += step
    return tuple(out)


def test_a_watched_primary_lost_with_a_complete_acker_is_proven() -> None:
    """Three seconds of watching, then IDC1 gone: the acker is proven complete."""
    p = prove(watched(steady(IDC1_DOWN)))
    assert p.ok and p.candidate == "shard1-sx", p.reason


def test_without_contact_nothing_is_proven() -> None:
    """A controller that never saw the primary answer (it started after the loss) proves nothing."""
    p = prove(steady(IDC1_DOWN))
    assert not p.ok and "has not watched shard1-m answer" in p.reason


def test_a_primary_watched_too_briefly_proves_nothing() -> None:
    """Less than min_watch_s of unbroken watching before the loss: no proof."""
    p = prove(watched(steady(IDC1_DOWN), seconds=0.5))
    assert not p.ok and "less than proof.min_watch_s" in p.reason


def test_a_long_min_watch_is_honoured_not_impossible() -> None:
    """Gap 5: a minimum watch longer than the old 5 s window of kept positions still proves a
    primary watched long enough (the watch is a start time, not a window of samples)."""
    p = prove(watched(steady(IDC1_DOWN), seconds=12.0), min_watch_s=10.0)
    assert p.ok, p.reason
    p = prove(watched(steady(IDC1_DOWN), seconds=8.0), min_watch_s=10.0)
    assert not p.ok and "less than proof.min_watch_s" in p.reason


def test_commits_waiting_for_an_ack_do_not_block_the_proof() -> None:
    """Gap 4: the IDC1<->IDC2 link went first, so M's binlog holds commits the acker never received
    (they wait for its ack, wait_sessions > 0) for seconds before M dies. They were never
    acknowledged: semi-sync was watched in force with no_tx and no_times flat, Sx the only acker."""
    cut = with_replica(H, SX, io_running="Connecting", last_io_errno=2013)
    cut = changed(cut, SX, semisync_slave=cut[SX].semisync_slave.model_copy(update={"status": False}))  # type: ignore[union-attr]
    waiting = with_master(changed(cut, "shard1-m", gtid_binlog_pos=pos(TOPO, SHARD, 140)), "shard1-m", wait_sessions=3)
    hist = frames((H, 3.0, 6), (waiting, 5.0, 10), (IDC1_DOWN, 4.0, 8))
    p = prove(hist)
    assert p.ok, p.reason


def test_a_commit_in_flight_at_the_last_probe_does_not_block_the_proof() -> None:
    """A binlog tail written in the last moment before the loss (not yet received) is no gap."""
    tail = changed(H, "shard1-m", gtid_binlog_pos=pos(TOPO, SHARD, 101))
    p = prove(frames((H, 3.0, 6), (tail, 0.2, 1), (IDC1_DOWN, 4.0, 8)))
    assert p.ok, p.reason


def test_a_blind_spell_longer_than_the_bound_is_not_proven() -> None:
    """Gap 1: the controller saw nothing of IDC1 for 300 s (the acker still connected), then the
    acker lost its link: semi-sync may have been weakened unseen, so no proof, and the reason says so."""
    hist = frames((H, 3.0, 6), (IDC1_SILENT, 300.0, 600), (IDC1_DOWN, 4.0, 8))
    p = prove(hist)
    assert not p.ok and "went unwatched for 300." in p.reason and "max_blind_s" in p.reason


def test_a_silent_idc_within_the_bound_is_proven() -> None:
    """The whole IDC goes silent: the controller times out at once, the acker notices ~3 s later
    (slave_net_timeout): a 3 s blind spell is within the 10 s bound."""
    hist = frames((H, 3.0, 6), (IDC1_SILENT, 3.0, 6), (IDC1_DOWN, 4.0, 8))
    p = prove(hist)
    assert p.ok, p.reason


def test_the_bound_is_the_policy_setting() -> None:
    """The same 3 s blind spell is refused under a 2 s bound."""
    hist = frames((H, 3.0, 6), (IDC1_SILENT, 3.0, 6), (IDC1_DOWN, 4.0, 8))
    p = prove(hist, max_blind_s=2.0)
    assert not p.ok and "max_blind_s is 2.0" in p.reason


def test_a_reconnect_of_the_acker_in_the_blind_spell_restarts_its_lost_link() -> None:
    """The acker lost its link early, but then received more (so it was connected again, unseen):
    the loss is dated from after that, and the blind spell is long again."""
    lost_early = IDC1_DOWN
    more = with_replica(IDC1_DOWN, SX, gtid_io_pos=pos(TOPO, SHARD, 105))
    more = changed(more, "shard1-cas", gtid_current_pos=pos(TOPO, SHARD, 100))
    hist = frames((H, 3.0, 6), (lost_early, 2.0, 4), (IDC1_SILENT, 30.0, 60), (more, 4.0, 8))
    p = prove(hist)
    assert not p.ok and "went unwatched" in p.reason


def test_an_acker_unseen_for_long_ends_its_lost_link() -> None:
    """IDC1 silent and the acker unseen for 2 s, 20 s into the outage: it may have reconnected to
    a live primary meanwhile (on an idle shard it would receive nothing), so the loss is dated
    from after that spell and the blind spell (22 s) is refused."""
    acker_away = changed(IDC1_DOWN, SX, reachable=False, failure="timeout", error="timed out")
    hist = frames((H, 3.0, 6), (IDC1_DOWN, 20.0, 40), (acker_away, 2.0, 10), (IDC1_DOWN, 2.0, 4))
    p = prove(hist)
    assert not p.ok and "went unwatched for 22." in p.reason


def test_one_missed_probe_of_the_acker_keeps_its_lost_link() -> None:
    """One acker probe timing out (0.2 s), after which it is still cut off, holding the same and
    not restarted, keeps the run: a blip must not turn an owed failover into a refusal."""
    acker_blip = changed(IDC1_DOWN, SX, reachable=False, failure="timeout", error="timed out")
    p = prove(frames((H, 3.0, 6), (IDC1_DOWN, 20.0, 40), (acker_blip, 0.2, 1), (IDC1_DOWN, 2.0, 4)))
    assert p.ok, p.reason


def refused(nodes: Nodes) -> Nodes:
    return {n: (o.model_copy(update={"failure": "refused"}) if not o.reachable else o) for n, o in nodes.items()}


def test_a_refused_primary_is_no_corroboration_alone() -> None:
    """A REJECT rule against the controller refuses while the primary serves everyone else: with
    the acker's IO thread stopped by hand (it tried nothing), nothing corroborates the loss."""
    stopped = with_replica(H, SX, io_running="No", last_io_errno=0)
    gone = refused(idc_lost(TOPO, stopped, "IDC1", witnessed=False))
    p = prove(frames((H, 3.0, 6), (stopped, 2.0, 4), (gone, 2.0, 10)))
    assert not p.ok and "not corroborated" in p.reason


def test_an_acker_stopped_after_it_lost_the_link_keeps_corroborating() -> None:
    """A DBA stops the acker's IO thread during the outage to keep its relay log: STOP SLAVE keeps
    Last_IO_Errno (measured), so its link is still lost and the run goes on."""
    stopped = with_replica(IDC1_DOWN, SX, io_running="No", last_io_errno=2003)
    p = prove(frames((H, 3.0, 6), (IDC1_DOWN, 2.0, 10), (stopped, 2.0, 10)))
    assert p.ok, p.reason


def test_an_acker_restart_is_seen_through_a_wall_clock_step() -> None:
    """Boot times are on the controller's monotonic clock: a wall-clock step of 8 s (NTP, a
    resumed VM) is no restart, and a real restart still is."""
    hist = watched(steady(IDC1_DOWN))
    stepped = tuple(s.model_copy(update={"wall": s.wall + 8.0}) if k >= 6 else s for k, s in enumerate(hist))
    assert prove(stepped).ok
    restarted = (*hist[:-1], snapshot(changed(IDC1_DOWN, SX, booted_at=hist[-1].taken_at - 1), at=hist[-1].taken_at))
    p = prove(restarted)
    assert not p.ok and "restarted" in p.reason


def test_an_acker_that_restarted_after_the_loss_is_not_proven() -> None:
    """A restart may discard the relay log: the proof refuses."""
    restarted = changed(IDC1_DOWN, "shard1-sx", booted_at=-1)
    p = prove(watched(steady(restarted)))
    assert not p.ok and "restarted after shard1-m was last seen" in p.reason


def test_an_acker_boot_that_moved_by_less_than_a_second_is_a_restart() -> None:
    """The prober publishes one boot time per boot (a slow probe cannot move it), so any change is
    a restart, even a small one: the proof refuses."""
    restarted = changed(IDC1_DOWN, "shard1-sx", booted_at=H[NodeName("shard1-sx")].booted_at + 0.5)
    p = prove(watched(steady(restarted)))
    assert not p.ok and "restarted after shard1-m was last seen" in p.reason


def test_an_acker_that_went_back_is_not_proven() -> None:
    """Received 105 while the primary answered, 100 now: part of its relay log is gone."""
    both = changed(H, "shard1-m", gtid_binlog_pos=pos(TOPO, SHARD, 105))
    both = with_replica(both, "shard1-sx", gtid_io_pos=pos(TOPO, SHARD, 105))
    p = prove(frames((H, 3.0, 6), (both, 0.5, 1), (IDC1_DOWN, 4.0, 8)))
    assert not p.ok and "went back" in p.reason


def test_an_acker_still_connected_to_the_primary_is_not_a_candidate() -> None:
    """If the acker still hears the primary, the primary is not gone for it: no promotion."""
    connected = with_replica(IDC1_DOWN, "shard1-sx", io_running="Yes", last_io_errno=0)
    p = prove(watched(steady(connected)))
    assert not p.ok and "still connected" in p.reason


def test_an_acker_stopped_by_hand_does_not_corroborate_a_silent_loss() -> None:
    """The primary times out (maybe only the controller is cut off) and the acker's IO thread was
    stopped by hand: nothing corroborates the loss, so no proof."""
    stopped = with_replica(IDC1_DOWN, "shard1-sx", io_running="No", last_io_errno=0)
    p = prove(watched(steady(stopped)))
    assert not p.ok and "not corroborated" in p.reason


@settings(max_examples=300, deadline=None)
@given(
    watch_s=st.floats(0.0, 20.0),
    blind_s=st.floats(0.0, 60.0),
    loss_s=st.floats(0.0, 10.0),
    interval=st.sampled_from([0.2, 0.5, 1.0]),
    max_blind_s=st.floats(0.5, 30.0),
)
def test_no_promotion_after_a_blind_spell_longer_than_the_bound(
    watch_s: float, blind_s: float, loss_s: float, interval: float, max_blind_s: float
) -> None:
    """Whatever the lengths of watch, blind spell and loss, and the probe interval: the proof holds
    only if the primary went unwatched (last answer -> first round showing the acker's lost link)
    for at most max_blind_s; and it does hold when that spell is within the bound (less a round of
    slack) and the watch long enough, so the property cannot pass by refusing everything."""
    parts = []
    for nodes, seconds in ((H, watch_s), (IDC1_SILENT, blind_s), (IDC1_DOWN, loss_s)):
        rounds = int(seconds / interval)
        if rounds:
            parts.append((nodes, rounds * interval, rounds))
    hist = frames(*parts)
    if not hist:
        return
    answered = [s.taken_at for s in hist if s.nodes["shard1-m"].reachable]
    lost = [s.taken_at for s in hist if s.nodes[SX].replica is not None and s.nodes[SX].replica.link_lost]
    p = prove(hist, max_blind_s=max_blind_s, min_watch_s=1.0)
    if not answered or not lost:
        assert not p.ok
        return
    unwatched = lost[0] - answered[-1]
    if p.ok:
        assert unwatched <= max_blind_s + 1e-9
    elif unwatched <= max_blind_s - interval and answered[-1] - answered[0] >= 1.0:
        raise AssertionError(f"refused a proof owed: {p.reason}")
