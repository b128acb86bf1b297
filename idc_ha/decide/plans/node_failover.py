"""The steps of a node failover onto the local candidate (docs/failover.md says why each is where
it is). A node failover onto the acker is an IDC failover's plan."""

from __future__ import annotations

from idc_ha.decide.plan import (
    ArmAcker,
    CatchUp,
    CommitLayout,
    Detach,
    EnableMasterSemisync,
    Fence,
    OpenWrites,
    PublishRouting,
    RecordPromotionPoint,
    Repoint,
    ShardPlan,
    Step,
    StopReceiving,
    VerifySemisync,
    WaitRelayApplied,
)
from idc_ha.model.ids import NodeName
from idc_ha.model.state import Operation


def node_failover_plan(
    op: Operation, *, also_fence: tuple[NodeName, ...] = (), unreachable: frozenset[NodeName] = frozenset()
) -> ShardPlan:
    t, old, via = op.target, op.old_primary, op.via
    assert via is not None, "a node failover onto the local candidate names the acker it catches up from"
    fence = tuple(dict.fromkeys((*(op.fence or (old,)), *also_fence)))
    settle: list[Step] = []
    for n in (via, *(r for r in op.repoint if r != via), t):
        settle += [
            StopReceiving(node=n, reason=f"fix what {n} received from {old}"),
            WaitRelayApplied(node=n, reason=f"{n}'s relay log is applied before anything restarts its IO thread"),
        ]
    steps = [
        *(
            Fence(node=n, dial=n not in unreachable, reason=f"{n} must not take writes once {t} is primary")
            for n in fence
        ),
        *settle,
        CatchUp(node=t, source=via, reason=f"{t} must hold every commit {via} acknowledged before it is primary"),
        RecordPromotionPoint(node=t, reason="returning nodes are judged against what the new primary holds"),
        Detach(node=t, reason=f"{t} stops being a replica"),
        EnableMasterSemisync(node=t, reason="commits on the new primary must wait for an ack"),
        *(ArmAcker(node=a, source=t, reason=f"{a} acks for {t} from now on") for a in op.new_ackers),
        *(
            Repoint(node=r, source=t, reason=f"{r} replicates from the new primary {t}")
            for r in op.repoint
            if r not in op.new_ackers
        ),
        VerifySemisync(primary=t, ackers=op.new_ackers, reason="never open writes before semi-sync is in force"),
        CommitLayout(primary=t, ackers=op.new_ackers, reason="the new layout is durable before writes open"),
        OpenWrites(node=t, reason=f"{t} is the shard's only writable node"),
        PublishRouting(node=t, reason="clients follow the routing topic"),
    ]
    return ShardPlan(shard=op.shard, op_id=op.id, steps=tuple(steps), reason=op.reason)
