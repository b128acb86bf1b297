"""The DEAD verdict needs a witness over a whole window, overlapping the controller's own failure streak."""

from __future__ import annotations

from idc_ha.decide.verdicts import Health
from idc_ha.model.observation import ProbeFailure

from .builders import (
    TOPO,
    history,
    idc_lost,
    lost,
    with_replica,
)
from .test_verdicts import (
    H,
    verdicts,
)

REFUSED, TIMEOUT = ProbeFailure.REFUSED, ProbeFailure.TIMEOUT


# -- the witness is a window, not a sample (gap 2) -----------------------------------------------------

CUT_OFF = idc_lost(TOPO, H, "IDC1", witnessed=False)  # the controller cannot reach IDC1; IDC1 is fine
RECONNECTING = with_replica(CUT_OFF, "shard1-sx", io_running="Connecting", last_io_errno=2013)


def test_one_io_reconnect_on_an_acker_is_no_witness() -> None:
    """The controller has been cut off from IDC1 for 5 s; one round shows shard1-sx reconnecting its
    IO thread: shard1-m stays UNREACHABLE (one sample is no corroboration) and IDC1 is not down."""
    hist = history((-1.0, H), *((k * 0.5, CUT_OFF) for k in range(10)), (5.0, RECONNECTING))
    v = verdicts(hist)
    assert v.nodes["shard1-m"].health == Health.UNREACHABLE
    assert v.idcs["IDC1"] != Health.DEAD


def test_a_witness_must_hold_its_lost_link_for_the_whole_window() -> None:
    """The acker has lost its link for 2.0 s of a 4.5 s failure streak of timeouts: not yet
    (confirm_other_s is 2.3 s); at 2.5 s it is DEAD, witnessed by shard1-sx."""
    base = [(-1.0, H), *((k * 0.5, CUT_OFF) for k in range(5))]
    short = history(*base, *((2.5 + k * 0.5, RECONNECTING) for k in range(5)))
    assert verdicts(short).nodes["shard1-m"].health == Health.UNREACHABLE
    assert "confirming" in verdicts(short).nodes["shard1-m"].evidence
    long = history(*base, *((2.5 + k * 0.5, RECONNECTING) for k in range(6)))
    v = verdicts(long).nodes["shard1-m"]
    assert v.health == Health.DEAD and v.witness == "shard1-sx"


def test_a_link_lost_before_the_controller_lost_the_node_counts_from_the_streak() -> None:
    """Gap 4's order: the acker lost its link long before the primary died (a cut link); the
    overlap starts with the controller's own failure streak, so the refused window (0.2 s) confirms."""
    early = with_replica(H, "shard1-sx", io_running="Connecting", last_io_errno=2013)
    gone = lost(TOPO, early, ["shard1-m", "shard1-ms"], REFUSED)
    hist = history(*((k * 0.5, early) for k in range(10)), (5.0, gone), (5.2, gone), (5.4, gone))
    v = verdicts(hist).nodes["shard1-m"]
    assert v.health == Health.DEAD and v.witness == "shard1-sx"


def test_an_io_thread_stopped_by_hand_is_no_witness() -> None:
    """STOP SLAVE IO_THREAD on the acker (no error) while the controller is cut off from IDC1: no witness."""
    stopped = with_replica(CUT_OFF, "shard1-sx", io_running="No", last_io_errno=0)
    hist = history((-1.0, H), *((k * 0.5, stopped) for k in range(10)))
    assert verdicts(hist).nodes["shard1-m"].health == Health.UNREACHABLE


def test_a_refusal_and_an_io_thread_stopped_by_hand_are_no_death() -> None:
    """Refused (maybe a REJECT rule against the controller only) and the acker's IO thread stopped
    by hand (it tried nothing): one vantage point, no witness, UNREACHABLE."""
    stopped = with_replica(H, "shard1-sx", io_running="No", last_io_errno=0)
    gone = lost(TOPO, stopped, ["shard1-m", "shard1-ms"], REFUSED, witnessed=False)
    hist = history(*((k * 0.5, stopped) for k in range(4)), (2.0, gone), (2.2, gone), (2.4, gone), (2.6, gone))
    assert verdicts(hist).nodes["shard1-m"].health == Health.UNREACHABLE


