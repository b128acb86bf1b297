"""Wake a deadlocked semi-sync ack receiver (``decide/wake.py`` says when and why).

The executor attaches a semi-sync client of its own to the primary: a replication connection that
announces itself as a semi-sync replica (``@rpl_semi_sync_slave=1``) under a server id no server
of the fleet uses. Its registration wakes the ack receiver; the old dump thread then finalizes,
and the acker's pending dump thread registers. The client is held until the primary counts a
second semi-sync client (the acker), then its socket is closed without a word. The whole step is
bounded by ``hold_s``: a failover of the shard waits for it (or cancels it: it is cancel-safe).

Why this acknowledges nothing: MariaDB counts a semi-sync replica's start position as
acknowledged (``Repl_semi_sync_master::dump_start`` calls ``report_reply_binlog``; measured: a
client starting at the binlog's end released a waiting commit that no replica held). So the
client starts at position 4 of the oldest binlog file, and only when the acker already holds the
GTID position there (``BINLOG_GTID_POS``): every commit the acker lacks lies after that point,
and a start before it releases none of them (an earlier or equal point than the last real ack
changes nothing; with no ack yet it marks a point before every waiting commit). The client never
writes a byte after its dump request (closing sends no COM_QUIT), so nothing else can be read as
an ack.
"""

from __future__ import annotations

import asyncio
import random
import time

from pymysql.converters import escape_string

from idc_ha.errors import StepFailed
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.ports import Admin

# Server ids at the top of the 32-bit range are kept for these clients; give no server one.
WAKER_SERVER_IDS = range(4_294_900_000, 4_294_967_000)
HOLD_S = 3.0  # how long the silent client waits for the acker to register, observations included


async def wake_ack_receiver(admin: Admin, node: NodeName, acker: NodeName, *, hold_s: float) -> str:
    try:
        async with asyncio.timeout(hold_s):
            return await _wake(admin, node, acker)
    except TimeoutError:
        raise StepFailed(
            f"{node}: the acker {acker} did not register within {hold_s:.1f} s of waking the ack receiver",
            node=node,
        ) from None


async def _wake(admin: Admin, node: NodeName, acker: NodeName) -> str:
    o = await admin.observe(node)
    m = o.semisync_master
    if m is None or not m.enabled or o.read_only:
        return "not a semi-sync primary any more; nothing to wake"
    if m.clients > 0:
        return f"a semi-sync client is registered again ({m.clients}); nothing to wake"
    [logs] = await admin.run(node, "SHOW BINARY LOGS", fetch=True)
    if not logs:
        raise StepFailed(f"{node}: SHOW BINARY LOGS lists no binlog file", node=node)
    oldest = str(logs[0]["Log_name"])
    [[row]] = await admin.run(node, f"SELECT BINLOG_GTID_POS('{escape_string(oldest)}', 4) AS pos", fetch=True)
    start = GtidPos.parse(str(row["pos"] or ""))
    a = await admin.observe(acker)
    if not a.received().contains(start):
        raise StepFailed(
            f"{node}: the acker {acker} holds {a.received()} but the oldest binlog {oldest} starts at {start}: "
            "a silent client starting there could acknowledge commits it lacks; not woken",
            node=node,
        )
    # A fresh id each time: a dump thread of an earlier waker still finalizing would otherwise
    # hold this one back (the server waits for a dump thread of the same id to exit).
    server_id = random.choice(WAKER_SERVER_IDS)
    t0 = time.monotonic()
    detach = await admin.attach_silent_replica(node, server_id=server_id, file=oldest, pos=4)
    try:
        while True:
            o = await admin.observe(node)
            m = o.semisync_master
            if m is not None and m.clients >= 2:
                return (
                    f"woken: {acker} registered {1000 * (time.monotonic() - t0):.0f} ms after a silent semi-sync "
                    f"client (server id {server_id}, from {oldest}:4) did; {m.wait_sessions} commit(s) still wait"
                )
            await asyncio.sleep(0.05)
    finally:
        detach()
