"""An operation in flight is resumed, whatever else is true: a half-done failover is finished
(stopping half-way would leave the shard without a writable primary).

One exception: a node failover onto the local candidate whose target has failed before the new
layout was committed (it never opened for writes) is handed over to the acker, with the same
RPO=0 proof an IDC failover needs, the failed candidate fenced, and a ``moved_idc`` alert. Retrying
a dead target would block, for good, the failover the shard is owed (its IDC may be dying).
"""

from __future__ import annotations

from idc_ha.decide.plan import Fence, ShardPlan
from idc_ha.decide.plans import plan_for
from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert, writable_strays
from idc_ha.decide.rules.promote import not_proven, prove_acker, to_acker
from idc_ha.decide.verdicts import Health
from idc_ha.model.alert import AlertKind, Severity
from idc_ha.model.state import OpKind


def rule(v: ShardView) -> Outcome | None:
    op = v.rec.op
    if op is None:
        return None
    if op.via is not None and v.rec.primary != op.target:
        gone = v.verdicts.failed(op.target) or v.verdicts.idcs[v.t.idc_of(op.target)] == Health.DEAD
        if gone:
            return _hand_over(v)
    fence = tuple(
        dict.fromkeys((*(op.fence or (op.old_primary,)), *writable_strays(v.rec.shard, op.target, v.snap, v.t)))
    )
    last = v.plans.get(op.id)
    if last is not None and _fences(last) == fence and last.reason == op.reason:
        plan = last  # the same operation and the same nodes to fence: the same plan
    else:
        plan = plan_for(op, also_fence=fence)
    return Outcome(reason=f"resuming {op.kind} {op.id}: {op.reason}", plan=plan)


def _hand_over(v: ShardView) -> Outcome:
    op = v.rec.op
    assert op is not None
    what = (
        f"the node failover's target {op.target} failed before it was promoted ({v.verdicts.nodes[op.target].evidence})"
    )
    proof = prove_acker(v)
    if not proof.ok or proof.candidate is None:
        return not_proven(v, what, proof.reason)
    moved = shard_alert(
        AlertKind.MOVED_IDC,
        v.rec,
        f"{v.rec.shard} moves to IDC {v.t.idc_of(proof.candidate)}: {what}",
        "the shard now writes in the standby IDC; switch it back once its nodes rejoin",
        severity=Severity.CRITICAL,
    )
    return to_acker(
        v,
        OpKind.NODE_FAILOVER,
        what,
        f"{op.old_primary} dead; {what}",
        proof,
        moved=moved,
        also_fence=(op.target,),
        id_suffix="-to-acker",
    )


def _fences(plan: ShardPlan) -> tuple[str, ...]:
    return tuple(s.node for s in plan.steps if isinstance(s, Fence))