def test_a_witness_that_received_more_was_connected_in_between() -> None:
    """The acker shows a lost link in every round, but its received position moved: it reconnected
    between probes, so its run (and the overlap) begins again at the move."""
    from .builders import pos

    moved = with_replica(RECONNECTING, "shard1-sx", gtid_io_pos=pos(TOPO, "shard1", 101))
    hist = history((-1.0, H), *((k * 0.5, RECONNECTING) for k in range(8)), *((4.0 + k * 0.5, moved) for k in range(3)))
    assert verdicts(hist).nodes["shard1-m"].health == Health.UNREACHABLE


# -- a silent link is a witness before the IO thread gives up (issue 8) --------------------------------


def _beating(nodes: dict, beats: int, *, read: int = 100) -> dict:  # type: ignore[type-arg]
    """Every replica connected with heartbeats on (0.5 s), having received ``beats`` of them."""
    out = dict(nodes)
    for n, o in nodes.items():
        if o.reachable and o.replica is not None and o.replica.io_running == "Yes":
            out = with_replica(
                out,
                n,
                heartbeat_period_s=0.5,
                heartbeats=beats,
                read_at=f"bin.000001:{read}",
                io_state="Waiting for master to send event",
            )
    return out


def test_a_silent_link_witnesses_a_frozen_idc_before_slave_net_timeout() -> None:
    """IDC1 frozen at 0: the controller's probes time out and nothing reaches IDC2 any more, though
    its IO threads still say Yes. The silence started with the streak, so the window confirms."""
    frames = [(k * 0.2 - 2.0, _beating(H, k)) for k in range(10)]  # heartbeats arriving
    frozen = _beating(CUT_OFF, 9)  # nothing new from 0 on
    frames += [(round(k * 0.25, 2), frozen) for k in range(14)]  # 0 .. 3.25 s
    v = verdicts(history(*frames))
    m = v.nodes["shard1-m"]
    assert m.health == Health.DEAD and m.witness in ("shard1-sx", "shard1-ms"), m
    assert v.idcs["IDC1"] == Health.DEAD


def test_a_link_still_beating_is_no_witness() -> None:
    """The controller alone is cut off from IDC1: heartbeats keep arriving in IDC2 (and bytes keep
    being read), so nothing is silent and nothing is confirmed, however long it lasts."""
    frames = [(k * 0.25, _beating(CUT_OFF, k, read=100 + k)) for k in range(30)]
    v = verdicts(history(*frames))
    assert v.nodes["shard1-m"].health == Health.UNREACHABLE
    assert v.idcs["IDC1"] != Health.DEAD


def test_quiet_without_heartbeats_is_no_witness() -> None:
    """With no heartbeat period (an idle source sends nothing), an unchanged link proves nothing."""
    frames = [(k * 0.25, CUT_OFF) for k in range(30)]
    assert verdicts(history(*frames)).nodes["shard1-m"].health == Health.UNREACHABLE


def test_a_frozen_idc_fails_over_while_the_ackers_still_say_connected() -> None:
    """The proof takes an acker silent for 3 heartbeat periods as having lost its primary, though
    its IO thread has not timed out yet: every shard starts its IDC failover."""
    from .test_rules import run

    frames = [(k * 0.2 - 2.0, _beating(H, k)) for k in range(10)]
    frozen = _beating(CUT_OFF, 9)
    frames += [(round(k * 0.25, 2), frozen) for k in range(14)]
    d = run(history(*frames))
    assert sorted(p.shard for p in d.plans) == ["meta", "shard1", "shard2"], d.reasons


def test_no_failover_while_the_ackers_still_receive_heartbeats() -> None:
    from .test_rules import run

    frames = [(k * 0.25 - 2.0, _beating(H, k)) for k in range(8)]
    frames += [(k * 0.25, _beating(CUT_OFF, 8 + k)) for k in range(20)]
    d = run(history(*frames))
    assert d.plans == () and "unreachable from here only" in d.reasons["shard1"], d.reasons


def test_a_busy_io_thread_is_not_silent() -> None:
    """The counters stand still while the IO thread is busy (queueing a big event, held by
    relay_log_space_limit): with the controller cut off from IDC1, that is no witness."""
    frames = [(k * 0.2 - 2.0, _beating(H, k)) for k in range(10)]
    busy = _beating(CUT_OFF, 9)
    for n in ("meta-sx", "shard1-sx", "shard2-sx"):
        busy = with_replica(busy, n, io_state="Waiting for the slave SQL thread to free enough relay log space")
    frames += [(round(k * 0.25, 2), busy) for k in range(14)]
    v = verdicts(history(*frames))
    assert v.nodes["shard1-m"].health == Health.UNREACHABLE and v.idcs["IDC1"] != Health.DEAD
