"""Adoption: the controller acts on a shard only while the servers look like its record says.

A record comes from the config's home layout (empty store) or from the store, and either may be
wrong about reality: a store lost after a failover, an older backup restored, a primary promoted
by hand while the controller waited for a human. Acting on such a record fences the real primary
and routes clients to the old one. So a shard is *adopted* only once a snapshot shows its record
true, and stays adopted for the life of this controller while reality keeps agreeing:

* the recorded primary answers and is writable;
* every other writable node of the shard is one the record expects to fence (``fence_pending``),
  or a stray that still replicates from a node of the shard (opened by mistake: fenced);
* every recorded acker that answers replicates from the recorded primary (an unreachable one
  says nothing against the record, and must not keep returning old primaries unfenced).

An adopted shard loses adoption when a node is writable, replicates from nothing of the shard,
is not to be fenced, and the recorded primary is unreachable or read-only: that is a promotion
made outside the controller, and fencing it would stop the real primary.

A record with an operation in flight is this controller's own promise: a running controller
resumes it as written. A controller that just started (the store may be an old backup, or a human
may have acted meanwhile) first checks that reality still fits the operation: the old primary is
not writable (a failover undone by hand would be fenced), the target answers and still replicates
from the old primary (or, in a node failover, from the acker it catches up from), or was detached
by the operation itself (and stays detached once the new
layout is committed), and no node outside the operation's fence list turned writable on its own.

Every node a record names must be a node of that shard in the config; a record that names
another (a node removed from the config) is never acted on.

Pure; the adopted set is memory handed back by the daemon each tick (never durable: a restarted
controller checks again).
"""

from __future__ import annotations

from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology


def _shard_nodes(rec: ShardRecord, t: Topology) -> set[NodeName]:
    return {n.name for n in t.nodes_by_shard[rec.shard]}


def outside_promotion(rec: ShardRecord, snap: Snapshot, t: Topology) -> NodeName | None:
    """A writable node that looks promoted outside the controller: it replicates from nothing of
    the shard and is not to be fenced, while the recorded primary is unreachable or read-only."""
    p = snap.nodes.get(rec.primary)
    if p is not None and p.writable:
        return None
    shard = _shard_nodes(rec, t)
    for name in sorted(shard - {rec.primary}):
        o = snap.nodes.get(name)
        if o is None or not o.writable or name in rec.fence_pending:
            continue
        if o.source is None or o.source not in shard:
            return name
    return None


def record_problem(rec: ShardRecord, t: Topology) -> str | None:
    """A node the record names that the config does not have in this shard, or None."""
    shard = {n.name for n in t.nodes_by_shard.get(rec.shard, ())}
    named = [rec.primary, *rec.ackers, *rec.upstreams, *rec.upstreams.values(), *rec.out, *rec.fence_pending]
    if rec.op is not None:
        named += [rec.op.old_primary, rec.op.target, *rec.op.new_ackers, *rec.op.fence]
    for n in named:
        if n not in shard:
            return f"the record names {n}, which the config does not have in shard {rec.shard}"
    return None


def _replicates_from(o: NodeObservation, node: NodeName, t: Topology) -> bool:
    """``o`` replicates from ``node``: by resolved address, or, when the address did not resolve
    (DNS lost with an IDC), by the host:port text the config gives ``node``."""
    if o.replica is None:
        return False
    if o.source is not None:
        return o.source == node
    return (o.replica.source_host, o.replica.source_port) == t.address_of(node)


def op_mismatch(rec: ShardRecord, snap: Snapshot, t: Topology) -> str | None:
    """Why an operation found in the store no longer fits reality, or None (see the module docstring)."""
    op = rec.op
    assert op is not None
    old = snap.nodes.get(op.old_primary)
    if old is not None and old.writable:
        return f"the old primary {op.old_primary} answers and is writable: the failover was undone by hand?"
    o = snap.nodes.get(op.target)
    if o is None or not o.reachable:
        return f"the operation's target {op.target} does not answer"
    if (
        o.replica is not None
        and not _replicates_from(o, op.old_primary, t)
        and not (op.via is not None and _replicates_from(o, op.via, t))  # a node failover catching up
    ):
        return f"the operation's target {op.target} replicates from {o.replica.source_host}:{o.replica.source_port}"
    if rec.primary == op.target and o.replica is not None:
        return f"the layout names {op.target} primary but it replicates again"
    shard = _shard_nodes(rec, t)
    for name in sorted(shard - {op.target, *op.fence, *rec.fence_pending}):
        w = snap.nodes.get(name)
        if w is not None and w.writable and (w.source is None or w.source not in shard):
            return f"{name} is writable and replicates from nothing of the shard: promoted by hand?"
    return None


