"""decide() over random worlds: the safety properties hold and the decision is deterministic."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idc_ha.decide.plan import (
    OpenWrites,
)
from idc_ha.decide.plans import failover_plan
from idc_ha.decide.tick import decide
from idc_ha.model.ids import ShardName, SyncState
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Policy, Rules
from idc_ha.model.state import Control, ShardRecord

from .builders import (
    SHARDS,
    TOPO,
    WALL,
    changed,
    failover_op,
    history,
    home_nodes,
    idc_lost,
    lost,
    pos,
    record,
    steady,
)
from .test_rules import (
    K,
    T,
)

# -- properties over random worlds ------------------------------------------------------------------

NODE_NAMES = [n.name for n in TOPO.nodes]


def mostly(common: T, *others: T) -> st.SearchStrategy[T]:
    """``common`` half of the time, else one of ``others``: keeps the interesting worlds frequent."""
    return st.one_of(st.just(common), st.sampled_from([common, *others]))


@st.composite
def worlds(draw: st.DrawFn) -> tuple[tuple[Snapshot, ...], dict[ShardName, ShardRecord], Control, Policy]:
    """Random reachability (whole IDCs and single nodes, witnessed or not), history lengths, lags,
    sync states, recorded ackers, pauses, rule switch and operations in flight."""
    nodes = home_nodes()
    idcs = draw(mostly(("IDC1",), (), ("IDC1", "IDC2"), ("IDC2",), ("IDC1", "IDC3"), ("IDC3",)))
    nodes = idc_lost(TOPO, nodes, *idcs, witnessed=draw(mostly(True, False)))
    if draw(st.booleans()):
        nodes = lost(TOPO, nodes, sorted(draw(st.sets(st.sampled_from(NODE_NAMES), max_size=2))), witnessed=True)
        nodes = lost(TOPO, nodes, sorted(draw(st.sets(st.sampled_from(NODE_NAMES), max_size=1))), witnessed=False)
    for s in SHARDS:
        for role in ("sx", "cas"):
            name = f"{s}-{role}"
            if nodes[name].reachable and draw(st.integers(0, 3)) == 0:
                nodes = changed(nodes, name, gtid_current_pos=pos(TOPO, s, draw(st.integers(99, 101))))
    seconds, rounds = draw(mostly((4.0, 5), (1.0, 3), (0.2, 2), (0.0, 1)))
    hist = steady(nodes, seconds=seconds, rounds=rounds)
    if draw(st.booleans()):
        hist = history((-1.0, home_nodes()), *((s.taken_at, s.nodes) for s in hist))
    recs: dict[ShardName, ShardRecord] = {}
    for s in SHARDS:
        if draw(st.integers(0, 5)) == 0:
            continue  # no record yet
        acker = f"{s}-{draw(mostly('sx', 'cas', 'rem', 'ms'))}"
        recs[s] = record(TOPO, s, sync=draw(mostly(*SyncState)), ackers=(acker,))
        if draw(st.integers(0, 4)) == 0:
            recs[s] = recs[s].model_copy(update={"op": failover_op(s)})
    control = Control(
        paused=draw(st.integers(0, 7)) == 0,
        paused_shards=draw(mostly((), ("meta",), ("shard1",), ("shard2",))),
    )
    policy = Policy(rules=Rules(auto_idc_failover=draw(st.integers(0, 4)) != 0))
    return hist, recs, control, policy


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_decide_keeps_its_safety_properties(
    world: tuple[tuple[Snapshot, ...], dict[ShardName, ShardRecord], Control, Policy],
) -> None:
    """Whatever the world: at most one plan per shard, writes opened only on the op's target, new
    operations only from IDC_SAFE records and never across cities, nothing new when paused, off or
    when the main city is down."""
    hist, recs, control, policy = world
    d = decide(hist, TOPO, policy, recs, control, wall=WALL)
    shards = [p.shard for p in d.plans]
    assert len(shards) == len(set(shards))
    city_down = any(a.kind == K.MAIN_CITY_DOWN for a in d.alerts)
    for plan in d.plans:
        before = recs.get(plan.shard)
        rec = d.records.get(plan.shard) or before
        assert rec is not None and rec.op is not None and rec.op.id == plan.op_id
        op = rec.op
        assert [s.node for s in plan.steps if isinstance(s, OpenWrites)] == [op.target]
        assert TOPO.city_of(op.target) == TOPO.city_of(op.old_primary)
        if before is None or before.op is None:  # a new operation
            # from IDC_SAFE as held before the last snapshot (earlier ones move the sync state as
            # ticks of their own would)
            held = decide(hist[:-1], TOPO, policy, recs, control, wall=WALL).records if len(hist) > 1 else {}
            prior = held.get(plan.shard) or before
            assert prior is not None and prior.sync == SyncState.IDC_SAFE
            assert not control.is_paused(plan.shard)
            assert policy.rules.auto_idc_failover
            assert not city_down
            assert op.target == prior.ackers[0] and op.old_primary == prior.primary
        else:
            strays = tuple(
                n.name
                for n in TOPO.nodes_by_shard[plan.shard]
                if n.name != before.op.target and (o := hist[-1].nodes.get(n.name)) is not None and o.writable
            )
            assert plan == failover_plan(before.op, also_fence=strays)
    assert not [a for a in d.alerts if "invariant violated" in a.reason], (
        "a rule produced a plan that broke an invariant"
    )


@settings(max_examples=100, deadline=None)
@given(worlds())
def test_decide_is_deterministic(
    world: tuple[tuple[Snapshot, ...], dict[ShardName, ShardRecord], Control, Policy],
) -> None:
    """The same inputs always give the same decision: a recorded history replays exactly."""
    hist, recs, control, policy = world
    assert decide(hist, TOPO, policy, recs, control, wall=WALL) == decide(hist, TOPO, policy, recs, control, wall=WALL)
