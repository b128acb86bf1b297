"""Run coroutines from another network namespace: the lab's client site.

``ClientSite(netns)`` starts a thread that enters the namespace (``setns(2)`` applies to the calling
thread only) and runs an event loop there; its default executor's threads enter it too, so every
socket its coroutines open (aiomysql, and aiomqtt, which connects from the executor) belongs to that
namespace. ``await site.run(coro)`` runs a coroutine there from any other loop. With ``netns=None``
it is a plain thread in this namespace (loopback labs).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    """Move the calling thread into the named network namespace (``ip netns`` names)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into network namespace {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class ClientSite:
    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        self.loop = asyncio.new_event_loop()
        ready: list[BaseException | None] = []
        started = threading.Event()

        def main() -> None:
            try:
                if netns is not None:
                    enter_netns(netns)
                    self.loop.set_default_executor(ThreadPoolExecutor(4, initializer=enter_netns, initargs=(netns,)))
                ready.append(None)
            except BaseException as e:  # reported to the constructor's caller
                ready.append(e)
                return
            finally:
                started.set()
            asyncio.set_event_loop(self.loop)
            self.loop.run_forever()

        self._thread = threading.Thread(target=main, name=f"site-{netns or 'here'}", daemon=True)
        self._thread.start()
        started.wait(10)
        if ready and ready[0] is not None:
            raise ready[0]

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the site's loop; its result here."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def close(self) -> None:
        async def drain() -> None:
            await self.loop.shutdown_default_executor()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(drain(), self.loop).result(10)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        self.loop.close()


class SiteWorkload:
    """A ``sim.workload.Workload`` whose writers run at a lab's client site (``info["client"]``,
    from ``python -m sim.lab up``): same async methods, each run on the site's loop; ``close()``
    after the last one."""

    def __init__(self, config: Any, info: dict[str, Any], **kwargs: Any) -> None:
        from sim.workload import Workload

        client = info.get("client") or {}
        self.site = ClientSite(client.get("netns"))
        self.wl = Workload(
            config,
            user=info["app_user"],
            password=info["app_password"],
            mqtt_host=client.get("mqtt_host"),
            **kwargs,
        )

    async def start(self) -> None:
        await self.site.run(self.wl.start())

    async def stop(self) -> None:
        await self.site.run(self.wl.stop())

    async def wait_all_acked_after(self, t: float, *, timeout: float, shards: set[str] | None = None) -> bool:
        return await self.site.run(self.wl.wait_all_acked_after(t, timeout=timeout, shards=shards))

    async def verify(self, *, fault_at: float | None = None, fault_over: float | None = None) -> dict[str, Any]:
        try:
            return await self.site.run(self.wl.verify(fault_at=fault_at, fault_over=fault_over))
        finally:
            self.close()

    def close(self) -> None:
        self.site.close()
