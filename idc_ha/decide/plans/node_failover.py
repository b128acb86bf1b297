"""The steps of a node failover onto the local candidate (docs/failover.md says why each is where
it is). A node failover onto the acker is an IDC failover's plan."""

from __future__ import annotations

from idc_ha.decide.plan import (
    CatchUp,
    Detach,
    RecordPromotionPoint,
    ShardPlan,
    Step,
    StopReceiving,
    WaitRelayApplied,
)
from idc_ha.decide.plans.common import fences, open_up
from idc_ha.model.ids import NodeName
from idc_ha.model.state import Operation


def node_failover_plan(
    op: Operation, *, also_fence: tuple[NodeName, ...] = (), unreachable: frozenset[NodeName] = frozenset()
) -> ShardPlan:
    t, old, via = op.target, op.old_primary, op.via
    assert via is not None, "a node failover onto the local candidate names the acker it catches up from"
    settle: list[Step] = []
    for n in (via, *(r for r in op.repoint if r != via), t):
        settle += [
            StopReceiving(node=n, reason=f"fix what {n} received from {old}"),
            WaitRelayApplied(node=n, reason=f"{n}'s relay log is applied before anything restarts its IO thread"),
        ]
    steps = [
        *fences(op, also_fence, unreachable),
        *settle,
        CatchUp(node=t, source=via, reason=f"{t} must hold every commit {via} acknowledged before it is primary"),
        RecordPromotionPoint(node=t, reason="returning nodes are judged against what the new primary holds"),
        Detach(node=t, reason=f"{t} stops being a replica"),
        *open_up(op, repoint=tuple(r for r in op.repoint if r not in op.new_ackers)),
    ]
    return ShardPlan(shard=op.shard, op_id=op.id, steps=tuple(steps), reason=op.reason)
