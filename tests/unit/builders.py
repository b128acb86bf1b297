"""Small builders for the unit tests: a home topology, observations, snapshots, histories, records.

The home layout is the one generator the lab and the fleet use too (``sim/layout.py``): CITY1 holds
IDC1 (primary) and IDC2 (standby), CITY2 holds IDC3 (backup_city); two machines per IDC; a meta
shard and two data shards, each with ``<shard>-m`` (primary), ``-ms`` (local_candidate), ``-sx``
(acker), ``-cas`` (cascade) and ``-rem`` (remote). Primaries alternate between IDC1's machines, so
every machine of IDC1 carries a primary.

Every builder returns a fresh value; modifiers return a changed copy and never mutate their input.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from idc_ha.model.gtid import Gtid, GtidPos
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName, NodeRole, ShardName, SyncState
from idc_ha.model.observation import (
    NodeObservation,
    ProbeFailure,
    ReplicaStatus,
    SemiSyncMaster,
    SemiSyncSlave,
    Snapshot,
)
from idc_ha.model.state import Baseline, Operation, OpKind, ShardRecord, home_record
from idc_ha.model.topology import Topology
from sim.layout import ROLE_SUFFIX as SUFFIX
from sim.layout import home_layout

WALL = 1_700_000_000.0  # the wall clock every test decides at
UPTIME = 86_400  # how long every server has been up, unless a test restarts one
SEQ = 100  # the primary's binlog sequence number in a healthy snapshot
SAFE = (SyncState.IDC_SAFE, SyncState.NODE_SAFE)


# -- topology ---------------------------------------------------------------------------------------


def layout(*, data_shards: int = 2, machines_per_idc: int = 2) -> dict[str, Any]:
    """The home layout as the plain data a config file holds; mutate a copy to break it."""
    return home_layout(data_shards=data_shards, machines_per_idc=machines_per_idc)


def topology(raw: Mapping[str, Any] | None = None, **kw: int) -> Topology:
    """A Topology from plain data (by default the valid home layout)."""
    return Topology.model_validate(copy.deepcopy(dict(raw)) if raw is not None else layout(**kw))


TOPO = topology()
SHARDS: tuple[ShardName, ...] = tuple(s.name for s in TOPO.shards)


def index_of(raw: Mapping[str, Any], kind: str, name: str) -> int:
    """The position of the entry called ``name`` in ``raw[kind]``."""
    return next(k for k, e in enumerate(raw[kind]) if e["name"] == name)


def entry(raw: Mapping[str, Any], kind: str, name: str) -> dict[str, Any]:
    entry: dict[str, Any] = raw[kind][index_of(raw, kind, name)]
    return entry


def server_id(t: Topology, node: NodeName) -> int:
    """Server ids are ports, as in the lab."""
    return t.node_by_name[node].port


def pos(t: Topology, shard: ShardName, seq: int = SEQ) -> GtidPos:
    """A position in domain 0 written by the shard's home primary."""
    primary = t.home_node(shard, NodeRole.PRIMARY)
    assert primary is not None
    return GtidPos.of(Gtid(0, server_id(t, primary.name), seq))


# -- observations -----------------------------------------------------------------------------------


def master(**kw: Any) -> SemiSyncMaster:
    """A primary's semi-sync side as the home layout sets it: on, AFTER_SYNC, never times out."""
    fields: dict[str, Any] = dict(
        enabled=True,
        status=True,
        wait_point="AFTER_SYNC",
        timeout_ms=SEMISYNC_TIMEOUT_NEVER,
        wait_no_slave=True,
        clients=1,
        yes_tx=1000,
        no_tx=0,
        wait_sessions=0,
    )
    return SemiSyncMaster(**{**fields, **kw})


def primary_obs(t: Topology, name: NodeName, *, seq: int = SEQ, **kw: Any) -> NodeObservation:
    p = pos(t, t.node_by_name[name].shard, seq)
    fields: dict[str, Any] = dict(
        node=name,
        reachable=True,
        read_only=False,
        server_id=server_id(t, name),
        gtid_binlog_pos=p,
        gtid_current_pos=p,
        gtid_strict_mode=True,
        semisync_master=master(),
        booted_at=-UPTIME,
    )
    return NodeObservation(**{**fields, **kw})


def replica_obs(
    t: Topology,
    name: NodeName,
    *,
    source: NodeName,
    seq: int = SEQ,
    io: str = "Yes",
    acking: bool = False,
    **kw: Any,
) -> NodeObservation:
    """A reachable, read-only replica of ``source`` that received and applied up to ``seq``."""
    host, port = t.address_of(source)
    p = pos(t, t.node_by_name[name].shard, seq)
    fields: dict[str, Any] = dict(
        node=name,
        reachable=True,
        read_only=True,
        server_id=server_id(t, name),
        gtid_current_pos=p,
        gtid_slave_pos=p,
        gtid_strict_mode=True,
        booted_at=-UPTIME,
        replica=ReplicaStatus(
            source_host=host,
            source_port=port,
            source=source,
            io_running=io,
            sql_running="Yes",
            gtid_io_pos=p,
            using_gtid="Slave_Pos",
        ),
        semisync_slave=SemiSyncSlave(enabled=acking, status=acking and io == "Yes"),
    )
    return NodeObservation(**{**fields, **kw})


