"""The promotion candidate's relay log: apply all of it, lose none of it.

Measured on MariaDB 10.11 in GTID mode: any START SLAVE issued while *both* replication threads
are stopped first deletes every relay log (0 of 100 received transactions applied), and so does
restarting the IO thread. On the acker of a dead primary the relay log holds the only copy of
acknowledged commits. So the candidate's IO thread is stopped and never restarted; its SQL thread
is started only while the IO thread still runs or, with both stopped, from its own relay-log
position with MASTER_USE_GTID=no (which keeps the relay logs: 100 of 100 applied); and its
replication is reset only once everything received is applied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import NoReturn

from idc_ha.act.admin import Admin
from idc_ha.errors import StepFailed
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation

Stuck = Callable[[NodeName, str, str], NoReturn]  # alerts that a human is needed, then raises


async def ensure_sql_running(admin: Admin, node: NodeName, o: NodeObservation, stuck: Stuck) -> bool:
    """Start the candidate's SQL thread without losing its relay log (see the module docstring).
    True if it had to be started; a SQL error means a human (``stuck`` raises)."""
    r = o.replica
    assert r is not None
    if r.sql_ok:
        return False
    if r.last_sql_errno:
        stuck(
            node,
            f"{node}: SQL thread error {r.last_sql_errno}: {r.last_sql_error[:200]}",
            "fix the replication error by hand; the relay log is kept and the failover resumes",
        )
    if r.io_stopped:
        if not r.relay_log_file:
            raise StepFailed(f"{node}: both replication threads stopped and no relay-log position known", node=node)
        await admin.run(
            node,
            "CHANGE MASTER TO MASTER_USE_GTID=no, "
            f"RELAY_LOG_FILE='{r.relay_log_file}', RELAY_LOG_POS={r.relay_log_pos}",
            "START SLAVE SQL_THREAD",
        )
    else:
        await admin.run(node, "START SLAVE SQL_THREAD")
    return True


async def stop_receiving(admin: Admin, node: NodeName, stuck: Stuck) -> str:
    """Fix what the candidate received: its SQL thread runs, its IO thread stops (never restarts)."""
    o = await admin.observe(node)
    if o.replica is None:
        return "not a replica (already detached)"
    started = await ensure_sql_running(admin, node, o, stuck)
    if o.replica.io_stopped:
        return "IO thread already stopped" + ("; SQL thread resumed from its relay-log position" if started else "")
    # Stopping (never restarting) the IO thread keeps the relay log and fixes what was received.
    await admin.run(node, "STOP SLAVE IO_THREAD")
    return f"IO thread stopped at {o.replica.gtid_io_pos}" + ("; SQL thread started" if started else "")


async def wait_applied(admin: Admin, node: NodeName, stuck: Stuck, *, timeout_s: float) -> str:
    """Until the candidate's SQL thread has applied everything it received."""
    deadline = time.monotonic() + timeout_s
    while True:
        o = await admin.observe(node)
        r = o.replica
        if r is None:
            return "not a replica (already detached)"
        if not r.sql_ok:
            await ensure_sql_running(admin, node, o, stuck)
        elif o.gtid_slave_pos.contains(r.gtid_io_pos):
            return f"applied up to {o.gtid_slave_pos}"
        if time.monotonic() > deadline:
            stuck(
                node,
                f"{node}: relay log not applied after {timeout_s:.0f} s "
                f"(received {r.gtid_io_pos}, applied {o.gtid_slave_pos})",
                "the failover keeps waiting; check the candidate's load and SQL thread",
            )
        await asyncio.sleep(0.02)


async def detach(admin: Admin, node: NodeName) -> str:
    """STOP SLAVE; RESET SLAVE ALL on the candidate, once it has applied all it received."""
    o = await admin.observe(node)
    if o.replica is None:
        return "already detached"
    if not o.gtid_slave_pos.contains(o.replica.gtid_io_pos):
        raise StepFailed(f"{node}: received {o.replica.gtid_io_pos} but applied only {o.gtid_slave_pos}", node=node)
    await admin.run(node, "STOP SLAVE", "RESET SLAVE ALL")
    return f"replication reset; holds {o.gtid_current_pos}"
