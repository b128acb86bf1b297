"""The sync state machine beyond the transition table: recoveries, baselines, restarts and boots."""

from __future__ import annotations

from idc_ha.decide.syncstate import safe_state
from idc_ha.model.ids import SyncState
from idc_ha.model.state import Recovery

from .builders import (
    SAFE,
    TOPO,
    UPTIME,
    WALL,
    baseline,
    changed,
    pos,
    snapshot,
    with_master,
)
from .test_syncstate import (
    ASYNC,
    IDC_SAFE,
    MS,
    SX,
    H,
    M,
    S,
    step,
    waiting,
)


def test_recovery_target_is_the_primary_binlog_position_and_baseline_its_counters() -> None:
    """The recovery waits for the primary's binlog position seen now, from its current no_tx count."""
    new = step(ASYNC, with_master(changed(H, M, gtid_binlog_pos=pos(TOPO, S, 120)), M, no_tx=4))
    assert new.recovery is not None
    assert new.recovery.target == pos(TOPO, S, 120)
    assert new.recovery.baseline == baseline(TOPO, M, no_tx=4)


def test_reaching_safety_adopts_the_recovery_baseline() -> None:
    """Once proven, the record's baseline is the one from the start of the recovery."""
    rec = waiting(no_tx=3)
    new = step(rec, with_master(H, M, no_tx=3))
    assert new.sync == SyncState.IDC_SAFE
    assert rec.recovery is not None and new.baseline == rec.recovery.baseline


def test_no_tx_rise_during_recovery_restarts_it() -> None:
    """An un-acked commit while waiting restarts the recovery from the new position and counters."""
    nodes = with_master(changed(H, M, gtid_binlog_pos=pos(TOPO, S, 105)), M, no_tx=1)
    new = step(waiting(100, no_tx=0), nodes)
    assert new.sync == SyncState.UNKNOWN
    assert new.recovery == Recovery(target=pos(TOPO, S, 105), baseline=baseline(TOPO, M, no_tx=1))


def test_a_primary_restart_is_proven_again_before_it_counts_as_safe() -> None:
    """A restart leaves semi-sync unwatched from boot to first answer (a restart with semi-sync off
    in its config commits uncounted): UNKNOWN, then the usual climb back to IDC_SAFE on evidence,
    with the new boot as baseline."""
    restarted = changed(H, M, booted_at=-30)
    new = step(IDC_SAFE, restarted)
    assert new.sync == SyncState.UNKNOWN and "restarted" in new.reason and new.baseline is None
    waiting_ = step(new, restarted)
    assert waiting_.recovery is not None and waiting_.recovery.target == pos(TOPO, S)
    safe = step(waiting_, restarted)
    assert safe.sync == SyncState.IDC_SAFE
    assert safe.baseline is not None and safe.baseline.boot_wall == round(WALL - 30)
    assert step(safe, restarted) is safe


def test_a_restarted_primary_that_committed_without_acks_is_async() -> None:
    """Counters since the restart show un-acked commits or a switch-off: ASYNC, not UNKNOWN."""
    new = step(IDC_SAFE, with_master(changed(H, M, booted_at=-30), M, no_times=1))
    assert new.sync == SyncState.ASYNC and "switched off 1 time" in new.reason


def test_a_safe_record_without_baseline_is_proven_again() -> None:
    """A safe record missing its baseline has nothing to compare the counters with: UNKNOWN."""
    new = step(IDC_SAFE.model_copy(update={"baseline": None}), with_master(H, M, no_tx=7))
    assert new.sync == SyncState.UNKNOWN and "no semi-sync counter baseline" in new.reason


def test_boot_time_jitter_within_tolerance_is_the_same_boot() -> None:
    """A few seconds of jitter in the boot time is not a restart."""
    assert step(IDC_SAFE, changed(H, M, booted_at=-UPTIME - 3)) is IDC_SAFE


def test_a_repeated_bad_observation_writes_once() -> None:
    """The same unsafe condition seen again returns the same record: no write per tick."""
    nodes = with_master(H, M, enabled=False)
    first = step(IDC_SAFE, nodes)
    assert step(first, nodes) is first


def test_wait_no_slave_off_is_not_safe() -> None:
    """With wait_no_slave OFF semi-sync can fall back unseen, so the shard is not counted synchronous."""
    new = step(IDC_SAFE, with_master(H, M, wait_no_slave=False))
    assert new.sync not in SAFE


def test_safe_state_depends_on_where_the_ackers_are() -> None:
    """IDC_SAFE when every acker is outside the primary's IDC, NODE_SAFE when one is inside it."""
    assert safe_state(IDC_SAFE, TOPO) == SyncState.IDC_SAFE
    assert safe_state(IDC_SAFE.model_copy(update={"ackers": (MS,)}), TOPO) == SyncState.NODE_SAFE
    assert safe_state(IDC_SAFE.model_copy(update={"ackers": (SX, MS)}), TOPO) == SyncState.NODE_SAFE


def test_a_wall_clock_step_is_no_restart_for_a_running_controller() -> None:
    """The baseline's boot is on the wall clock (it is durable). Once this controller has matched
    it, boot times on its decision clock decide, so an NTP step of 30 s changes nothing (review 3,
    F7). A controller started after the step has only the wall clock, and proves the shard again."""
    from idc_ha.decide.memory import Memory
    from idc_ha.decide.tick import decide
    from idc_ha.model.policy import Policy
    from idc_ha.model.state import Control

    from .builders import records

    recs = records()
    memory = None
    for k in range(5):
        snap = snapshot(H, at=k * 0.2)
        d = decide((snap,), TOPO, Policy(), recs, Control(), wall=snap.wall, memory=memory)
        memory = d.memory
        recs.update(d.records)
    assert recs[S].sync == SyncState.IDC_SAFE
    stepped = snapshot(H, at=1.2).model_copy(update={"wall": WALL + 1.2 + 30.0})
    d = decide((stepped,), TOPO, Policy(), recs, Control(), wall=stepped.wall, memory=memory)
    assert d.records == {}, "a wall-clock step was taken for a restart"
    fresh = decide(
        (stepped,), TOPO, Policy(), recs, Control(), wall=stepped.wall, memory=Memory(adopted=frozenset(recs))
    )
    assert fresh.records[S].sync == SyncState.UNKNOWN and "restarted" in fresh.records[S].reason


def test_yes_tx_going_back_is_proven_again() -> None:
    """A restart too quick for the boot time to show resets the counters to the baseline's 0/0,
    but Rpl_semi_sync_master_yes_tx falls: UNKNOWN, proven again (review 4, F1)."""
    from .builders import Ticker, records

    tk = Ticker(records())
    tk.run(0.0, 1.0, with_master(H, M, yes_tx=3))
    assert tk.recs[S].sync == SyncState.IDC_SAFE
    d = tk.tick(1.0, with_master(H, M, yes_tx=0))
    assert d.records[S].sync == SyncState.UNKNOWN and "yes_tx" in d.records[S].reason
