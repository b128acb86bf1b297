"""Wake a deadlocked semi-sync ack receiver (``decide/wake.py`` says when and why).

The executor attaches a semi-sync client of its own to the primary: a replication connection that
announces itself as a semi-sync replica (``@rpl_semi_sync_slave=1``) and asks for the binlog from
its current end, under a server id no server of the fleet uses. Its registration wakes the ack
receiver; the old dump thread then finalizes, and the acker's pending dump thread registers. The
client is held until the primary counts a second semi-sync client (the acker) or ``hold_s``
passes, then its socket is closed without a word.

Why this acknowledges nothing: a semi-sync commit is released only by a reply packet naming a
binlog position at or past it. This client starts at the end of the binlog, so it is never sent
the commits that wait, and it never writes a byte after its dump request (closing sends no
COM_QUIT either). Only the acker's replies release them, once it has received them.
"""

from __future__ import annotations

import asyncio
import random
import time

from idc_ha.errors import StepFailed
from idc_ha.model.ids import NodeName
from idc_ha.ports import Admin

# Server ids at the top of the 32-bit range are kept for these clients; give no server one.
WAKER_SERVER_IDS = range(4_294_900_000, 4_294_967_000)
HOLD_S = 3.0  # how long the silent client waits for the acker to register, observations included


async def wake_ack_receiver(admin: Admin, node: NodeName, *, hold_s: float) -> str:
    o = await admin.observe(node)
    m = o.semisync_master
    if m is None or not m.enabled or o.read_only:
        return "not a semi-sync primary any more; nothing to wake"
    if m.clients > 0:
        return f"a semi-sync client is registered again ({m.clients}); nothing to wake"
    # A fresh id each time: a dump thread of an earlier waker still finalizing would otherwise
    # hold this one back (the server waits for a dump thread of the same id to exit).
    server_id = random.choice(WAKER_SERVER_IDS)
    t0 = time.monotonic()
    detach = await admin.attach_silent_replica(node, server_id=server_id)
    clients = 0
    try:
        # Bounded as a whole: a failover of this shard waits for this step to end.
        async with asyncio.timeout(hold_s):
            while True:
                o = await admin.observe(node)
                m = o.semisync_master
                clients = m.clients if m is not None else 0
                if clients >= 2:
                    return (
                        f"woken: the acker registered {1000 * (time.monotonic() - t0):.0f} ms after a silent "
                        f"semi-sync client (server id {server_id}) did; {m.wait_sessions if m else 0} commit(s) "
                        "still wait"
                    )
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise StepFailed(
            f"{node}: no semi-sync replica registered within {hold_s:.1f} s of the silent client "
            f"(clients {clients}); the acker may not be reconnecting",
            node=node,
        ) from None
    finally:
        detach()
