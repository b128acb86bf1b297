"""decide() over a history at once equals the same history fed tick by tick, up to the first plan.

The daemon hands decide() one new snapshot a tick; tests, replays and a controller that fell
behind hand it several. Both must move the watched state alike (streaks, the IDC latch, adoption,
sync-state records, ack watches, contacts): a batch that judged the sync state on its last
snapshot only would miss a second acker seen in the middle, and promote where the daemon refuses.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from idc_ha.decide.plan import Decision
from idc_ha.decide.tick import decide
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import NodeObservation, SemiSyncSlave, Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import Control, ShardRecord

from .builders import (
    SHARDS,
    TOPO,
    changed,
    home_nodes,
    idc_lost,
    lost,
    record,
    snapshot,
    with_master,
)

Nodes = dict[NodeName, NodeObservation]
NODE_NAMES = [n.name for n in TOPO.nodes]
SYNC_KINDS = (AlertKind.SYNC_DEGRADED, AlertKind.SYNC_RESTORED)


@st.composite
def phase(draw: st.DrawFn) -> Nodes:
    """One state of the cluster: healthy, or with semi-sync weakened, a second acker, lost nodes
    or a lost IDC."""
    nodes = home_nodes()
    for s in SHARDS:
        k = draw(st.integers(0, 7))
        if k == 0:
            nodes = with_master(nodes, NodeName(f"{s}-m"), status=False)
        elif k == 1:
            nodes = with_master(nodes, NodeName(f"{s}-m"), no_tx=1)
        elif k == 2:
            nodes = changed(nodes, NodeName(f"{s}-ms"), semisync_slave=SemiSyncSlave(enabled=True, status=True))
        elif k == 3:  # promoted by hand: a writable rival, the recorded primary read-only
            nodes = changed(nodes, NodeName(f"{s}-sx"), read_only=False, replica=None)
            nodes = changed(nodes, NodeName(f"{s}-m"), read_only=True)
    if draw(st.booleans()):
        nodes = idc_lost(TOPO, nodes, draw(st.sampled_from(("IDC1", "IDC2", "IDC3"))), witnessed=draw(st.booleans()))
    if draw(st.booleans()):
        nodes = lost(TOPO, nodes, sorted(draw(st.sets(st.sampled_from(NODE_NAMES), max_size=2))))
    return nodes


@st.composite
def histories(draw: st.DrawFn) -> tuple[tuple[Snapshot, ...], dict[ShardName, ShardRecord]]:
    phases = draw(st.lists(phase(), min_size=1, max_size=3))
    snaps: list[Snapshot] = []
    at = 0.0
    for nodes in phases:
        for _ in range(draw(st.integers(1, 8))):
            snaps.append(snapshot(nodes, at=round(at, 3)))
            at += draw(st.sampled_from((0.2, 0.5, 1.0)))
    recs = {
        s: record(TOPO, s, sync=draw(st.sampled_from(list(SyncState)))) for s in SHARDS if draw(st.integers(0, 4)) != 0
    }
    return tuple(snaps), recs


def per_tick(
    hist: tuple[Snapshot, ...], recs: dict[ShardName, ShardRecord]
) -> tuple[list[Decision], dict[ShardName, ShardRecord]]:
    """decide() as the daemon calls it: one snapshot a tick, memory and written records carried."""
    out: list[Decision] = []
    held = dict(recs)
    memory = None
    for snap in hist:
        d = decide((snap,), TOPO, Policy(), held, Control(), wall=snap.wall, memory=memory)
        memory = d.memory
        held.update(d.records)
        out.append(d)
    return out, held


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_history_at_once_decides_as_tick_by_tick(
    world: tuple[tuple[Snapshot, ...], dict[ShardName, ShardRecord]],
) -> None:
    hist, recs = world
    ticks, held = per_tick(hist, recs)
    assume(not any(d.plans for d in ticks[:-1]))  # a plan started earlier would have run meanwhile
    batch = decide(hist, TOPO, Policy(), recs, Control(), wall=hist[-1].wall)
    last = ticks[-1]
    assert {**recs, **batch.records} == held
    assert batch.plans == last.plans
    assert batch.reasons == last.reasons
    assert batch.verdicts == last.verdicts
    assert batch.reconcile == last.reconcile
    assert batch.memory == last.memory
    # the sync-state alerts of every tick, and the other alerts of the last
    sync = Counter(a for d in ticks for a in d.alerts if a.kind in SYNC_KINDS)
    assert Counter(a for a in batch.alerts if a.kind in SYNC_KINDS) == sync
    assert [a for a in batch.alerts if a.kind not in SYNC_KINDS] == [a for a in last.alerts if a.kind not in SYNC_KINDS]


def test_a_second_acker_seen_mid_history_is_not_forgotten_by_a_batch() -> None:
    """The review's case: shard1-ms acked for two rounds before IDC1 died. Tick by tick shard1 goes
    UNKNOWN and is refused; the batch must not keep IDC_SAFE and promote it."""
    h = home_nodes()
    rogue = changed(h, "shard1-ms", semisync_slave=SemiSyncSlave(enabled=True, status=True))
    down = idc_lost(TOPO, h, "IDC1")
    frames = [(k * 0.2, h) for k in range(14)] + [(2.8, rogue), (3.0, rogue)]
    frames += [(round(3.2 + k * 0.2, 3), down) for k in range(20)]
    hist = tuple(snapshot(n, at=round(at, 3)) for at, n in frames)
    recs = {s: record(TOPO, s) for s in SHARDS}
    ticks, held = per_tick(hist, recs)
    batch = decide(hist, TOPO, Policy(), recs, Control(), wall=hist[-1].wall)
    assert held["shard1"].sync == SyncState.UNKNOWN
    assert "shard1" not in {p.shard for d in ticks for p in d.plans}
    assert batch.records["shard1"].sync == SyncState.UNKNOWN
    assert "shard1" not in {p.shard for p in batch.plans}
