"""The steps every promotion plan shares: the fences first, and the tail from semi-sync on the new
primary to the published routing."""

from __future__ import annotations

from idc_ha.decide.plan import (
    ArmAcker,
    CommitLayout,
    EnableMasterSemisync,
    Fence,
    OpenWrites,
    PublishRouting,
    Repoint,
    Step,
    VerifySemisync,
)
from idc_ha.model.ids import NodeName
from idc_ha.model.state import Operation


def fences(op: Operation, also_fence: tuple[NodeName, ...], unreachable: frozenset[NodeName]) -> list[Step]:
    """Every node that must be read-only before the target opens; those seen failed are handed to
    the Fencer without a dial."""
    t = op.target
    nodes = dict.fromkeys((*(op.fence or (op.old_primary,)), *also_fence))
    return [
        Fence(node=n, dial=n not in unreachable, reason=f"{n} must not take writes once {t} is primary") for n in nodes
    ]


def open_up(op: Operation, *, repoint: tuple[NodeName, ...] = ()) -> list[Step]:
    """From semi-sync on the new primary to the routing: its ackers armed, ``repoint`` moved to it,
    semi-sync verified at both ends, the layout committed, writes opened, routing published."""
    t = op.target
    return [
        EnableMasterSemisync(node=t, reason="commits on the new primary must wait for an ack"),
        *(ArmAcker(node=a, source=t, reason=f"{a} acks for {t} from now on") for a in op.new_ackers),
        *(Repoint(node=r, source=t, reason=f"{r} replicates from the new primary {t}") for r in repoint),
        VerifySemisync(primary=t, ackers=op.new_ackers, reason="never open writes before semi-sync is in force"),
        CommitLayout(primary=t, ackers=op.new_ackers, reason="the new layout is durable before writes open"),
        OpenWrites(node=t, reason=f"{t} is the shard's only writable node"),
        PublishRouting(node=t, reason="clients follow the routing topic"),
    ]
