"""The controller's durable per-shard record: current layout, sync state, operation in flight.

The config declares the home layout; a ``ShardRecord`` holds the *current* one, numbered by epoch.
Each record is written durably (see ``idc_ha.coord``) before any action that depends on it, so a
controller that restarts, or another that takes over, resumes from exactly what was promised.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, NodeRole, ShardName, SyncState
from idc_ha.model.topology import Topology


class Rec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class OpKind(StrEnum):
    IDC_FAILOVER = "idc_failover"  # the primary's IDC is down: promote its acker in the standby IDC
    NODE_FAILOVER = "node_failover"  # the primary is dead, its IDC alive: promote MS (or Sx, alerted)


class Operation(Rec):
    """A multi-step change in flight on one shard. Present in the record from before its first
    effect until after its last, so a restarted controller finishes it instead of guessing."""

    id: str
    kind: OpKind
    shard: ShardName
    old_primary: NodeName
    target: NodeName
    new_ackers: tuple[NodeName, ...]
    reason: str
    started_wall: float
    fence: tuple[NodeName, ...] = ()  # nodes made read-only first: the old primary and any stray writable node
    seen_received: GtidPos | None = None  # what the target had received when the proof was made
    promotion_point: GtidPos | None = None  # the target's received position, recorded before detaching it
    # Node failover onto a local candidate: the acker whose received position the target must
    # hold (the target catches up from it first), and the replicas moved from the old primary
    # to the target (the acker among them: it stays the acker).
    via: NodeName | None = None
    repoint: tuple[NodeName, ...] = ()
    steps_done: tuple[str, ...] = ()


class Baseline(Rec):
    """The primary's semi-sync counters when the shard was last proven synchronous. A rise in
    ``no_tx`` since then means a commit went through without an ack; a rise in ``no_times`` that
    semi-sync was switched off (a timeout, or SET GLOBAL ... enabled=OFF, whose commits no_tx
    does not count); a fall in either, within one boot, that someone reset them (FLUSH STATUS)."""

    primary: NodeName
    server_id: int
    boot_wall: float  # wall clock minus uptime: changes when the server restarts (counters reset)
    no_tx: int
    no_times: int | None = None  # None: a record written before no_times was watched


class Recovery(Rec):
    """A climb back to a safe state in progress: the acker must receive ``target`` (the primary's
    binlog position seen once semi-sync was on at both ends) with no un-acked commit meanwhile."""

    target: GtidPos
    baseline: Baseline


class ShardRecord(Rec):
    shard: ShardName
    epoch: int = Field(ge=1)
    sync: SyncState
    primary: NodeName
    ackers: tuple[NodeName, ...]
    upstreams: dict[NodeName, NodeName]  # replica -> its source, for every node in the layout
    out: tuple[NodeName, ...] = ()  # nodes outside the layout (old primary, dead IDC), awaiting rejoin
    fence_pending: tuple[NodeName, ...] = ()  # to fence on return: read_only not yet confirmed
    needs_rebuild: tuple[NodeName, ...] = ()
    # For each node ``out``: the promotion point of the failover that put it out. It may rejoin as
    # a replica only if it holds nothing past that point (a later point could hide its errant tail).
    left_at: dict[NodeName, GtidPos] = Field(default_factory=dict)
    promotion_point: GtidPos | None = None
    baseline: Baseline | None = None
    recovery: Recovery | None = None
    op: Operation | None = None
    reason: str = ""
    updated_wall: float = 0.0

    def replicas(self) -> tuple[NodeName, ...]:
        return tuple(sorted(self.upstreams))

    def in_layout(self, node: NodeName) -> bool:
        return node == self.primary or node in self.upstreams


def home_record(topology: Topology, shard: ShardName, *, wall: float) -> ShardRecord:
    """The record a shard starts from with an empty store: the declared home layout, sync UNKNOWN
    until the controller has proven otherwise."""
    nodes = topology.nodes_by_shard[shard]
    primary = next(n.name for n in nodes if n.role == NodeRole.PRIMARY)
    ackers = tuple(n.name for n in nodes if n.role == NodeRole.ACKER)
    ups = {n.name: n.upstream for n in nodes if n.upstream is not None}
    return ShardRecord(
        shard=shard,
        epoch=1,
        sync=SyncState.UNKNOWN,
        primary=primary,
        ackers=ackers,
        upstreams=ups,
        reason="home layout from the config; sync not yet proven",
        updated_wall=wall,
    )


class Control(Rec):
    """Operator switches, written by ``idc-ha pause|resume`` and read by the daemon every tick."""

    paused: bool = False
    paused_shards: tuple[ShardName, ...] = ()
    reason: str = ""
    updated_wall: float = 0.0

    def is_paused(self, shard: ShardName) -> bool:
        return self.paused or shard in self.paused_shards
