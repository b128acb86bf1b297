"""Adoption: the controller acts on a shard only while the servers look like its record says.

A record comes from the config's home layout (empty store) or from the store, and either may be
wrong about reality: a store lost after a failover, an older backup restored, a primary promoted
by hand while the controller waited for a human. Acting on such a record fences the real primary
and routes clients to the old one. So a shard is *adopted* only once a snapshot shows its record
true, and stays adopted for the life of this controller while reality keeps agreeing:

* the recorded primary answers and is writable;
* every other writable node of the shard is one the record expects to fence (``fence_pending``),
  or a stray that still replicates from a node of the shard (opened by mistake: fenced);
* every recorded acker replicates from the recorded primary.

An adopted shard loses adoption when a node is writable, replicates from nothing of the shard,
is not to be fenced, and the recorded primary is unreachable or read-only: that is a promotion
made outside the controller, and fencing it would stop the real primary. A record with an
operation in flight is always adopted: it is this controller's own promise, resumed as written.

Pure; the adopted set is memory handed back by the daemon each tick (never durable: a restarted
controller checks again).
"""

from __future__ import annotations

from idc_ha.model.ids import NodeName
from idc_ha.model.observation import Snapshot
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
        if o is None or o.source != rec.primary:
            return f"the acker {a} does not replicate from {rec.primary}"
    return None
