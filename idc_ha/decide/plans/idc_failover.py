"""The steps of an IDC failover of one shard (docs/failover.md says why each is where it is)."""

from __future__ import annotations

from idc_ha.decide.plan import (
    ArmAcker,
    CommitLayout,
    Detach,
    EnableMasterSemisync,
    Fence,
    OpenWrites,
    PublishRouting,
    RecordPromotionPoint,
    ShardPlan,
    StopReceiving,
    VerifySemisync,
    WaitRelayApplied,
)
from idc_ha.model.ids import NodeName
from idc_ha.model.state import Operation


def failover_plan(
    op: Operation, *, also_fence: tuple[NodeName, ...] = (), unreachable: frozenset[NodeName] = frozenset()
) -> ShardPlan:
    """The steps of an IDC failover; the same for a fresh start and for a resume. ``also_fence``
    adds nodes seen writable since the operation started."""
    t, old = op.target, op.old_primary
    fence = tuple(dict.fromkeys((*(op.fence or (old,)), *also_fence)))
    steps = [
        *(
            Fence(node=n, dial=n not in unreachable, reason=f"{n} must not take writes once {t} is primary")
            for n in fence
        ),
        StopReceiving(node=t, reason=f"fix what {t} received from {old} before promoting it"),
        WaitRelayApplied(node=t, reason=f"{t}'s relay log holds the only copy of acknowledged commits"),
        RecordPromotionPoint(node=t, reason="returning nodes are judged against what the new primary holds"),
        Detach(node=t, reason=f"{t} stops being a replica of {old}"),
        EnableMasterSemisync(node=t, reason="commits on the new primary must wait for an ack"),
        *(ArmAcker(node=a, source=t, reason=f"{a} acks for {t} from now on") for a in op.new_ackers),
        VerifySemisync(primary=t, ackers=op.new_ackers, reason="never open writes before semi-sync is in force"),
        CommitLayout(primary=t, ackers=op.new_ackers, reason="the new layout is durable before writes open"),
        OpenWrites(node=t, reason=f"{t} is the shard's only writable node"),
        PublishRouting(node=t, reason="clients follow the routing topic"),
    ]
    return ShardPlan(shard=op.shard, op_id=op.id, steps=tuple(steps), reason=op.reason)
