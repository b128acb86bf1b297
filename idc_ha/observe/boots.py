"""When each server booted, on the controller's decision clock: one value per boot.

``booted_at`` is probe start minus ``Uptime``. The decision core treats any change of it as a
restart (counters reset, a replica's relay log possibly gone), so this module publishes one value
per boot and changes it only when a restart is shown:

* ``Uptime`` is a difference of whole seconds of the server's wall clock, read somewhere between
  the probe's start (``now``) and its end (``after``): the boot lies in
  (now - Uptime - 1, after - Uptime + 1];
* over one connection kept open since the previous answer the server cannot have restarted (a
  restart drops every connection), whatever Uptime says: a slow probe, drift, or the server's
  clock stepped back are no restart;
* after a new connection, a restart is shown by a boot provably later than the previous answer
  allowed, by an Uptime lower than at the previous answer (the same boot only counts up), or by
  a previous boot too young (under ``YOUNG_S``) to tell a quick crash-and-restart from none. A
  server clock stepped back while the connection was down is then taken for a restart too: that
  fails closed (the shard is proven again), never open.

The prober judges (``judge``); the admin's observations, made on connections of their own, only
read the boot held (``peek``), so a failover's baseline names the same boot the next probe does.
"""

from __future__ import annotations

from dataclasses import dataclass

from idc_ha.model.ids import NodeName

YOUNG_S = 4.0  # a boot this young at its last answer may have restarted unseen within the rounding


@dataclass
class _Boot:
    booted_at: float  # published
    hi: float  # the latest the boot can be, from the last answer
    uptime: int  # Uptime at the last answer


class BootTracker:
    def __init__(self) -> None:
        self._boots: dict[NodeName, _Boot] = {}

    def judge(self, node: NodeName, uptime: int, now: float, after: float, *, same_connection: bool) -> float:
        """The boot time to publish for this answer (see the module docstring), remembered."""
        b = self._boots.get(node)
        lo, hi = now - uptime - 1.0, after - uptime + 1.0
        if b is None or (not same_connection and (lo > b.hi or uptime < b.uptime or b.uptime < YOUNG_S)):
            self._boots[node] = _Boot(booted_at=now - uptime, hi=hi, uptime=uptime)
            return now - uptime
        b.hi, b.uptime = hi, uptime
        return b.booted_at

    def peek(self, node: NodeName, uptime: int, now: float, after: float) -> float:
        """The boot held for ``node`` if this reading agrees with it, else this reading's own
        estimate; nothing is remembered (only the prober judges restarts)."""
        b = self._boots.get(node)
        if b is None or now - uptime - 1.0 > b.hi or uptime < b.uptime:
            return now - uptime
        return b.booted_at
