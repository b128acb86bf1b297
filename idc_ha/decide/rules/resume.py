"""An operation in flight is resumed, whatever else is true: a half-done failover is finished
(stopping half-way would leave the shard without a writable primary)."""

from __future__ import annotations

from idc_ha.decide.plan import Fence, ShardPlan
from idc_ha.decide.plans import plan_for
from idc_ha.decide.rules.base import Outcome, ShardView, writable_strays


def rule(v: ShardView) -> Outcome | None:
    op = v.rec.op
    if op is None:
        return None
    fence = tuple(
        dict.fromkeys((*(op.fence or (op.old_primary,)), *writable_strays(v.rec.shard, op.target, v.snap, v.t)))
    )
    last = v.plans.get(op.id)
    if last is not None and _fences(last) == fence and last.reason == op.reason:
        plan = last  # the same operation and the same nodes to fence: the same plan
    else:
        plan = plan_for(op, also_fence=fence)
    return Outcome(reason=f"resuming {op.kind} {op.id}: {op.reason}", plan=plan)


def _fences(plan: ShardPlan) -> tuple[str, ...]:
    return tuple(s.node for s in plan.steps if isinstance(s, Fence))
