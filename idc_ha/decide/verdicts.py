"""Health verdicts for nodes, machines, IDCs and cities, from a short history of snapshots.

The rule is holistic: the controller alone never declares a node dead. A node whose probes have
failed long enough (``confirm_*_s``, over ``min_rounds`` rounds) is

* DEAD when a reachable replica on another machine reports its IO thread disconnected from it
  (two vantage points agree), or when its machine is dead;
* UNREACHABLE otherwise: the controller may be the one cut off, so nothing acts on it.

A machine is dead when every node on it has failed and at least one is witnessed dead; an IDC is
down when ``idc_down_share`` of its machines (those with nodes) are dead, a city when
``city_down_share`` of its IDCs are down. Pure functions: no clock reads, ``now`` is the newest
snapshot's ``taken_at``.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from idc_ha.model.ids import CityName, IdcName, MachineName, NodeName
from idc_ha.model.observation import ProbeFailure, Snapshot
from idc_ha.model.policy import Detection
from idc_ha.model.topology import Topology


class Health(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"  # failing, not yet confirmed
    UNREACHABLE = "unreachable"  # confirmed failing from here, nobody else confirms
    DEAD = "dead"  # confirmed, and corroborated


class NodeVerdict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    health: Health
    failing_s: float = 0.0
    witness: NodeName | None = None
    evidence: str = ""


class Verdicts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nodes: dict[NodeName, NodeVerdict]
    machines: dict[MachineName, Health]
    idcs: dict[IdcName, Health]
    cities: dict[CityName, Health]

    def failed(self, node: NodeName) -> bool:
        return self.nodes[node].health in (Health.DEAD, Health.UNREACHABLE)


def _streak(history: tuple[Snapshot, ...], node: NodeName) -> tuple[float, int, bool]:
    """How long (s) and over how many rounds the node has failed without a break, and whether
    the newest failure is a refused connection (the machine answers, the server is gone)."""
    now = history[-1].taken_at
    start, rounds = now, 0
    newest = history[-1].nodes.get(node)
    refused = newest is not None and newest.failure == ProbeFailure.REFUSED
    for snap in reversed(history):
        o = snap.nodes.get(node)
        if o is None or o.reachable:
            break
        start, rounds = snap.taken_at, rounds + 1
    return now - start, rounds, refused


def _witness(t: Topology, snap: Snapshot, node: NodeName) -> NodeName | None:
    """A reachable node on another machine whose replication source is ``node`` and whose IO
    thread is not connected: a second vantage point that agrees the node is gone."""
    host, port = t.address_of(node)
    machine = t.node_by_name[node].machine
    for name, o in sorted(snap.nodes.items()):
        if not o.reachable or o.replica is None or t.node_by_name[name].machine == machine:
            continue
        r = o.replica
        if r.source_host == host and r.source_port == port and not r.io_connected:
            return name
    return None


def node_verdicts(history: tuple[Snapshot, ...], t: Topology, d: Detection) -> dict[NodeName, NodeVerdict]:
    snap = history[-1]
    out: dict[NodeName, NodeVerdict] = {}
    for n in t.nodes:
        o = snap.nodes.get(n.name)
        if o is not None and o.reachable:
            out[n.name] = NodeVerdict(health=Health.ALIVE)
            continue
        failing, rounds, refused = _streak(history, n.name)
        need = d.confirm_refused_s if refused else d.confirm_other_s
        why = (o.error if o else "not probed") or "no answer"
        if failing < need or rounds < d.min_rounds:
            out[n.name] = NodeVerdict(health=Health.SUSPECT, failing_s=failing, evidence=why)
            continue
        w = _witness(t, snap, n.name)
        out[n.name] = NodeVerdict(
            health=Health.DEAD if w else Health.UNREACHABLE,
            failing_s=failing,
            witness=w,
            evidence=f"{why} for {failing:.1f} s" + (f"; {w} lost its replication link to it" if w else ""),
        )
    return out


def assess(history: tuple[Snapshot, ...], t: Topology, d: Detection) -> Verdicts:
    """Verdicts for every node, machine, IDC and city from the newest snapshot and its history."""
    nodes = node_verdicts(history, t, d)
    machines: dict[MachineName, Health] = {}
    for m in t.machines:
        hs = [nodes[n.name].health for n in t.nodes_by_machine.get(m.name, ())]
        if not hs or Health.ALIVE in hs:
            machines[m.name] = Health.ALIVE
        elif Health.SUSPECT in hs:
            machines[m.name] = Health.SUSPECT
        elif Health.DEAD in hs:
            machines[m.name] = Health.DEAD
        else:
            machines[m.name] = Health.UNREACHABLE
    # A dead machine takes its nodes with it: corroboration by the failure domain.
    nodes = {
        name: (
            v.model_copy(update={"health": Health.DEAD, "evidence": v.evidence + "; its machine is dead"})
            if v.health == Health.UNREACHABLE and machines[t.node_by_name[name].machine] == Health.DEAD
            else v
        )
        for name, v in nodes.items()
    }
    idcs = {
        i.name: _share(
            [machines[m.name] for m in t.machines_in_idc(i.name) if t.nodes_by_machine.get(m.name)], d.idc_down_share
        )
        for i in t.idcs
    }
    cities = {c.name: _share([idcs[i.name] for i in t.idcs_in_city(c.name)], d.city_down_share) for c in t.cities}
    return Verdicts(nodes=nodes, machines=machines, idcs=idcs, cities=cities)


def _share(parts: list[Health], share: float) -> Health:
    """DEAD when at least ``share`` of the parts are dead; UNREACHABLE when all have failed but
    too few are witnessed dead; SUSPECT when all are failing; ALIVE otherwise."""
    if not parts:
        return Health.ALIVE
    dead = sum(p == Health.DEAD for p in parts)
    if dead / len(parts) >= share - 1e-9:
        return Health.DEAD
    if all(p in (Health.DEAD, Health.UNREACHABLE) for p in parts):
        return Health.UNREACHABLE
    if all(p != Health.ALIVE for p in parts):
        return Health.SUSPECT
    return Health.ALIVE
