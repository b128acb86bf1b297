"""Hear a server drop a probe connection between two probes.

A server that dies (SIGKILL, a crash, OOM) closes its sockets: the kernel sends FIN at once, and
the connection the prober keeps open between probes hears it. Waiting for the next round to find
out costs up to a probe interval; a callback on the connection's close costs nothing while it
stays open. The prober watches the connections of writable nodes only (one per shard), and the
daemon answers a loss with a round at once. A silent server (power cut, frozen, link down) sends
nothing and is found by the rounds, as before.

asyncmy's protocol resolves ``wait_closed()`` when the transport is lost; with a driver that lacks
it nothing is watched and the rounds find the loss, one interval later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


def on_close(conn: Any, callback: Callable[[], None]) -> bool:
    """Call ``callback`` once ``conn``'s transport is lost (by either end); False when the driver
    offers no way to hear it."""
    wait = getattr(getattr(conn, "_proto", None), "wait_closed", None)
    if wait is None:
        return False
    task = asyncio.ensure_future(wait())
    task.add_done_callback(lambda t: None if t.cancelled() else callback())
    return True
