"""Health verdicts for nodes, machines, IDCs and cities, from the newest snapshot and the runs
kept up to it (``tracks``: failure streaks and lost links, folded one snapshot at a time).

The rule is holistic: the controller alone never declares a node dead. A node whose probes have
failed long enough (``confirm_*_s``, over ``min_rounds`` rounds) is

* DEAD when a reachable replica on another machine (the witness) has lost its link to it, and
  the two streaks overlap for a whole confirmation window: the witness's link has been lost in
  every round of a run (``ReplicaStatus.link_lost``: its IO thread reconnecting, or stopped on an
  error; nothing received meanwhile) that overlaps the controller's own failure streak for at
  least the same window and ``min_rounds`` rounds. One reconnect of an IO thread is no witness;
  an IO thread stopped by hand is none either. Or DEAD when its machine is dead;
* UNREACHABLE otherwise: the controller may be the one cut off, so nothing acts on it.

A machine is dead when every node on it has failed and at least one is witnessed dead; an IDC is
down when ``idc_down_share`` of its machines (those with nodes) are dead, a city when
``city_down_share`` of its IDCs are down. Pure functions: no clock reads, ``now`` is the newest
snapshot's ``taken_at``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from idc_ha.decide.tracks import Streak, Tracks
from idc_ha.model.ids import CityName, IdcName, MachineName, NodeName
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Detection
from idc_ha.model.topology import Topology


class Health(StrEnum):
    ALIVE = "alive"
    SUSPECT = "suspect"  # failing, not yet confirmed
    UNREACHABLE = "unreachable"  # confirmed failing from here, nobody else confirms
    DEAD = "dead"  # confirmed, and corroborated


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    health: Health
    failing_s: float = 0.0
    witness: NodeName | None = None
    evidence: str = ""
    refused: bool = False  # the newest failed probe was refused: the machine answers, the server is gone


class Verdicts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    nodes: dict[NodeName, NodeVerdict]
    machines: dict[MachineName, Health]
    idcs: dict[IdcName, Health]
    cities: dict[CityName, Health]

    def failed(self, node: NodeName) -> bool:
        return self.nodes[node].health in (Health.DEAD, Health.UNREACHABLE)


ALIVE = NodeVerdict(health=Health.ALIVE)


def _replicas_by_source(snap: Snapshot) -> dict[NodeName, list[NodeName]]:
    out: dict[NodeName, list[NodeName]] = {}
    for name, o in snap.nodes.items():
        src = o.source
        if src is not None:
            out.setdefault(src, []).append(name)
    return out


def _witness(
    tracks: Tracks,
    t: Topology,
    node: NodeName,
    candidates: list[NodeName],
    *,
    now: float,
    streak: Streak,
    need: float,
    min_rounds: int,
) -> tuple[NodeName | None, str]:
    """A replica on another machine whose lost link to ``node`` overlaps the controller's failure
    streak for ``need`` seconds and ``min_rounds`` rounds; else None and what the best candidate
    still lacks. Only a replica that tried to reach the node and failed is a second vantage point:
    an IO thread stopped by hand tried nothing, and a refused connection proves nothing alone (a
    REJECT rule refuses while the server serves everyone else). Both runs end now, so they overlap
    from the later start, for the shorter run's rounds."""
    machine = t.node_by_name[node].machine
    short = ""
    for w in sorted(candidates):
        run = tracks.lost.get(w)
        if run is None or run.source != node or t.node_by_name[w].machine == machine:
            continue
        start = max(run.since, streak.since)
        if now - start >= need and min(run.rounds, streak.rounds) >= min_rounds:
            return w, ""
        short = f"; {w} lost its link {now - run.since:.1f} s ago, confirming"
    return None, short


def node_verdicts(snap: Snapshot, tracks: Tracks, t: Topology, d: Detection) -> dict[NodeName, NodeVerdict]:
    """Every node's verdict from the newest snapshot and the runs up to it (``tracks``)."""
    by_source = _replicas_by_source(snap)
    now = snap.taken_at
    out: dict[NodeName, NodeVerdict] = {}
    for n in t.nodes:
        o = snap.nodes.get(n.name)
        if o is not None and o.reachable:
            out[n.name] = ALIVE
            continue
        streak = tracks.streaks.get(n.name)
        if o is None or streak is None:
            out[n.name] = NodeVerdict(health=Health.SUSPECT, failing_s=0.0, witness=None, evidence="not probed")
            continue
        failing = now - streak.since
        need = d.confirm_refused_s if streak.refused else d.confirm_other_s
        if failing < need or streak.rounds < d.min_rounds:
            out[n.name] = NodeVerdict(health=Health.SUSPECT, failing_s=failing, witness=None, evidence=streak.error)
            continue
        w, short = _witness(
            tracks, t, n.name, by_source.get(n.name, []), now=now, streak=streak, need=need, min_rounds=d.min_rounds
        )
        out[n.name] = NodeVerdict(
            health=Health.DEAD if w else Health.UNREACHABLE,
            failing_s=failing,
            witness=w,
            refused=streak.refused,
            evidence=f"{streak.error} for {failing:.1f} s" + (f"; {w} lost its replication link to it" if w else short),
        )
    return out


def assess(history: tuple[Snapshot, ...], t: Topology, d: Detection, *, tracks: Tracks | None = None) -> Verdicts:
    """Verdicts for every node, machine, IDC and city at the newest snapshot. ``tracks`` are the
    runs folded up to and including it; without them they are folded from ``history``."""
    snap = history[-1]
    nodes = node_verdicts(snap, tracks if tracks is not None else Tracks.of(history), t, d)
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
    for name, v in nodes.items():
        if v.health == Health.UNREACHABLE and machines[t.node_by_name[name].machine] == Health.DEAD:
            nodes[name] = NodeVerdict(
                health=Health.DEAD,
                failing_s=v.failing_s,
                witness=v.witness,
                refused=v.refused,
                evidence=v.evidence + "; its machine is dead",
            )
    idcs = {
        i.name: _share(
            [machines[m] for m in t.machines_by_idc.get(i.name, ()) if t.nodes_by_machine.get(m)], d.idc_down_share
        )
        for i in t.idcs
    }
    cities = {c.name: _share([idcs[i.name] for i in t.idcs_in_city(c.name)], d.city_down_share) for c in t.cities}
    return Verdicts.model_construct(nodes=nodes, machines=machines, idcs=idcs, cities=cities)


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


def latch(v: Verdicts, snap: Snapshot, t: Topology, dead: frozenset[IdcName], d: Detection) -> Verdicts:
    """Keep an IDC once confirmed down DEAD until one of its nodes answers again.

    Its witnesses go away as the failover proceeds (a promoted acker stops replicating from the
    dead primary), so the verdict recomputed from scratch would fall back to UNREACHABLE half-way
    and leave the shards not yet moved behind for good."""
    keep = {
        i
        for i in dead
        if v.idcs.get(i) != Health.DEAD
        and not any(
            (o := snap.nodes.get(n.name)) is not None and o.reachable
            for m in t.machines_by_idc.get(i, ())
            for n in t.nodes_by_machine.get(m, ())
        )
    }
    if not keep:
        return v
    idcs = {i: (Health.DEAD if i in keep else h) for i, h in v.idcs.items()}
    cities = {c.name: _share([idcs[i.name] for i in t.idcs_in_city(c.name)], d.city_down_share) for c in t.cities}
    return Verdicts.model_construct(nodes=v.nodes, machines=v.machines, idcs=idcs, cities=cities)
