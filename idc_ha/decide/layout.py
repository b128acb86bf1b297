"""Pure layout arithmetic: who acks after a failover, and the record a finished failover commits."""

from __future__ import annotations

from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, NodeRole, SyncState
from idc_ha.model.state import Baseline, Operation, ShardRecord
from idc_ha.model.topology import Topology


def new_ackers(rec: ShardRecord, t: Topology, target: NodeName) -> tuple[NodeName, ...]:
    """The node that acks for ``target`` once it is primary: a replica of it in its own IDC,
    preferring the home cascade. Empty when there is none."""
    idc = t.idc_of(target)
    cands = [r for r, up in rec.upstreams.items() if up == target and t.idc_of(r) == idc]
    cands.sort(key=lambda n: (t.node_by_name[n].role != NodeRole.CASCADE, n))
    return tuple(cands[:1])


def layout_after(
    rec: ShardRecord, op: Operation, t: Topology, *, point: GtidPos | None, baseline: Baseline | None, wall: float
) -> ShardRecord:
    """The record once ``op`` has moved the primary to ``op.target``.

    The old primary and every replica hanging off it leave the layout (``out``) and are fenced
    on return, except those the operation repoints to the target (``op.repoint``); whatever
    replicated from the target keeps doing so. Sync state is NODE_SAFE when the new ackers sit in
    the new primary's IDC (an IDC failover), IDC_SAFE when they are outside it (a node failover
    that keeps the acker).
    """
    gone = {op.old_primary}
    grew = True
    while grew:  # everything hanging off the old primary, directly or through others, except the target
        more = {
            r
            for r, up in rec.upstreams.items()
            if up in gone and r != op.target and r not in gone and r not in op.repoint
        }
        gone |= more
        grew = bool(more)
    kept = (r for r in rec.upstreams if r not in gone and r != op.target)
    ups = {r: (op.target if r in op.repoint else rec.upstreams[r]) for r in kept}
    out = tuple(sorted((set(rec.out) | gone) - {op.target}))
    left_at = {n: p for n, p in rec.left_at.items() if n in out}
    if point is not None:
        left_at |= {n: point for n in out if n not in rec.out}
    fence = (set(rec.fence_pending) | gone | set(op.fence)) - {op.target}
    away = bool(op.new_ackers) and all(t.idc_of(a) != t.idc_of(op.target) for a in op.new_ackers)
    return rec.model_copy(
        update={
            "epoch": rec.epoch + 1,
            "sync": SyncState.IDC_SAFE if away else SyncState.NODE_SAFE,
            "primary": op.target,
            "ackers": op.new_ackers,
            "upstreams": ups,
            "out": out,
            "left_at": left_at,
            "fence_pending": tuple(sorted(fence)),
            "promotion_point": point,
            "baseline": baseline,
            "recovery": None,
            "op": op,
            "reason": f"{op.kind} {op.id}: {op.target} is primary, ackers {', '.join(op.new_ackers)}",
            "updated_wall": wall,
        }
    )
