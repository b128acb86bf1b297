"""A ``CommandRunner`` on the simulated fleet: a fence command whose argv names a NODE of the fleet
restarts NODE as a replica (``Fleet.restart(as_replica=True)``: its waiting commits are truncated), as the
lab's ``python -m sim.lab restart-node NODE --as-replica`` does on a real server. Hooks run here too:
``true`` and ``false`` exit 0 and 1 and change nothing; every run's environment is kept (``envs``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from idc_ha.act.commands import CommandResult
from idc_ha.model.ids import NodeName

from .fleet import Fleet


class FleetRunner:
    def __init__(self, fleet: Fleet, *, rc: int = 0, effect: bool = True) -> None:
        """``rc``: what the command exits with; ``effect``: whether it restarts the node at all."""
        self.fleet, self.rc, self.effect = fleet, rc, effect
        self.calls: list[tuple[str, ...]] = []
        self.envs: list[dict[str, str]] = []

    async def run(self, argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
        self.calls.append(tuple(argv))
        self.envs.append(dict(env or {}))
        if argv and argv[0] in ("true", "false"):
            return CommandResult(tuple(argv), int(argv[0] == "false"), 0.0, "")
        named = [a for a in argv if a in self.fleet.nodes]
        if not named:
            return CommandResult(tuple(argv), 2, 0.0, "no node of the fleet named\n")
        node = NodeName(named[0])
        if self.effect and self.rc == 0:
            self.fleet.restart(node, skip_slave_start=True, as_replica=True)
        return CommandResult(tuple(argv), self.rc, 0.0, "" if self.rc == 0 else f"{node}: fence failed\n")
