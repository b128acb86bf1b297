"""Which node of the topology a replica's ``Master_Host:Master_Port`` names, by resolved address.

A replica may name its source as the config does (``10.0.1.11``), as another spelling of the same
address (``::ffff:10.0.1.11``, ``localhost`` for ``127.0.0.1``) or by a host name. Comparing the
strings would miss a second acker spelled differently, so every address is resolved to its set of
IP addresses and compared as such. Resolution is I/O and lives here, at the edge: the decision
core only sees ``ReplicaStatus.source``, a node name or None.

Host names are resolved with ``getaddrinfo`` and cached for ``ttl_s`` (a failed lookup for
``NEGATIVE_TTL_S``, doubling while it keeps failing, so a DNS blip heals in seconds and a dead
DNS costs little); an IP literal is never sent to a resolver. Lookups run on two threads of
their own, one per name at a time: a resolver that hangs past the timeout holds those threads,
never the ones the store's fsync uses. A name that does not resolve matches no node (None): the core treats an
unknown source as a possible acker, never as "not the primary's".
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from idc_ha.model.ids import NodeName
from idc_ha.model.topology import Topology

RESOLVE_TIMEOUT_S = 1.0
NEGATIVE_TTL_S = 5.0  # a name that did not resolve is asked again this soon (a DNS blip heals quickly) ...
NEGATIVE_TTL_MAX_S = 60.0  # ... doubling while it keeps failing
_RESOLVERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="idc-ha-dns")


@functools.lru_cache(maxsize=4096)
def literal(host: str) -> str | None:
    """The canonical text of an IP literal (IPv4-mapped IPv6 as IPv4), or None for a name. Pure,
    so cached: every probe of a replica asks it of its source (parsing cost 15% of a probe's CPU)."""
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
        self._failed: dict[str, int] = {}  # name -> lookups failed in a row (the negative TTL doubles)
        self._inflight: dict[str, asyncio.Future[frozenset[str]]] = {}
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
        self._failed[host] = 0 if ips else self._failed.get(host, 0) + 1
        if not ips and old is not None and old[1]:
            ips = old[1]
        self._names[host] = (self._clock(), ips)
        return ips

    def known(self, host: str) -> bool:
        """True when ``host`` needs no lookup now (an IP literal, or a name cached and fresh)."""
        if literal(host) is not None:
            return True
        hit = self._names.get(host)
        if hit is None:
            return False
        negative = min(NEGATIVE_TTL_MAX_S, NEGATIVE_TTL_S * 2 ** max(0, self._failed.get(host, 1) - 1))
        return self._clock() - hit[0] < (self._ttl if hit[1] else negative)

    async def learn(self, host: str) -> None:
        """Resolve ``host`` off the event loop, under a timeout, into the cache."""
        if self.known(host):
            return
        fut = self._inflight.get(host)
        if fut is None:  # one lookup per name at a time, shared by every prober that needs it
            fut = asyncio.get_running_loop().run_in_executor(_RESOLVERS, self._resolver, host)
            self._inflight[host] = fut
            fut.add_done_callback(lambda f: self._done(host, f))
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                await asyncio.shield(fut)
        except TimeoutError:
            if not self.known(host):
                self._store(host, frozenset())

    def _done(self, host: str, fut: asyncio.Future[frozenset[str]]) -> None:
        self._inflight.pop(host, None)
        if not fut.cancelled():
            self._store(host, fut.result() if fut.exception() is None else frozenset())

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
