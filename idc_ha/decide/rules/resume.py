"""An operation in flight is resumed, whatever else is true: a half-done failover is finished
(stopping half-way would leave the shard without a writable primary)."""

from __future__ import annotations

from idc_ha.decide.plans import failover_plan
from idc_ha.decide.rules.base import Outcome, ShardView, writable_strays


def rule(v: ShardView) -> Outcome | None:
    op = v.rec.op
    if op is None:
        return None
    plan = failover_plan(op, also_fence=writable_strays(v.rec.shard, op.target, v.snap, v.t))
    return Outcome(reason=f"resuming {op.kind} {op.id}: {op.reason}", plan=plan)
