"""Cross-checks of the home layout: every problem at once, each naming the field and the fix.

``problems(topology)`` never raises; ``idc-ha check`` prints what it returns, and loading a config
for the daemon refuses one with any error.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Literal

from idc_ha.model.command import FENCE_FIELDS, unknown_placeholders
from idc_ha.model.ids import IdcName, IdcRole, NodeRole
from idc_ha.model.topology import Frozen, Node, Topology


class Problem(Frozen):
    """One thing wrong, said so an operator can fix it without reading code."""

    field: str
    message: str
    fix: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.severity}: {self.field}: {self.message}. Fix: {self.fix}"


def _dupes(kind: str, names: Sequence[str]) -> Iterator[Problem]:
    for name, count in Counter(names).items():
        if count > 1:
            yield Problem(
                field=f"{kind}",
                message=f"{name!r} is declared {count} times",
                fix=f"give every entry of [[{kind}]] its own name",
            )


def problems(t: Topology) -> list[Problem]:
    """Every cross-reference problem in the home layout, errors and warnings, in file order."""
    out: list[Problem] = []
    for kind, names in (
        ("cities", [c.name for c in t.cities]),
        ("idcs", [i.name for i in t.idcs]),
        ("machines", [m.name for m in t.machines]),
        ("shards", [s.name for s in t.shards]),
        ("nodes", [n.name for n in t.nodes]),
    ):
        out.extend(_dupes(kind, names))
    out.extend(_idc_problems(t))
    out.extend(_machine_problems(t))
    out.extend(_node_problems(t))
    out.extend(_shard_problems(t))
    return out


def _idc_problems(t: Topology) -> Iterator[Problem]:
    cities = {c.name for c in t.cities}
    for k, idc in enumerate(t.idcs):
        if idc.city not in cities:
            yield Problem(
                field=f"idcs[{k}] ({idc.name}).city",
                message=f"unknown city {idc.city!r}",
                fix=f"declare it under [[cities]] or use one of {sorted(cities)}",
            )
    prim = t.idcs_with_role(IdcRole.PRIMARY)
    stby = t.idcs_with_role(IdcRole.STANDBY)
    if len(prim) != 1:
        yield Problem(
            field="idcs[].role",
            message=f"{len(prim)} IDCs have role 'primary' ({', '.join(i.name for i in prim) or 'none'})",
            fix='give exactly one IDC role = "primary"',
        )
    if len(stby) != 1:
        yield Problem(
            field="idcs[].role",
            message=f"{len(stby)} IDCs have role 'standby' ({', '.join(i.name for i in stby) or 'none'})",
            fix='give exactly one IDC, in the primary IDC\'s city, role = "standby"',
        )
    if len(prim) == 1:
        for k, idc in enumerate(t.idcs):
            if idc.role == IdcRole.STANDBY and idc.city != prim[0].city:
                yield Problem(
                    field=f"idcs[{k}] ({idc.name}).city",
                    message=f"the standby IDC is in {idc.city} but the primary IDC is in {prim[0].city}",
                    fix="the same-city standby must be in the primary IDC's city; a remote IDC takes "
                    'role = "backup_city"',
                )
            if idc.role == IdcRole.BACKUP_CITY and idc.city == prim[0].city:
                yield Problem(
                    field=f"idcs[{k}] ({idc.name}).city",
                    message=f"a backup-city IDC is in the main city {idc.city}",
                    fix="move it to another city, or make it the standby IDC",
                )
    used = {i.city for i in t.idcs}
    for k, c in enumerate(t.cities):
        if c.name not in used:
            yield Problem(
                field=f"cities[{k}] ({c.name})",
                message="no IDC is in this city",
                fix="remove the city or add its IDCs",
                severity="warning",
            )


def _machine_problems(t: Topology) -> Iterator[Problem]:
    idcs = {i.name for i in t.idcs}
    for k, m in enumerate(t.machines):
        if m.idc not in idcs:
            yield Problem(
                field=f"machines[{k}] ({m.name}).idc",
                message=f"unknown IDC {m.idc!r}",
                fix=f"declare it under [[idcs]] or use one of {sorted(idcs)}",
            )
        if bad := unknown_placeholders(m.fence_command, FENCE_FIELDS):
            yield Problem(
                field=f"machines[{k}] ({m.name}).fence_command",
                message=f"unknown placeholder(s) {', '.join(bad)}",
                fix=f"use only {', '.join('{' + f + '}' for f in FENCE_FIELDS)}",
            )
    for addr, count in Counter(m.address for m in t.machines).items():
        if count > 1:
            names = [m.name for m in t.machines if m.address == addr]
            yield Problem(
                field="machines[].address",
                message=f"address {addr} is shared by machines {', '.join(names)}",
                fix="each machine has its own address; a node's IDC is taken from its machine",
            )
    for k, i in enumerate(t.idcs):
        if not t.machines_in_idc(i.name):
            yield Problem(
                field=f"idcs[{k}] ({i.name})",
                message="no machine is in this IDC",
                fix="add its machines under [[machines]] or remove the IDC",
                severity="warning",
            )


def _node_problems(t: Topology) -> Iterator[Problem]:
    shards = {s.name for s in t.shards}
    for k, n in enumerate(t.nodes):
        where = f"nodes[{k}] ({n.name})"
        if n.shard not in shards:
            yield Problem(
                field=f"{where}.shard",
                message=f"unknown shard {n.shard!r}",
                fix=f"declare it under [[shards]] or use one of {sorted(shards)}",
            )
        if n.machine not in t.machine_by_name:
            yield Problem(
                field=f"{where}.machine",
                message=f"unknown machine {n.machine!r}",
                fix="declare it under [[machines]] or fix the name",
            )
        if n.upstream is not None:
            up = t.node_by_name.get(n.upstream)
            if up is None:
                yield Problem(
                    field=f"{where}.upstream",
                    message=f"unknown node {n.upstream!r}",
                    fix="name a node of the same shard",
                )
            elif up.shard != n.shard:
                yield Problem(
                    field=f"{where}.upstream",
                    message=f"{n.upstream} belongs to shard {up.shard}, not {n.shard}",
                    fix="replicate from a node of the same shard",
                )
    seen: dict[tuple[str, int], str] = {}
    for k, n in enumerate(t.nodes):
        m = t.machine_by_name.get(n.machine)
        if m is None:
            continue
        key = (m.address, n.port)
        if key in seen:
            yield Problem(
                field=f"nodes[{k}] ({n.name}).port",
                message=f"{m.address}:{n.port} is already used by node {seen[key]}",
                fix="give every node on a machine its own port",
            )
        else:
            seen[key] = n.name
    yield from _cycle_problems(t)


def _cycle_problems(t: Topology) -> Iterator[Problem]:
    reported: set[str] = set()
    for n in t.nodes:
        path: list[str] = [n.name]
        cur = n
        while cur.upstream is not None and cur.upstream in t.node_by_name:
            if cur.upstream in path:
                cycle = path[path.index(cur.upstream) :]
                key = ",".join(sorted(cycle))
                if key not in reported:
                    reported.add(key)
                    yield Problem(
                        field=f"nodes ({' -> '.join([*cycle, cur.upstream])}).upstream",
                        message="replication upstreams form a cycle",
                        fix="every chain of upstreams must end at the shard's primary",
                    )
                break
            path.append(cur.upstream)
            cur = t.node_by_name[cur.upstream]


def _shard_problems(t: Topology) -> Iterator[Problem]:
    metas = [s.name for s in t.shards if s.meta]
    if len(metas) != 1:
        yield Problem(
            field="shards[].meta",
            message=f"{len(metas)} shards are marked meta ({', '.join(metas) or 'none'})",
            fix="mark exactly one shard meta = true: the meta shard is switched with the data shards",
        )
    prim = t.idcs_with_role(IdcRole.PRIMARY)
    stby = t.idcs_with_role(IdcRole.STANDBY)
    prim_idc = prim[0].name if len(prim) == 1 else None
    stby_idc = stby[0].name if len(stby) == 1 else None
    index = {id(n): k for k, n in enumerate(t.nodes)}
    for k, s in enumerate(t.shards):
        nodes = [n for n in t.nodes_by_shard.get(s.name, ()) if n.machine in t.machine_by_name]
        where = f"shards[{k}] ({s.name})"
        if not nodes:
            yield Problem(field=where, message="the shard has no nodes", fix="declare its nodes")
            continue
        by_role: dict[NodeRole, list[Node]] = {}
        for n in nodes:
            by_role.setdefault(n.role, []).append(n)
        primaries = by_role.get(NodeRole.PRIMARY, [])
        ackers = by_role.get(NodeRole.ACKER, [])
        if len(primaries) != 1:
            yield Problem(
                field=where,
                message=f"{len(primaries)} nodes have role 'primary'",
                fix='give exactly one node of the shard role = "primary"',
            )
        if len(ackers) != 1:
            yield Problem(
                field=where,
                message=f"{len(ackers)} nodes have role 'acker'",
                fix='give exactly one node in the standby IDC role = "acker": only it may ack '
                "commits, so RPO=0 across IDCs holds",
            )
        primary = primaries[0] if len(primaries) == 1 else None
        acker = ackers[0] if len(ackers) == 1 else None
        if not by_role.get(NodeRole.CASCADE):
            yield Problem(
                field=where,
                message="no cascade node: after an IDC failover nothing can ack, and writes stay closed",
                fix='add a node with role = "cascade" on another machine of the standby IDC, '
                "replicating from the acker",
                severity="warning",
            )
        for n in nodes:
            yield from _role_problems(
                t, n, index[id(n)], primary=primary, acker=acker, prim_idc=prim_idc, stby_idc=stby_idc
            )


def _role_problems(
    t: Topology,
    n: Node,
    k: int,
    *,
    primary: Node | None,
    acker: Node | None,
    prim_idc: str | None,
    stby_idc: str | None,
) -> Iterator[Problem]:
    where = f"nodes[{k}] ({n.name})"
    m = t.machine_by_name.get(n.machine)
    idc = m.idc if m else IdcName("?")
    idc_role = t.idc_by_name[idc].role if idc in t.idc_by_name else None

    def wrong_idc(want: str, why: str) -> Problem:
        return Problem(
            field=f"{where}.machine",
            message=f"a {n.role} node is in {idc} ({idc_role or 'unknown'} IDC); {why}",
            fix=f"put it on a machine of the {want} IDC",
        )

    def wrong_up(want: Node, why: str) -> Problem:
        return Problem(
            field=f"{where}.upstream",
            message=f"a {n.role} replicates from {n.upstream or 'nothing'}; {why}",
            fix=f'set upstream = "{want.name}"',
        )

    if n.role == NodeRole.PRIMARY:
        if prim_idc is not None and idc != prim_idc:
            yield wrong_idc("primary", "the home primary lives in the primary IDC")
        if n.upstream is not None:
            yield Problem(
                field=f"{where}.upstream",
                message="the primary replicates from nothing",
                fix="remove upstream from the primary",
            )
    elif n.role == NodeRole.LOCAL_CANDIDATE:
        if prim_idc is not None and idc != prim_idc:
            yield wrong_idc("primary", "the local candidate is the primary's same-IDC standby")
        if primary is not None and n.machine == primary.machine:
            yield Problem(
                field=f"{where}.machine",
                message=f"the local candidate shares machine {n.machine} with the primary",
                fix="put it on another machine of the primary IDC",
            )
        if primary is not None and n.upstream != primary.name:
            yield wrong_up(primary, "the local candidate replicates from the primary")
    elif n.role == NodeRole.ACKER:
        if stby_idc is not None and idc != stby_idc:
            yield wrong_idc("standby", "the acker must be in the same-city standby IDC")
        if primary is not None and n.upstream != primary.name:
            yield wrong_up(primary, "the acker replicates from the primary")
    elif n.role == NodeRole.CASCADE:
        if stby_idc is not None and idc != stby_idc:
            yield wrong_idc("standby", "the cascade becomes the acker after an IDC failover")
        if acker is not None and n.upstream != acker.name:
            yield wrong_up(acker, "the cascade replicates from the acker")
        if acker is not None and n.machine == acker.machine:
            yield Problem(
                field=f"{where}.machine",
                message=f"the cascade shares machine {n.machine} with the acker",
                fix="put it on another machine of the standby IDC, so one machine loss keeps an acker",
                severity="warning",
            )
    elif n.role == NodeRole.REMOTE:
        if idc_role is not None and idc_role != IdcRole.BACKUP_CITY:
            yield wrong_idc("backup_city", "a remote replica lives in the backup city")
        if acker is not None and n.upstream != acker.name:
            yield wrong_up(acker, "a remote replicates from the acker only, so it can never be ahead of it")
