"""IDC-safe again: after an IDC failover, move the acker back across IDCs.

An IDC failover leaves each shard NODE_SAFE: its acker (the old cascade) sits in the new
primary's own IDC, so losing that IDC too would lose acknowledged commits, and nothing but that
acker may be promoted. Once a node of another IDC of the main city is back in the layout
(rejoined, ``decide/rejoin.py``) and caught up, it becomes the acker and that IDC the standby IDC
(``Rearm``, run by ``act/rearm.py``):

1. first the other replicas of the primary outside its IDC move behind that node (``Rewire``,
   each once the node holds all it applied, recorded after its CHANGE MASTER): the roles of the
   home layout, where cascade and remote hang off the acker, so none can be ahead of it, and the
   one in its IDC is there to ack if it is promoted in turn;
2. then (``Rearm``) the record: epoch+1, ackers = (that node), sync UNKNOWN; the node acks
   (semi-sync slave on, IO thread reconnected) and is seen acking;
3. the old acker stops acking and the primary is seen with only the new one.

The sync state machine then proves IDC_SAFE as it does for any shard (``syncstate``): semi-sync on
at both ends, no commit without an ack, the acker has received the primary's position. While
two nodes could ack, or before that proof, the shard is UNKNOWN: no automatic promotion for
those seconds (safety over availability; docs/failover.md, "IDC-safe again").

The choice of node follows the home roles, so a later ``switch --to`` back restores them: the
home primary first, then the local candidate, then any other. While a better-ranked node of that
IDC is back but not yet rejoined, the choice waits for it.

Also here, for a layout already IDC-safe: a replica outside the primary's IDC still on the
primary (one that rejoined after the move) is rewired behind the acker (``Rewire``). Until then a
second disaster finds no replica of the acker in its IDC to ack, and waits for a human: the
same as while that node was away.

Pure: a function of the record, the snapshot, the topology and the policy.
"""

from __future__ import annotations

from idc_ha.decide.plan import AnyStep, Rearm, Rewire
from idc_ha.model.ids import NodeName, NodeRole
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology

RANK = {NodeRole.PRIMARY: 0, NodeRole.LOCAL_CANDIDATE: 1, NodeRole.ACKER: 2, NodeRole.CASCADE: 3, NodeRole.REMOTE: 4}


def caught_up(o: NodeObservation | None, source: NodeName, max_lag_s: float) -> bool:
    """A read-only replica of ``source``, both threads running with no error, at most
    ``max_lag_s`` behind, master semi-sync off (on, a replica's applier hangs: lab-facts.md)."""
    if o is None or not o.reachable or o.writable or o.replica is None or o.source != source:
        return False
    r = o.replica
    if not (r.io_connected and r.sql_ok) or r.last_io_errno or r.last_sql_errno:
        return False
    if r.seconds_behind is None or r.seconds_behind > max_lag_s:
        return False
    return o.semisync_master is None or not o.semisync_master.enabled


def rearm(rec: ShardRecord, snap: Snapshot, t: Topology, policy: Policy, *, paused: bool = False) -> list[AnyStep]:
    if rec.op is not None or paused:
        return []
    p = snap.nodes.get(rec.primary)
    if p is None or not p.writable:
        return []
    pidc = t.idc_of(rec.primary)
    if rec.ackers and all(t.idc_of(a) != pidc for a in rec.ackers):
        return _settle(rec, snap, t)
    if not policy.rules.rearm_acker:
        return []
    city = t.city_of(rec.primary)

    def standby(n: NodeName) -> bool:
        return t.idc_of(n) != pidc and t.city_of(n) == city

    def rank(n: NodeName) -> tuple[int, NodeName]:
        return RANK[t.node_by_name[n].role], n

    busy = set(rec.fence_pending) | set(rec.needs_rebuild)
    ready = [
        n
        for n, up in rec.upstreams.items()
        if up == rec.primary
        and standby(n)
        and n not in busy
        and caught_up(snap.nodes.get(n), rec.primary, policy.rules.rearm_max_lag_s)
    ]
    if not ready:
        return []
    best = min(ready, key=rank)
    # A better-ranked node that is back, fenced and not yet judged is about to rejoin: wait for it.
    coming = [
        n
        for n in rec.out
        if standby(n)
        and n not in busy
        and (o := snap.nodes.get(n)) is not None
        and o.reachable
        and not o.writable
        and rank(n) < rank(best)
    ]
    if coming:
        return []
    idc = t.idc_of(best)
    follow = sorted(n for n, up in rec.upstreams.items() if up == rec.primary and n != best and t.idc_of(n) != pidc)
    # Only a running, caught-up replica holds the move back: one that cannot be rewired now (a
    # stray, a broken replica) is alerted by drift, and rewired behind the acker later.
    lag = policy.rules.rearm_max_lag_s
    reachable = [n for n in follow if caught_up(snap.nodes.get(n), rec.primary, lag)]
    if reachable:
        return [
            Rewire(node=n, source=best, reason=f"{best} becomes the acker: {n} replicates from it") for n in reachable
        ]
    return [
        Rearm(
            node=best,
            source=rec.primary,
            old=rec.ackers,
            reason=f"{best} is back and caught up: {idc} becomes the standby IDC, {best} its acker",
        )
    ]


def _settle(rec: ShardRecord, snap: Snapshot, t: Topology) -> list[AnyStep]:
    """In a layout already IDC-safe: the replicas outside the primary's IDC that replicate from
    the primary, other than the acker, are rewired behind the acker while it receives."""
    if len(rec.ackers) != 1:
        return []
    acker = rec.ackers[0]
    a = snap.nodes.get(acker)
    if a is None or not a.reachable or a.replica is None or not a.replica.io_connected:
        return []
    pidc = t.idc_of(rec.primary)
    busy = set(rec.fence_pending) | set(rec.needs_rebuild)
    return [
        Rewire(
            node=n, source=acker, reason=f"{n} replicates from the primary outside its IDC: behind the acker {acker}"
        )
        for n, up in sorted(rec.upstreams.items())
        if up == rec.primary
        and n != acker
        and n not in busy
        and t.idc_of(n) != pidc
        and (o := snap.nodes.get(n)) is not None
        and o.reachable
    ]
