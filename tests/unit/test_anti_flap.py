"""Anti-flap: a second automatic failover soon after one needs its primary proven dead afresh;
it never holds back the first failover after a restart, nor a primary proven dead."""

from __future__ import annotations

from idc_ha.decide.memory import Memory
from idc_ha.decide.tick import decide
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import ProbeFailure
from idc_ha.model.policy import Policy, Rules
from idc_ha.model.state import Control

from .builders import TOPO, WALL, home_nodes, idc_lost, lost, records, steady, watched
from .test_rules import K

M = NodeName("shard1-m")


def _decide(  # type: ignore[no-untyped-def]
    failure: ProbeFailure,
    *,
    moved_at: float | None,
    seen: bool = True,
    policy: Policy | None = None,
    seconds: float = 4.0,
):
    recs = records(TOPO)
    hist = watched(steady(lost(TOPO, home_nodes(), [M], failure), seconds=seconds))
    epochs = {s: (r.epoch, moved_at if s == "shard1" else None, r.primary) for s, r in recs.items()} if seen else {}
    mem = Memory(adopted=frozenset(recs), epochs=epochs)
    return decide(hist, TOPO, policy or Policy(), recs, Control(), wall=WALL, memory=mem)


def test_a_silent_primary_soon_after_a_failover_waits_with_an_alert() -> None:
    """Timeouts for 4 s (witnessed): enough for a first failover, not yet for a second (4.6 s)."""
    d = _decide(ProbeFailure.TIMEOUT, moved_at=-30.0)
    assert d.plans == ()
    [a] = [a for a in d.alerts if a.kind == K.FLAP_GUARD]
    assert a.shard == "shard1" and "anti_flap_s" in a.reason and "needs 4.6 s" in a.reason
    assert "anti-flap" in d.reasons["shard1"]


def test_a_silent_primary_re_verified_over_two_windows_fails_over() -> None:
    """A machine that lost power (timeouts, witnessed) is failed over one window later, not 600 s."""
    d = _decide(ProbeFailure.TIMEOUT, moved_at=-30.0, seconds=5.0)
    assert [p.shard for p in d.plans] == ["shard1"]


def test_a_primary_proven_dead_by_a_refusal_fails_over_inside_the_window() -> None:
    d = _decide(ProbeFailure.REFUSED, moved_at=-30.0)
    assert [p.shard for p in d.plans] == ["shard1"]


def test_evidence_older_than_the_failover_is_not_fresh() -> None:
    """A timeout streak that began before the epoch did is not re-verified."""
    d = _decide(ProbeFailure.TIMEOUT, moved_at=3.5, seconds=5.0)
    assert d.plans == () and any(a.kind == K.FLAP_GUARD and "began before" in a.reason for a in d.alerts)


def test_a_refusal_or_a_dead_idc_is_proof_whatever_its_age() -> None:
    assert [p.shard for p in _decide(ProbeFailure.REFUSED, moved_at=3.5).plans] == ["shard1"]
    recs = records(TOPO)
    hist = watched(steady(idc_lost(TOPO, home_nodes(), "IDC1")))
    mem = Memory(adopted=frozenset(recs), epochs={s: (1, hist[-1].taken_at, recs[s].primary) for s in recs})
    d = decide(hist, TOPO, Policy(), recs, Control(), wall=WALL, memory=mem)
    assert sorted(p.shard for p in d.plans) == ["meta", "shard1", "shard2"]


def test_the_window_ends() -> None:
    d = _decide(ProbeFailure.TIMEOUT, moved_at=-30.0, policy=Policy(rules=Rules(anti_flap_s=10.0)))
    assert [p.shard for p in d.plans] == ["shard1"]


def test_a_restarted_controller_has_no_window() -> None:
    """Nothing remembered (a restart), or the epoch found at start: the first failover goes ahead."""
    assert [p.shard for p in _decide(ProbeFailure.TIMEOUT, moved_at=None, seen=False).plans] == ["shard1"]
    assert [p.shard for p in _decide(ProbeFailure.TIMEOUT, moved_at=None).plans] == ["shard1"]


def test_the_window_opens_when_this_process_sees_a_new_epoch() -> None:
    recs = records(TOPO)
    hist = watched(steady(home_nodes()))
    mem = Memory(adopted=frozenset(recs), epochs={s: (0, None, "shard0-m") for s in recs})
    d = decide(hist, TOPO, Policy(), recs, Control(), wall=WALL, memory=mem)
    assert d.memory.epochs["shard1"][:2] == (1, hist[0].taken_at)  # the first snapshot that showed it
    fresh = decide(hist, TOPO, Policy(), recs, Control(), wall=WALL, memory=Memory(adopted=frozenset(recs)))
    assert fresh.memory.epochs["shard1"][:2] == (1, None)


def test_a_new_epoch_with_the_same_primary_does_not_open_the_window() -> None:
    """The acker moved back across IDCs (decide/rearm.py bumps the epoch, the primary stays): a
    later failover needs no fresh evidence on that account (found by review)."""
    recs = records(TOPO)
    hist = watched(steady(home_nodes()))
    mem = Memory(adopted=frozenset(recs), epochs={s: (0, None, recs[s].primary) for s in recs})
    d = decide(hist, TOPO, Policy(), recs, Control(), wall=WALL, memory=mem)
    assert d.memory.epochs["shard1"] == (1, None, "shard1-m")
