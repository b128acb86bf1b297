"""Rejoin: a node the layout left behind comes back as a replica, or is marked for a rebuild.

After a failover the old primary, and every replica that hung off it, are ``out`` of the layout,
each with the promotion point of that failover (``ShardRecord.left_at``): everything that was
acknowledged is within it. When such a node answers again and has been fenced (read-only, not
``fence_pending``):

* if it holds nothing past its point (``GtidPos.past``: no domain ahead of it, none diverged),
  it rejoins as a replica of the current primary (``Rejoin``, run by the reconciler; the
  executor stops its replication and checks again before anything changes);
* otherwise it holds transactions no acker received: never acknowledged to any client, and not
  in the new primary's history. It is marked ``needs_rebuild`` (durably) with an alert listing
  them; re-seeding it from the current primary (``idc-ha rebuild NODE``) is not built yet.

A node past its point only because it replicated the new history through a node of the layout
(a local candidate restarted replicating from the old primary, which rejoined first: it then
passes the new primary's commits on) is not errant: ``through_layout``. MariaDB refuses to serve a
strict replica whose last GTID is missing from its source's binlog while the source holds a later
one in that domain (1236), so a strict replica whose IO thread runs without error from a node of
the layout, with nothing of its own written past the point, holds a prefix of that node's
history, which is the layout's; and the primary must hold everything it holds. Such a node
rejoins with ``Rejoin.via`` naming that source.

A node out of the layout that is writable again goes back to the Fencer first. A node with no
recorded point (out since before points were kept) cannot be judged: it is marked for a rebuild.
Nothing is done while the shard's primary is not seen writable (a failover may be coming) or
while the controller is paused.

Pure: a function of the record and the snapshot.
"""

from __future__ import annotations

from idc_ha.decide.plan import AnyStep, Fence, Rejoin
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import ShardRecord


def applied(o: NodeObservation) -> GtidPos:
    """Everything a node holds: its binlog and what its applier recorded."""
    return o.gtid_binlog_pos.merge(o.gtid_slave_pos)


def errant(pos: GtidPos, point: GtidPos) -> list[str]:
    """What ``pos`` holds past ``point``, one phrase per domain, e.g. ``0-4406-12 (point
    0-4406-10: 2 transactions never acknowledged)``. Empty: nothing past it."""
    out = []
    for d in sorted(pos.past(point)):
        mine, theirs = pos.domain(d), point.domain(d)
        assert mine is not None
        if theirs is None:
            out.append(f"{mine} (the point has nothing in domain {d})")
        elif mine.server == theirs.server or mine.seq > theirs.seq:
            n = mine.seq - theirs.seq
            out.append(f"{mine} (point {theirs}: {n} transaction(s) past it, never acknowledged)")
        else:
            out.append(f"{mine} (point {theirs}: same sequence number, another server: diverged)")
    return out


def wrote_own(o: NodeObservation, point: GtidPos) -> bool:
    """Whether ``o``'s binlog holds, in some domain past ``point``, something its applier did not
    record: a write of its own."""
    return any(o.gtid_binlog_pos.domain(d) != o.gtid_slave_pos.domain(d) for d in o.gtid_binlog_pos.past(point))


def through_layout(
    rec: ShardRecord, o: NodeObservation, primary: NodeObservation, snap: Snapshot, point: GtidPos
) -> NodeName | None:
    """The node of the layout ``o`` replicates from, if that proves it holds a prefix of the
    layout's history (see the module's docstring); else None. Both must run ``gtid_strict_mode``
    (MariaDB refuses a start position with a hole only for a strict replica), ``o`` must have
    written nothing of its own past the point (its binlog position equals what its applier
    recorded in every domain past the point), both threads healthy, and the primary must hold
    all it holds."""
    r = o.replica
    src = o.source
    if r is None or src is None or not rec.in_layout(src) or src in rec.out:
        return None
    s = snap.nodes.get(src)
    if not o.gtid_strict_mode or s is None or not s.reachable or not s.gtid_strict_mode:
        return None
    if not r.io_connected or r.last_io_errno or r.last_sql_errno:
        return None
    if wrote_own(o, point):
        return None
    if not primary.gtid_binlog_pos.contains(applied(o)):
        return None
    return src


def rejoin(
    rec: ShardRecord, snap: Snapshot, *, paused: bool = False
) -> tuple[list[Alert], list[AnyStep], ShardRecord | None]:
    """Alerts, reconcile steps, and the record with new ``needs_rebuild`` nodes (None: unchanged)."""
    if rec.op is not None or not rec.out:
        return [], [], None
    p = snap.nodes.get(rec.primary)
    if p is None or not p.writable:
        return [], [], None
    alerts: list[Alert] = []
    steps: list[AnyStep] = []
    rebuild: list[NodeName] = []
    for node in rec.out:
        o = snap.nodes.get(node)
        if o is None or not o.reachable or rec.in_layout(node) or node in rec.needs_rebuild:
            continue
        if node in rec.fence_pending:
            continue  # the Fencer has it
        if o.writable:
            steps.append(Fence(node=node, reason=f"{node} is out of the layout and writable again"))
            continue
        point = rec.left_at.get(node)
        why = errant(applied(o), point) if point is not None else ["no promotion point is recorded for it"]
        via = through_layout(rec, o, p, snap, point) if why and point is not None else None
        if why and via is None:
            rebuild.append(node)
            alerts.append(
                Alert(
                    kind=AlertKind.NEEDS_REBUILD,
                    severity=Severity.CRITICAL,
                    shard=rec.shard,
                    node=node,
                    epoch=rec.epoch,
                    reason=f"{node} returned holding what the new layout lacks: {'; '.join(why)}. "
                    "It cannot replicate again as it is",
                    hint=f"the listed transactions were never acknowledged to any client; {node} must be re-seeded "
                    f"from {rec.primary} (`idc-ha rebuild`, issue 9, is not built yet: docs/operations.md)",
                )
            )
        elif not paused and point is not None:
            what = f"past {point} only what it replicated from {via}" if via else f"nothing past {point}"
            steps.append(Rejoin(node=node, source=rec.primary, point=point, via=via, reason=f"{node} holds {what}"))
    if not rebuild:
        return alerts, steps, None
    return (
        alerts,
        steps,
        rec.model_copy(
            update={
                "needs_rebuild": tuple(sorted({*rec.needs_rebuild, *rebuild})),
                "reason": f"needs rebuild: {', '.join(rebuild)}",
            }
        ),
    )
