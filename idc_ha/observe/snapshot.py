"""One probe round over every node, in parallel, as a frozen ``Snapshot``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from idc_ha.clock import boottime
from idc_ha.model.config import Config
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.observe.addresses import AddressBook
from idc_ha.observe.boots import BootTracker
from idc_ha.observe.prober import NodeProber


class Observer:
    """Owns one prober (and so one connection) per node of the topology."""

    def __init__(
        self,
        config: Config,
        *,
        book: AddressBook | None = None,
        clock: Callable[[], float] = boottime,
        boots: BootTracker | None = None,
    ) -> None:
        topo = config.topology
        self.book = book or AddressBook(topo)
        self.boots = boots or BootTracker()  # the admin reads the same boots (Daemon.from_config)
        creds = config.credentials
        password = creds.password.get_secret_value() if creds.password else ""
        self._clock = clock
        self.probers: dict[NodeName, NodeProber] = {}
        for n in topo.nodes:
            host, port = topo.address_of(n.name)
            self.probers[n.name] = NodeProber(
                n.name,
                host,
                port,
                user=creds.user,
                password=password,
                settings=config.probe,
                book=self.book,
                clock=clock,
                boots=self.boots,
            )

    def on_lost(self, callback: Callable[[NodeName], None]) -> None:
        """Call ``callback`` when a writable node's server closes its probe connection between
        rounds (``observe.watch``): a dead primary is heard at once, not one interval later."""
        for p in self.probers.values():
            p.on_lost = callback

    async def round(self) -> Snapshot:
        """Probe every node once; never raises (a failed probe is an unreachable observation)."""
        taken = self._clock()
        wall = time.time()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(p.probe() for p in self.probers.values()))
        nodes: dict[NodeName, NodeObservation] = {o.node: o for o in results}
        return Snapshot(taken_at=taken, wall=wall, duration_ms=(time.perf_counter() - t0) * 1000, nodes=nodes)

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.probers.values()))
