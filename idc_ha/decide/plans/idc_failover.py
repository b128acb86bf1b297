"""The steps of an IDC failover of one shard (docs/failover.md says why each is where it is)."""

from __future__ import annotations

from idc_ha.decide.plan import (
    Detach,
    RecordPromotionPoint,
    ShardPlan,
    StopReceiving,
    WaitRelayApplied,
)
from idc_ha.decide.plans.common import fences, open_up
from idc_ha.model.ids import NodeName
from idc_ha.model.state import Operation


def failover_plan(
    op: Operation, *, also_fence: tuple[NodeName, ...] = (), unreachable: frozenset[NodeName] = frozenset()
) -> ShardPlan:
    """The steps of an IDC failover; the same for a fresh start and for a resume. ``also_fence``
    adds nodes seen writable since the operation started."""
    t, old = op.target, op.old_primary
    steps = [
        *fences(op, also_fence, unreachable),
        StopReceiving(node=t, reason=f"fix what {t} received from {old} before promoting it"),
        WaitRelayApplied(node=t, reason=f"{t}'s relay log holds the only copy of acknowledged commits"),
        RecordPromotionPoint(node=t, reason="returning nodes are judged against what the new primary holds"),
        Detach(node=t, reason=f"{t} stops being a replica of {old}"),
        *open_up(op),
    ]
    return ShardPlan(shard=op.shard, op_id=op.id, steps=tuple(steps), reason=op.reason)
