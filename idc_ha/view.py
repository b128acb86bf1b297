"""The daemon's view of its last tick: a frozen value, published each tick.

``status`` reads it (from the store's ``tick.json``), and the HTTP API and metrics will too; it
names no daemon object, so nothing that reads it imports the daemon.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

from idc_ha.decide.plan import Decision
from idc_ha.model.ids import ShardName
from idc_ha.model.observation import Snapshot
from idc_ha.model.state import Control


class TickView(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pid: int
    wall: float
    tick: int
    probe_ms: float
    paused: bool
    reasons: dict[ShardName, str]
    verdicts: dict[str, dict[str, str]]  # idcs, cities, machines, nodes (non-alive only) -> health
    ops: tuple[ShardName, ...]  # shards with an operation running in this process
    unadopted: tuple[ShardName, ...]


def tick_view(
    *,
    pid: int,
    tick: int,
    snap: Snapshot,
    decision: Decision,
    control: Control,
    shards: Iterable[ShardName],
    running: Iterable[ShardName],
    wall: float,
) -> TickView:
    v = decision.verdicts
    return TickView(
        pid=pid,
        wall=wall,
        tick=tick,
        probe_ms=round(snap.duration_ms, 1),
        paused=control.paused,
        reasons=dict(decision.reasons),
        verdicts={
            "idcs": {k: str(h) for k, h in v.idcs.items()},
            "cities": {k: str(h) for k, h in v.cities.items()},
            "machines": {k: str(h) for k, h in v.machines.items()},
            "nodes": {k: str(n.health) for k, n in v.nodes.items() if n.health != "alive"},
        },
        ops=tuple(sorted(running)),
        unadopted=tuple(sorted(s for s in shards if s not in decision.memory.adopted)),
    )
