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
client dumps in strict GTID mode from what the acker's IO thread has received from this primary
(``Gtid_IO_Pos``; not its own binlog, where an errant local write would be): the server starts
such a dump at position 4 of the binlog file in which the acker's next transaction lies, so no
later than the first commit the acker lacks, and refuses a position its binlogs do not hold
(purged, or diverged) before the client registers. The start releases nothing the acker lacks.
The client never writes a byte after its dump request (closing sends no COM_QUIT), so nothing
else can be read as an ack.

Nothing here may take the binlog's LOCK_log: with the AFTER_SYNC wait point a second commit
queued behind the waiting one holds it, so SHOW BINARY LOGS or SHOW MASTER STATUS would hang for
as long as the deadlock (measured: the first version of this step listed the binlogs and timed
out on most heals under a multi-writer load).
"""

from __future__ import annotations

import asyncio
import random
import time

from idc_ha.errors import NodeError, StepFailed
from idc_ha.model.ids import NodeName
from idc_ha.ports import Admin

# Server ids at the top of the 32-bit range are kept for these clients; give no server one.
WAKER_SERVER_IDS = range(4_294_900_000, 4_294_967_000)
ER_MASTER_FATAL_ERROR_READING_BINLOG = 1236  # the GTID position is not in the binlogs
HOLD_S = 3.0  # how long the silent client waits for the acker to register, observations included


async def wake_ack_receiver(admin: Admin, node: NodeName, acker: NodeName, *, hold_s: float) -> str:
    stage = ["observing"]  # where a timeout found the step, for the journal
    try:
        async with asyncio.timeout(hold_s):
            return await _wake(admin, node, acker, stage)
    except TimeoutError:
        raise StepFailed(
            f"{node}: the acker {acker} did not register within {hold_s:.1f} s of waking the ack receiver "
            f"(step stopped while {stage[0]})",
            node=node,
        ) from None


async def _wake(admin: Admin, node: NodeName, acker: NodeName, stage: list[str]) -> str:
    o = await admin.observe(node)
    m = o.semisync_master
    if m is None or not m.enabled or o.read_only:
        return "not a semi-sync primary any more; nothing to wake"
    if m.clients > 0:
        return f"a semi-sync client is registered again ({m.clients}); nothing to wake"
    stage[0] = f"observing the acker {acker}"
    a = await admin.observe(acker)
    if a.replica is None:
        raise StepFailed(f"{node}: the acker {acker} replicates from nothing any more; not woken", node=node)
    start = a.replica.gtid_io_pos
    # A fresh id each time: a dump thread of an earlier waker still finalizing would otherwise
    # hold this one back (the server waits for a dump thread of the same id to exit).
    server_id = random.choice(WAKER_SERVER_IDS)
    t0 = time.monotonic()
    stage[0] = f"attaching the silent client (server id {server_id}, from {start or 'the first GTID'})"
    try:
        detach = await admin.attach_silent_replica(node, server_id=server_id, gtid=start)
    except NodeError as e:
        if e.code == ER_MASTER_FATAL_ERROR_READING_BINLOG:
            raise StepFailed(
                f"{node}: its binlogs do not hold {acker}'s position {start or '(empty)'} ({e}): purged past it, "
                f"or {acker} diverged; nothing was woken",
                node=node,
                hint=f"run `idc-ha check --live`; {acker} may need a rebuild from {node}",
            ) from e
        raise StepFailed(
            f"{node}: the silent semi-sync client did not attach ({e}); nothing was woken", node=node
        ) from e
    try:
        while True:
            o = await admin.observe(node)
            m = o.semisync_master
            stage[0] = (
                f"holding the silent client (server id {server_id}): "
                f"{m.clients if m else '?'} semi-sync client(s) registered"
            )
            if m is not None and m.clients >= 2:
                return (
                    f"woken: a second semi-sync client (the acker {acker}, unless a stray one is attached) "
                    f"registered {1000 * (time.monotonic() - t0):.0f} ms after a silent one (server id {server_id}, "
                    f"from {start or 'the first GTID'}); {m.wait_sessions} commit(s) still wait"
                )
            await asyncio.sleep(0.05)
    finally:
        detach()
