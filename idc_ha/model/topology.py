"""The declared home layout: cities, IDCs, machines, shards and nodes, and what is wrong with it.

The config declares the *home* layout, what the DBA built. Every field here comes from the config
file, never from asking a node (a node may be dead, or lie): the IDC of a node is the IDC of its
machine, full stop.

``Topology`` is frozen and only checks types and ranges. ``idc_ha.model.problems.problems(topology)`` checks everything
that relates one part to another and returns every problem at once, each naming the field and the
fix, so ``idc-ha check`` can explain a broken file in one run.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import BaseModel, ConfigDict, Field

from idc_ha.model.ids import (
    CityName,
    IdcName,
    IdcRole,
    MachineName,
    NodeName,
    NodeRole,
    ShardName,
)

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class City(Frozen):
    name: CityName = Field(pattern=_NAME)


class Idc(Frozen):
    name: IdcName = Field(pattern=_NAME)
    city: CityName
    role: IdcRole


class Machine(Frozen):
    name: MachineName = Field(pattern=_NAME)
    idc: IdcName
    address: str = Field(min_length=1)
    # Run (argv, no shell) when an old primary on this machine, out of the layout, cannot be made
    # read-only: it must leave the node read-only with its never-acknowledged tail gone, e.g. a
    # restart as a replica (docs/fencing.md). Placeholders: idc_ha.model.command.FENCE_FIELDS.
    fence_command: tuple[str, ...] = ()


class Node(Frozen):
    name: NodeName = Field(pattern=_NAME)
    shard: ShardName
    machine: MachineName
    port: int = Field(ge=1, le=65535)
    role: NodeRole
    upstream: NodeName | None = None  # the home source of replication; None for the primary


class Shard(Frozen):
    name: ShardName = Field(pattern=_NAME)
    meta: bool = False


class Topology(Frozen):
    """The home layout. Lookups are by name; see ``problems`` for cross-checks."""

    cluster: str = Field(pattern=_NAME)
    cities: tuple[City, ...]
    idcs: tuple[Idc, ...]
    machines: tuple[Machine, ...]
    shards: tuple[Shard, ...]
    nodes: tuple[Node, ...]

    @cached_property
    def node_by_name(self) -> dict[NodeName, Node]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def machine_by_name(self) -> dict[MachineName, Machine]:
        return {m.name: m for m in self.machines}

    @cached_property
    def idc_by_name(self) -> dict[IdcName, Idc]:
        return {i.name: i for i in self.idcs}

    @cached_property
    def shard_by_name(self) -> dict[ShardName, Shard]:
        return {s.name: s for s in self.shards}

    @cached_property
    def nodes_by_shard(self) -> dict[ShardName, tuple[Node, ...]]:
        out: dict[ShardName, list[Node]] = {s.name: [] for s in self.shards}
        for n in self.nodes:
            out.setdefault(n.shard, []).append(n)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def nodes_by_machine(self) -> dict[MachineName, tuple[Node, ...]]:
        out: dict[MachineName, list[Node]] = {m.name: [] for m in self.machines}
        for n in self.nodes:
            out.setdefault(n.machine, []).append(n)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def machines_by_idc(self) -> dict[IdcName, tuple[MachineName, ...]]:
        out: dict[IdcName, list[MachineName]] = {i.name: [] for i in self.idcs}
        for m in self.machines:
            out.setdefault(m.idc, []).append(m.name)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def idc_by_node(self) -> dict[NodeName, IdcName]:
        return {n.name: self.machine_by_name[n.machine].idc for n in self.nodes}

    def idc_of(self, node: NodeName) -> IdcName:
        return self.idc_by_node[node]

    def city_of_idc(self, idc: IdcName) -> CityName:
        return self.idc_by_name[idc].city

    def city_of(self, node: NodeName) -> CityName:
        return self.city_of_idc(self.idc_of(node))

    def address_of(self, node: NodeName) -> tuple[str, int]:
        n = self.node_by_name[node]
        return self.machine_by_name[n.machine].address, n.port

    def idcs_with_role(self, role: IdcRole) -> tuple[Idc, ...]:
        return tuple(i for i in self.idcs if i.role == role)

    @property
    def primary_idc(self) -> Idc:
        return self.idcs_with_role(IdcRole.PRIMARY)[0]

    @property
    def standby_idc(self) -> Idc:
        return self.idcs_with_role(IdcRole.STANDBY)[0]

    def home_node(self, shard: ShardName, role: NodeRole) -> Node | None:
        for n in self.nodes_by_shard.get(shard, ()):
            if n.role == role:
                return n
        return None

    def machines_in_idc(self, idc: IdcName) -> tuple[Machine, ...]:
        return tuple(self.machine_by_name[m] for m in self.machines_by_idc.get(idc, ()))

    def idcs_in_city(self, city: CityName) -> tuple[Idc, ...]:
        return tuple(i for i in self.idcs if i.city == city)