def mismatch(rec: ShardRecord, snap: Snapshot, t: Topology) -> str | None:
    """Why the servers do not look like ``rec``, or None when they do (see the module docstring)."""
    p = snap.nodes.get(rec.primary)
    if p is None or not p.reachable:
        return f"the recorded primary {rec.primary} does not answer"
    if p.read_only:
        return f"the recorded primary {rec.primary} is read-only"
    shard = _shard_nodes(rec, t)
    rivals = [
        name
        for name in sorted(shard - {rec.primary})
        if (o := snap.nodes.get(name)) is not None
        and o.writable
        and name not in rec.fence_pending
        and (o.source is None or o.source not in shard)
    ]
    if rivals:
        return f"{', '.join(rivals)} writable beside {rec.primary}, replicating from nothing of the shard"
    for a in rec.ackers:
        o = snap.nodes.get(a)
        if o is not None and o.reachable and o.source != rec.primary:
            return f"the acker {a} does not replicate from {rec.primary}"
    return None


def adoption(rec: ShardRecord, history: tuple[Snapshot, ...], t: Topology, *, was_adopted: bool) -> str | None:
    """None when the controller may act on this shard now; else why not (see ``adopt``).
    ``history`` holds the snapshots not decided on before."""
    bad = record_problem(rec, t)
    if bad is not None:
        return bad
    if rec.op is not None:
        if was_adopted:
            return None  # this controller's own operation: resumed as written
        why_op = "no snapshot"
        for snap in history:
            m = op_mismatch(rec, snap, t)
            if m is None:
                return None
            why_op = m
        return f"operation {rec.op.id} in the store no longer fits: {why_op}"
    if was_adopted:
        rival = outside_promotion(rec, history[-1], t)
        return None if rival is None else _by_hand(rec, rival)
    why = "no snapshot"
    adopted_at: int | None = None
    for k, snap in enumerate(history):
        if adopted_at is None:
            why_k = mismatch(rec, snap, t)
            if why_k is None:
                adopted_at = k
            else:
                rival = outside_promotion(rec, snap, t)
                why = why_k if rival is None else f"{why_k}; {_by_hand(rec, rival)}"
        elif outside_promotion(rec, snap, t) is not None:
            adopted_at, why = None, "the layout changed outside the controller at a later round"
    return None if adopted_at is not None else why


def _by_hand(rec: ShardRecord, rival: NodeName) -> str:
    return f"{rival} is writable and replicates from nothing of the shard while {rec.primary} is not: promoted by hand?"


def unadopted_alert(rec: ShardRecord, why: str, *, home: bool, op: bool = False) -> Alert:
    what = (
        "the store has no record for it and the servers do not match the home layout"
        if home
        else f"the servers do not match its record (epoch {rec.epoch}, primary {rec.primary})"
    )
    hint = (
        "compare `idc-ha status` with the servers. Restoring a state_dir backup is safe: a record is acted "
        "on only once the servers match it, so a stale one is refused, never enforced. After a promotion by "
        "hand, keep the promoted node the only writable one; the controller stays hands-off meanwhile"
    )
    if op and rec.op is not None:
        hint = (
            f"to let the failover finish, make {rec.op.old_primary} read-only (SET GLOBAL read_only=ON) and keep "
            f"{rec.op.target} replicating from it"
            + (f" or from {rec.op.via}" if rec.op.via else "")
            + " or detached: the controller resumes it then. To keep "
            f"{rec.op.old_primary} primary instead, act by hand; the controller stays hands-off on this shard"
        )
    return Alert(
        kind=AlertKind.UNADOPTED,
        severity=Severity.CRITICAL,
        shard=rec.shard,
        epoch=rec.epoch,
        reason=f"{rec.shard}: {what}: {why}; the controller takes no action on this shard (no fence, no failover)",
        hint=hint,
    )
