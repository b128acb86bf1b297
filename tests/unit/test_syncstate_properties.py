"""Properties of the sync-state machine over random worlds: an unacked commit always ends
safety; a climb needs evidence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from idc_ha.model.ids import SyncState
from idc_ha.model.state import Recovery, ShardRecord

from .builders import (
    SAFE,
    TOPO,
    UPTIME,
    baseline,
    changed,
    lost,
    pos,
    record,
    with_master,
    with_replica,
)
from .test_syncstate import (
    MS,
    SX,
    H,
    M,
    Nodes,
    S,
    acker_at,
    acking,
    step,
)

# -- properties -------------------------------------------------------------------------------------


@st.composite
def worlds(draw: st.DrawFn) -> tuple[ShardRecord, Nodes]:
    """A shard1 record in any state and an observation of its nodes with any semi-sync settings."""
    nodes = with_master(
        changed(
            H,
            M,
            gtid_binlog_pos=pos(TOPO, S, draw(st.integers(100, 102))),
            booted_at=-draw(st.sampled_from([UPTIME, 30])),
        ),
        M,
        enabled=draw(st.booleans()),
        status=draw(st.booleans()),
        wait_point=draw(st.sampled_from(["AFTER_SYNC", "AFTER_COMMIT", "after_sync"])),
        timeout_ms=draw(st.sampled_from([18446744073709551615, 10_000])),
        clients=draw(st.integers(0, 1)),
        no_tx=draw(st.integers(0, 3)),
    )
    nodes = acker_at(nodes, draw(st.integers(98, 102)))
    if draw(st.booleans()):
        nodes = with_replica(nodes, SX, io_running="Connecting")
    if draw(st.booleans()):
        nodes = acking(nodes, SX, on=False)
    if draw(st.booleans()):
        nodes = acking(nodes, MS)
    if draw(st.booleans()):
        nodes = lost(TOPO, nodes, [SX])
    if draw(st.integers(0, 4)) == 0:
        nodes = lost(TOPO, nodes, [M])
    sync = draw(st.sampled_from(list(SyncState)))
    rec = record(TOPO, S, sync=sync)
    if sync in SAFE and draw(st.booleans()):
        rec = rec.model_copy(update={"baseline": baseline(TOPO, M, no_tx=draw(st.integers(0, 3)))})
    if sync not in SAFE and draw(st.booleans()):
        rec = rec.model_copy(
            update={
                "recovery": Recovery(
                    target=pos(TOPO, S, draw(st.integers(99, 102))),
                    baseline=baseline(TOPO, M, no_tx=draw(st.integers(0, 3))),
                )
            }
        )
    return rec, nodes


@given(worlds())
def test_an_unchanging_cluster_reaches_a_fixed_point(world: tuple[ShardRecord, Nodes]) -> None:
    """Fed the same observation again and again, the record stops changing within three ticks."""
    rec, nodes = world
    for _ in range(3):
        rec = step(rec, nodes)
    assert step(rec, nodes) is rec


@given(worlds())
def test_never_safe_in_one_step_without_a_recovery(world: tuple[ShardRecord, Nodes]) -> None:
    """An ASYNC or UNKNOWN record with no recovery in progress never becomes safe on one observation."""
    rec, nodes = world
    if rec.sync not in SAFE and rec.recovery is None:
        assert step(rec, nodes).sync not in SAFE


@st.composite
def unacked_worlds(draw: st.DrawFn) -> tuple[ShardRecord, Nodes]:
    """Any world, made into a safe record whose primary (same boot, semi-sync enabled) has let at
    least one commit through without an ack since the baseline."""
    rec, nodes = draw(worlds())
    b = draw(st.integers(0, 3))
    rec = rec.model_copy(
        update={"sync": draw(st.sampled_from(sorted(SAFE))), "recovery": None, "baseline": baseline(TOPO, M, no_tx=b)}
    )
    if not nodes[M].reachable:
        nodes = {**nodes, M: H[M]}
    nodes = with_master(changed(nodes, M, booted_at=-UPTIME), M, enabled=True, no_tx=b + draw(st.integers(1, 3)))
    return rec, nodes


@given(unacked_worlds())
def test_an_unacked_commit_always_ends_safety(world: tuple[ShardRecord, Nodes]) -> None:
    """A safe record whose primary (same boot) shows no_tx above the baseline becomes ASYNC."""
    rec, nodes = world
    assert step(rec, nodes).sync == SyncState.ASYNC


def likely(p_true: int = 4) -> st.SearchStrategy[bool]:
    """True about p_true times in p_true + 1."""
    return st.sampled_from([True] * p_true + [False])


@st.composite
def climb_worlds(draw: st.DrawFn) -> tuple[ShardRecord, Nodes]:
    """An ASYNC or UNKNOWN record with a recovery in progress, and a cluster in which each thing a
    climb needs is usually, but not always, in place: climbs and near misses are both common."""
    no_tx = draw(st.integers(0, 2))
    nodes = with_master(
        H,
        M,
        enabled=draw(likely()),
        status=draw(likely()),
        wait_point="AFTER_SYNC" if draw(likely()) else "AFTER_COMMIT",
        timeout_ms=18446744073709551615 if draw(likely()) else 10_000,
        clients=1 if draw(likely()) else 0,
        no_tx=no_tx + (0 if draw(likely()) else 1),
    )
    nodes = acker_at(nodes, draw(st.integers(99, 101)))
    if not draw(likely()):
        nodes = with_replica(nodes, SX, io_running="Connecting")
    if not draw(likely()):
        nodes = acking(nodes, SX, on=False)
    if not draw(likely(8)):
        nodes = lost(TOPO, nodes, [SX])
    rec = record(TOPO, S, sync=draw(st.sampled_from([SyncState.ASYNC, SyncState.UNKNOWN])))
    rec = rec.model_copy(
        update={
            "recovery": Recovery(
                target=pos(TOPO, S, draw(st.integers(99, 101))), baseline=baseline(TOPO, M, no_tx=no_tx)
            )
        }
    )
    return rec, nodes


@given(st.one_of(worlds(), climb_worlds()))
def test_reaching_safety_needs_everything_in_force(world: tuple[ShardRecord, Nodes]) -> None:
    """A record climbs to a safe state only with semi-sync on at both ends and the target received."""
    rec, nodes = world
    new = step(rec, nodes)
    if rec.sync not in SAFE and new.sync in SAFE:
        m, a = nodes[M].semisync_master, nodes[SX]
        assert m is not None and m.enabled and m.status and m.clients >= 1 and m.wait_point.upper() == "AFTER_SYNC"
        assert a.reachable and a.replica is not None and a.replica.io_connected
        assert a.semisync_slave is not None and a.semisync_slave.status
        assert rec.recovery is not None and a.received().contains(rec.recovery.target)
