"""The only doors between the controller and the world.

The daemon is handed one of each; ``Daemon.from_config`` wires the real ones (aiomysql probes and
admin connections, the file store, MQTT and log alert sinks, the system clocks), and the simulated
fleet (``sim/fleet``) implements ``Prober`` and ``Admin`` for unit tests and scale benchmarks.

* ``Prober``: one probe round over every node -> a frozen ``Snapshot``; never raises (a node that
  does not answer is an unreachable observation).
* ``Admin``: statements on one node, and a full observation of it; raises ``NodeUnreachable``
  (could not connect) or ``NodeError`` (connected, the statement failed or timed out), both
  temporary.
* ``Store`` (``idc_ha.coord.store``): journal, shard records, controls, tick view, the lock.
* ``AlertSink`` (``idc_ha.notify.alerts``): where alerts go.
* ``CommandRunner``: runs an operator's command (argv, bounded); never raises for a command
  that fails, returns its result (``idc_ha.act.commands``).
* ``Clock``: monotonic time for decisions and timeouts, wall time for humans and records.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from idc_ha.act.commands import CommandResult
from idc_ha.clock import boottime
from idc_ha.coord.store import Store
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.notify.alerts import AlertSink

__all__ = ["Admin", "AlertSink", "Clock", "CommandRunner", "Prober", "Store", "SystemClock"]


class Prober(Protocol):
    async def round(self) -> Snapshot: ...

    async def close(self) -> None: ...


class Admin(Protocol):
    repl_user: str
    repl_password: str
    timeout: float
    connect_timeout: float

    def address(self, node: NodeName) -> tuple[str, int]: ...

    async def run(
        self,
        node: NodeName,
        *statements: str,
        fetch: bool = False,
        fresh: bool = False,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> list[list[dict[str, Any]]]: ...

    async def observe(self, node: NodeName) -> NodeObservation: ...

    async def attach_silent_replica(self, node: NodeName, *, server_id: int, gtid: GtidPos) -> Callable[[], None]:
        """Register a semi-sync replica with ``server_id`` on ``node``, dumping in GTID mode from
        ``gtid``, that never replies; returns what detaches it (closes the socket, sends nothing).
        MariaDB counts the start of the binlog file holding ``gtid`` as acknowledged by it, and
        refuses a position its binlogs do not hold: the caller chooses it (``act/wake.py``)."""
        ...

    async def close(self) -> None: ...


class CommandRunner(Protocol):
    async def run(
        self, argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
    ) -> CommandResult: ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return boottime()  # counts a suspend of the host: see idc_ha.clock

    def wall(self) -> float:
        return time.time()
