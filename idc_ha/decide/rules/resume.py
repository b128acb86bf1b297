"""An operation in flight is resumed, whatever else is true: a half-done failover is finished
(stopping half-way would leave the shard without a writable primary).

One exception: a node failover onto the local candidate whose target has failed (dead, or
unreachable from here: it never opened, so moving on is safe) before the new layout was committed
is handed over to the acker, the failed candidate fenced, with a ``moved_idc`` alert; the acker
must still hold all it had received from the old primary when the failover's proof passed. Retrying
a dead target would block, for good, the failover the shard is owed (its IDC may be dying).
"""

from __future__ import annotations

from idc_ha.decide.plan import Fence, ShardPlan
from idc_ha.decide.plans import plan_for
from idc_ha.decide.proof import Proof
from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert, writable_strays
from idc_ha.decide.rules.promote import not_proven, to_acker
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
    """Promote the acker instead of the failed target. The node failover's proof passed when the
    operation was recorded, and the acker may since have been stopped or repointed to the target
    by the plan (so the proof's "replicates from the primary" no longer holds): what must hold now
    is that the acker still has everything it had received from the old primary then
    (``op.seen_received``), has not restarted since, and has no SQL error."""
    op = v.rec.op
    assert op is not None and op.via is not None
    sx = op.via
    what = (
        f"the node failover's target {op.target} failed before it was promoted ({v.verdicts.nodes[op.target].evidence})"
    )
    o = v.snap.nodes.get(sx)
    c = v.contact
    why = None
    if o is None or not o.reachable:
        why = f"the acker {sx} is unreachable too"
    elif op.seen_received is None or not o.received().contains(op.seen_received):
        why = (
            f"the acker {sx} holds {o.received()}, not all it had received when the failover began ({op.seen_received})"
        )
    elif c is None or c.acker != sx or c.acker_seen_at is None or o.booted_at != c.acker_booted_at:
        why = f"the acker {sx} may have restarted since the failover began: its relay log may be gone"
    elif o.replica is not None and o.replica.last_sql_errno:
        why = f"the acker {sx}'s SQL thread stopped with error {o.replica.last_sql_errno}"
    if why is not None:
        return not_proven(v, what, why)
    proof = Proof(
        ok=True,
        candidate=sx,
        reason=f"the acker {sx} still holds all it had received from {op.old_primary} ({op.seen_received})",
    )
    moved = shard_alert(
        AlertKind.MOVED_IDC,
        v.rec,
        f"{v.rec.shard} moves to IDC {v.t.idc_of(sx)}: {what}",
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
