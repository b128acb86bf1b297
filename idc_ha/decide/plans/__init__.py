"""One plan builder per kind of operation: an ``Operation`` in, an ordered ``ShardPlan`` out, the
same for a fresh start and for a resume (every step is idempotent). ``plan_for`` picks it."""

from idc_ha.decide.plan import ShardPlan
from idc_ha.decide.plans.idc_failover import failover_plan
from idc_ha.decide.plans.node_failover import node_failover_plan
from idc_ha.model.ids import NodeName
from idc_ha.model.state import Operation


def plan_for(
    op: Operation, *, also_fence: tuple[NodeName, ...] = (), unreachable: frozenset[NodeName] = frozenset()
) -> ShardPlan:
    """The plan of ``op``: a node failover onto the local candidate has its own; one onto the
    acker, like an IDC failover, promotes the acker. ``unreachable``: nodes to fence that were
    seen unreachable (handed to the Fencer without a dial)."""
    if op.via is not None:
        return node_failover_plan(op, also_fence=also_fence, unreachable=unreachable)
    return failover_plan(op, also_fence=also_fence, unreachable=unreachable)


__all__ = ["failover_plan", "node_failover_plan", "plan_for"]