def down(name: NodeName, failure: ProbeFailure = ProbeFailure.TIMEOUT) -> NodeObservation:
    return NodeObservation(node=name, reachable=False, failure=failure, error=f"connection {failure}")


def home_nodes(t: Topology = TOPO, *, seq: int = SEQ) -> dict[NodeName, NodeObservation]:
    """Every node healthy, in its home role, all caught up at ``seq``."""
    out: dict[NodeName, NodeObservation] = {}
    for n in t.nodes:
        if n.role == NodeRole.PRIMARY:
            out[n.name] = primary_obs(t, n.name, seq=seq)
        else:
            assert n.upstream is not None
            out[n.name] = replica_obs(t, n.name, source=n.upstream, seq=seq, acking=n.role == NodeRole.ACKER)
    return out


def changed(
    nodes: Mapping[NodeName, NodeObservation], name: NodeName, **fields: Any
) -> dict[NodeName, NodeObservation]:
    """A copy of ``nodes`` with some fields of one observation replaced."""
    return {**nodes, name: nodes[name].model_copy(update=fields)}


def with_master(
    nodes: Mapping[NodeName, NodeObservation], name: NodeName, **fields: Any
) -> dict[NodeName, NodeObservation]:
    m = nodes[name].semisync_master
    assert m is not None
    return changed(nodes, name, semisync_master=m.model_copy(update=fields))


def with_replica(
    nodes: Mapping[NodeName, NodeObservation], name: NodeName, **fields: Any
) -> dict[NodeName, NodeObservation]:
    r = nodes[name].replica
    assert r is not None
    return changed(nodes, name, replica=r.model_copy(update=fields))


def lost(
    t: Topology,
    nodes: Mapping[NodeName, NodeObservation],
    names: Iterable[NodeName],
    failure: ProbeFailure = ProbeFailure.TIMEOUT,
    *,
    witnessed: bool = True,
) -> dict[NodeName, NodeObservation]:
    """The named nodes stop answering; with ``witnessed``, their reachable replicas see their IO
    thread disconnect (the second vantage point), else they still believe they are connected."""
    gone = set(names)
    out = {n: (down(n, failure) if n in gone else o) for n, o in nodes.items()}
    if witnessed:
        for n, o in out.items():
            r = o.replica
            if o.reachable and r is not None and r.source in gone:
                s = o.semisync_slave
                out[n] = o.model_copy(
                    update={
                        "replica": r.model_copy(update={"io_running": "Connecting", "last_io_errno": 2003}),
                        "semisync_slave": s.model_copy(update={"status": False}) if s else None,
                    }
                )
    return out


def in_idc(t: Topology, *idcs: str) -> list[NodeName]:
    return [n.name for n in t.nodes if t.idc_of(n.name) in idcs]


def on_machine(t: Topology, machine: str) -> list[NodeName]:
    return [n.name for n in t.nodes_by_machine[machine]]


def idc_lost(
    t: Topology, nodes: Mapping[NodeName, NodeObservation], *idcs: str, witnessed: bool = True
) -> dict[NodeName, NodeObservation]:
    """Every node of the IDCs times out (a power cut or a cut link)."""
    return lost(t, nodes, in_idc(t, *idcs), witnessed=witnessed)


# -- snapshots and histories ------------------------------------------------------------------------


def snapshot(nodes: Mapping[NodeName, NodeObservation], *, at: float = 0.0) -> Snapshot:
    """The nodes as seen at ``at`` seconds on the controller's monotonic clock (wall WALL + at).
    Boot times are on that clock too, so a running server keeps its boot time across a history."""
    return Snapshot(taken_at=at, wall=WALL + at, duration_ms=1.0, nodes=dict(nodes))


def history(*frames: tuple[float, Mapping[NodeName, NodeObservation]]) -> tuple[Snapshot, ...]:
    """Snapshots from ``(taken_at, nodes)`` pairs, oldest first."""
    return tuple(snapshot(nodes, at=at) for at, nodes in frames)


def steady(nodes: Mapping[NodeName, NodeObservation], *, seconds: float = 4.0, rounds: int = 5) -> tuple[Snapshot, ...]:
    """The same observations over ``rounds`` rounds spread across ``seconds``: long enough, by
    default, to confirm any failure under the default detection policy."""
    step = seconds / (rounds - 1) if rounds > 1 else 0.0
    return tuple(snapshot(nodes, at=k * step) for k in range(rounds))


