"""Which node of the topology a replica's ``Master_Host:Master_Port`` names, by resolved address.

A replica may name its source as the config does (``10.0.1.11``), as another spelling of the same
address (``::ffff:10.0.1.11``, ``localhost`` for ``127.0.0.1``) or by a host name. Comparing the
strings would miss a second acker spelled differently, so every address is resolved to its set of
IP addresses and compared as such. Resolution is I/O and lives here, at the edge: the decision
core only sees ``ReplicaStatus.source``, a node name or None.

Host names are resolved with ``getaddrinfo`` and cached for ``ttl_s`` (a failed lookup for
``NEGATIVE_TTL_S``, so a DNS blip heals in seconds); an IP literal is never
sent to a resolver. A name that does not resolve matches no node (None): the core treats an
unknown source as a possible acker, never as "not the primary's".
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable

from idc_ha.model.ids import NodeName
from idc_ha.model.topology import Topology

RESOLVE_TIMEOUT_S = 1.0
NEGATIVE_TTL_S = 5.0  # a name that did not resolve is asked again this soon (a DNS blip heals quickly)


def literal(host: str) -> str | None:
    """The canonical text of an IP literal (IPv4-mapped IPv6 as IPv4), or None for a name."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _getaddrinfo(host: str) -> frozenset[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return frozenset()
    return frozenset(c for info in infos if (c := literal(str(info[4][0]))) is not None)


class AddressBook:
    """Maps (address, port) to the topology node there. Built once from the config; host names
    in the config are resolved at construction (a name that does not resolve is reported by
    ``unresolved``, and ``idc-ha check`` names it)."""

    def __init__(
        self,
        topology: Topology,
        *,
        resolver: Callable[[str], frozenset[str]] = _getaddrinfo,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver, self._ttl, self._clock = resolver, ttl_s, clock
        self._names: dict[str, tuple[float, frozenset[str]]] = {}
        self._at: dict[tuple[str, int], NodeName] = {}
        self.unresolved: list[str] = []
        for n in topology.nodes:
            host, port = topology.address_of(n.name)
            ips = self.ips(host)
            if not ips:
                self.unresolved.append(host)
            for ip in ips:
                self._at[(ip, port)] = n.name

    def ips(self, host: str) -> frozenset[str]:
        """Every IP address ``host`` stands for (cached); empty when it does not resolve."""
        lit = literal(host)
        if lit is not None:
            return frozenset((lit,))
        if self.known(host):
            return self._names[host][1]
        return self._store(host, self._resolver(host))

    def _store(self, host: str, ips: frozenset[str]) -> frozenset[str]:
        """Cache a lookup; a failed refresh keeps the last good answer (losing DNS along with an
        IDC must not make every replica's source unknown and hide the witnesses)."""
        old = self._names.get(host)
        if not ips and old is not None and old[1]:
            ips = old[1]
        self._names[host] = (self._clock(), ips)
        return ips

    def known(self, host: str) -> bool:
        """True when ``host`` needs no lookup now (an IP literal, or a name cached and fresh)."""
        if literal(host) is not None:
            return True
        hit = self._names.get(host)
        return hit is not None and self._clock() - hit[0] < (self._ttl if hit[1] else NEGATIVE_TTL_S)

    async def learn(self, host: str) -> None:
        """Resolve ``host`` off the event loop, under a timeout, into the cache."""
        if self.known(host):
            return
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                ips = await asyncio.to_thread(self._resolver, host)
        except TimeoutError:
            ips = frozenset()
        self._store(host, ips)

    def node_at(self, host: str, port: int) -> NodeName | None:
        """The node listening at ``host:port``, or None. Never blocks: a name not yet learnt
        counts as unknown (the prober learns it and the next probe matches it)."""
        if not host or not self.known(host):
            return None
        for ip in self.ips(host):
            node = self._at.get((ip, port))
            if node is not None:
                return node
        return None