def watched(
    failure: tuple[Snapshot, ...], before: Mapping[NodeName, NodeObservation] | None = None, *, seconds: float = 3.0
) -> tuple[Snapshot, ...]:
    """``failure`` preceded by ``seconds`` of the healthy home cluster (``before``): the controller
    watched the primaries answer, as the RPO=0 proof requires, before things went wrong."""
    healthy = home_nodes() if before is None else before
    start = failure[0].taken_at if failure else 0.0
    lead = tuple(snapshot(healthy, at=start - seconds + k * 0.5) for k in range(int(seconds / 0.5)))
    return (*lead, *failure)


# -- records ----------------------------------------------------------------------------------------


def baseline(t: Topology, primary: NodeName, *, no_tx: int = 0, no_times: int | None = 0) -> Baseline:
    """The baseline a proven-safe record holds for a primary up for UPTIME seconds."""
    return Baseline(
        primary=primary, server_id=server_id(t, primary), boot_wall=round(WALL - UPTIME), no_tx=no_tx, no_times=no_times
    )


def record(t: Topology, shard: ShardName, *, sync: SyncState = SyncState.IDC_SAFE, **upd: Any) -> ShardRecord:
    """The shard's home layout with the given sync state (a safe one comes with its baseline)."""
    rec = home_record(t, shard, wall=WALL)
    base = baseline(t, rec.primary) if sync in SAFE else None
    return rec.model_copy(update={"sync": sync, "baseline": base, "reason": f"test: {sync}", **upd})


def after_failover(t: Topology, shard: ShardName, **upd: Any) -> ShardRecord:
    """The shard after an IDC failover: its acker primary, the cascade acking, old primary and MS
    out and to be fenced on return."""
    n = {role: f"{shard}-{SUFFIX[role]}" for role in SUFFIX}
    return record(t, shard).model_copy(
        update={
            "epoch": 2,
            "primary": n["acker"],
            "ackers": (n["cascade"],),
            "upstreams": {n["cascade"]: n["acker"], n["remote"]: n["acker"]},
            "out": (n["primary"], n["local_candidate"]),
            "fence_pending": (n["primary"], n["local_candidate"]),
            **upd,
        }
    )


def records(
    t: Topology = TOPO, *, sync: SyncState = SyncState.IDC_SAFE, **per_shard: SyncState
) -> dict[ShardName, ShardRecord]:
    """A record for every shard, all in ``sync`` unless named in ``per_shard``."""
    return {s.name: record(t, s.name, sync=per_shard.get(s.name, sync)) for s in t.shards}


def failover_op(
    shard: ShardName, *, epoch: int = 1, reason: str = "test", steps_done: tuple[str, ...] = ()
) -> Operation:
    """The IDC failover decide() starts for a shard of the home layout: to its acker, with the
    cascade as the new acker."""
    return Operation(
        id=f"{shard}/e{epoch}/idc_failover",
        kind=OpKind.IDC_FAILOVER,
        shard=shard,
        old_primary=f"{shard}-m",
        target=f"{shard}-sx",
        new_ackers=(f"{shard}-cas",),
        reason=reason,
        started_wall=WALL,
        fence=(f"{shard}-m",),
        steps_done=steps_done,
    )


# -- a controller over time -------------------------------------------------------------------------


class Ticker:
    """decide() tick after tick as the daemon calls it: one new snapshot each tick, the memory
    and the written records carried to the next."""

    def __init__(
        self,
        recs: Mapping[ShardName, ShardRecord],
        *,
        policy: Any = None,
        topo: Topology = TOPO,
        control: Any = None,
    ) -> None:
        from idc_ha.model.policy import Policy
        from idc_ha.model.state import Control

        self.recs = dict(recs)
        self.policy = policy or Policy()
        self.control = control or Control()
        self.t = topo
        self.memory: Any = None
        self.plans: dict[ShardName, float] = {}  # shard -> when its first plan was decided

    def tick(self, at: float, nodes: Mapping[NodeName, NodeObservation]) -> Any:
        from idc_ha.decide.tick import decide

        snap = snapshot(nodes, at=at)
        d = decide((snap,), self.t, self.policy, self.recs, self.control, wall=snap.wall, memory=self.memory)
        self.memory = d.memory
        self.recs.update(d.records)
        for p in d.plans:
            self.plans.setdefault(p.shard, at)
        return d

    def run(self, start: float, end: float, nodes: Mapping[NodeName, NodeObservation], *, every: float = 0.2) -> Any:
        """Tick at start, start+every, ... before end, on the same observations; the last decision."""
        d = None
        k = 0
        while start + k * every < end - 1e-9:
            d = self.tick(round(start + k * every, 3), nodes)
            k += 1
        return d


async def settle(fencer: Any) -> None:
    """Wait for every fence attempt the last sweep started (the Fencer keeps them in ``_inflight``;
    it has no public way to await them)."""
    import asyncio

    await asyncio.gather(*fencer._inflight.values(), return_exceptions=True)
