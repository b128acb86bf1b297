"""A replica's relay log: apply all of it, lose none of it.

Measured on MariaDB 10.11.19 in GTID mode:

* any START SLAVE issued while *both* replication threads are stopped first deletes every relay log
  (0 of 100 received transactions applied), and so does restarting the IO thread;
* a server restarted without ``skip-slave-start`` starts its threads itself, with the same effect:
  an acker killed while its primary was dead came back with 0 of 100 acknowledged transactions;
* with ``skip-slave-start`` the relay log survives a restart, but ``Gtid_IO_Pos`` comes back empty
  and relay-log.info may be stale (it was written at the start of the file while the SQL thread
  had applied 34 transactions): resuming there re-applies them and gtid_strict_mode stops the SQL
  thread with error 1950.

On an acker whose primary is dead the relay log holds the only copy of acknowledged commits. So
the SQL thread is started only while the IO thread still runs or, with both stopped, from the
first event group the server has not applied, found by reading the relay logs (``SHOW RELAYLOG
EVENTS``) and given as ``RELAY_LOG_FILE``/``RELAY_LOG_POS`` with ``MASTER_USE_GTID=no`` (which
keeps the relay logs: 80 of 80 applied after a crash); the IO thread is stopped, never restarted,
on a promotion candidate; and replication is reset only once everything received is applied.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any, NoReturn

from idc_ha.errors import NodeError, StepFailed
from idc_ha.model.gtid import GtidParseError, GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation
from idc_ha.ports import Admin

ER_NO_SUCH_THREAD = 1094  # KILL of a thread that has ended
KILL_SETTLE_S = 0.02  # between KILL of an IO thread and STOP SLAVE IO_THREAD (``_kill_io_thread``)

Stuck = Callable[[NodeName, str, str], NoReturn]  # alerts that a human is needed, then raises

NO_SUCH_LOG = 1220  # SHOW RELAYLOG EVENTS IN a file that does not exist
PAGE = 1000
MAX_MISSING = 64  # relay-log.info may name a file already purged: look this far past it
_GTID = re.compile(r"\bGTID (\d+-\d+-\d+)")


class Resume:
    """Where the SQL thread must start to apply what the server has not, and what the relay logs hold."""

    def __init__(self, file: str | None, pos: int | None, last: GtidPos) -> None:
        self.file, self.pos, self.last = file, pos, last

    @property
    def pending(self) -> bool:
        return self.file is not None


def _next_name(name: str) -> str:
    base, _, num = name.rpartition(".")
    return f"{base}.{int(num) + 1:0{len(num)}d}" if num.isdigit() else name


async def _events(admin: Admin, node: NodeName, file: str) -> list[dict[str, Any]] | None:
    """Every event of one relay log file (paged); None when the file does not exist."""
    out: list[dict[str, Any]] = []
    sql = f"SHOW RELAYLOG EVENTS IN '{file}' LIMIT {PAGE}"
    while True:
        try:
            rows = (await admin.run(node, sql, fetch=True))[0]
        except NodeError as e:
            if e.code == NO_SUCH_LOG:
                return None if not out else out
            raise
        out += rows
        if len(rows) < PAGE:
            return out
        sql = f"SHOW RELAYLOG EVENTS IN '{file}' FROM {int(str(rows[-1]['Pos']))} LIMIT 1, {PAGE}"


async def resume_point(admin: Admin, node: NodeName, o: NodeObservation) -> Resume:
    """Read the relay logs from the file relay-log.info names onwards: the first event group not
    in ``gtid_slave_pos`` (None when all is applied), and the last GTID of a *complete* group they
    hold. A group opened by ``BEGIN GTID`` or ``XA START ... GTID`` is complete at its Xid,
    XA_prepare, or a Query COMMIT/ROLLBACK; a standalone ``GTID`` group (DDL, XA COMMIT) at its
    first Query. A group cut off half-way by the loss was never acknowledged and is never waited for."""
    r = o.replica
    if r is None or not r.relay_log_file:
        return Resume(None, None, GtidPos())
    applied = o.gtid_slave_pos
    first: tuple[str, int] | None = None
    last = GtidPos()
    open_group: tuple[GtidPos, bool] | None = None  # (its GTID, transactional: ends at Xid/COMMIT)
    name, missing, seen_any = r.relay_log_file, 0, False
    while missing <= MAX_MISSING:
        rows = await _events(admin, node, name)
        if rows is None:
            if seen_any:
                break
            missing += 1
            name = _next_name(name)
            continue
        seen_any = True
        for row in rows:
            kind, info = str(row.get("Event_type")), str(row.get("Info", ""))
            if kind == "Gtid":
                m = _GTID.search(info)
                if m is None:
                    continue
                try:
                    g = GtidPos.parse(m[1])
                except GtidParseError:
                    continue
                open_group = (g, info.startswith(("BEGIN", "XA START")))
                if first is None and not applied.contains(g):
                    first = (name, int(str(row["Pos"])))
            elif open_group is not None:
                g, transactional = open_group
                ends = kind in ("Xid", "XA_prepare") or (
                    kind == "Query" and (not transactional or info.upper().startswith(("COMMIT", "ROLLBACK")))
                )
                if ends:
                    last, open_group = last.merge(g), None
        name = _next_name(name)
    if first is None:
        return Resume(None, None, last)
    return Resume(first[0], first[1], last)


async def ensure_sql_running(admin: Admin, node: NodeName, o: NodeObservation, stuck: Stuck) -> bool:
    """Start the SQL thread without losing the relay log (see the module docstring).
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
        at = await resume_point(admin, node, o)
        if not at.pending:
            return False  # nothing left to apply: starting the SQL thread would only risk the relay log
        await admin.run(
            node,
            f"CHANGE MASTER TO MASTER_USE_GTID=no, RELAY_LOG_FILE='{at.file}', RELAY_LOG_POS={at.pos}",
            "START SLAVE SQL_THREAD",
        )
    else:
        await admin.run(node, "START SLAVE SQL_THREAD")
    return True


def all_applied(o: NodeObservation, relay_end: GtidPos | None = None) -> bool:
    """Everything received is applied: gtid_slave_pos holds Gtid_IO_Pos (and ``relay_end``, what a
    read of the relay logs found, when Gtid_IO_Pos was lost in a restart)."""
    r = o.replica
    if r is None:
        return True
    return o.gtid_slave_pos.contains(r.gtid_io_pos) and (relay_end is None or o.gtid_slave_pos.contains(relay_end))


async def stop_receiving(admin: Admin, node: NodeName, stuck: Stuck) -> str:
    """Fix what the candidate received: its SQL thread runs, its IO thread stops (never restarts)."""
    o = await admin.observe(node)
    if o.replica is None:
        return "not a replica (already detached)"
    started = await ensure_sql_running(admin, node, o, stuck)
    if o.replica.io_stopped:
        return "IO thread already stopped" + ("; SQL thread resumed from its relay log" if started else "")
    # Stopping (never restarting) the IO thread keeps the relay log and fixes what was received.
    try:
        # Only an IO thread connected and waiting to read needs it: one reconnecting (its source
        # refuses, or it timed out) ignores the kill flag, and stops at once when it is sleeping.
        killed = o.replica.io_running == "Yes" and await _kill_io_thread(admin, node)
        how = " (killed first)" if killed else ""
    except NodeError as e:
        # Only a speed-up: without it (no PROCESS or CONNECTION ADMIN grant, say) the stop may
        # take MariaDB's 2 s on a silent source, and the failover goes on.
        how = f" (not killed first: {e}; the stop may take 2 s on a silent source)"
    await admin.run(node, "STOP SLAVE IO_THREAD")
    return f"IO thread stopped at {o.replica.gtid_io_pos}{how}" + ("; SQL thread started" if started else "")


async def _kill_io_thread(admin: Admin, node: NodeName) -> bool:
    """Mark the IO thread killed before STOP SLAVE IO_THREAD, so that the stop is immediate.

    An IO thread waiting on a silent source (frozen, or its link cut) misses the first stop signal
    in MariaDB 10.11: the interrupted read is retried with a fresh timeout, and the stop is only
    resent after 2 s (measured: 2.002 s every time). A read interrupted while the thread is marked
    killed returns at once (``my_real_read`` checks the kill flag), so KILL, then STOP, ends the
    thread in milliseconds while it still waits to read (before ``slave_net_timeout`` makes it
    reconnect; a reconnect attempt ignores the flag and the stop takes the 2 s again). KILL alone
    only takes effect when something arrives or the read times out. An event read after the flag
    is set is dropped, not queued nor acknowledged, as with STOP. The stop follows the KILL after
    ``KILL_SETTLE_S``: sent at once, it still met the 2 s resend in about one case in five
    (measured on the lab, the reason not found); 10 ms later, never in 24 tries. Only with exactly
    one IO thread (the default connection idc-ha manages): never a stranger's named connection."""
    # A race remains: the default connection's IO thread ending between the caller's observation
    # and this read would leave a named connection's as the only one. idc-ha wires the default one.
    rows = await admin.run(node, "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Slave_IO'", fetch=True)
    ids = [int(r["ID"]) for r in rows[0]]
    if len(ids) != 1:
        return False
    try:
        await admin.run(node, f"KILL CONNECTION {ids[0]}")
    except NodeError as e:
        if e.code != ER_NO_SUCH_THREAD:
            raise
        return False  # it ended meanwhile
    await asyncio.sleep(KILL_SETTLE_S)
    return True


async def wait_applied(admin: Admin, node: NodeName, stuck: Stuck, *, timeout_s: float) -> str:
    """Until the candidate's SQL thread has applied everything it received."""
    deadline = time.monotonic() + timeout_s
    relay_end: GtidPos | None = None
    while True:
        o = await admin.observe(node)
        r = o.replica
        if r is None:
            return "not a replica (already detached)"
        if r.io_stopped and not r.gtid_io_pos and relay_end is None:
            # A restart cleared Gtid_IO_Pos: what was received is what the relay logs hold.
            relay_end = (await resume_point(admin, node, o)).last
        if not r.sql_ok and not all_applied(o, relay_end):
            await ensure_sql_running(admin, node, o, stuck)
        elif all_applied(o, relay_end):
            return f"applied up to {o.gtid_slave_pos}"
        if time.monotonic() > deadline:
            stuck(
                node,
                f"{node}: relay log not applied after {timeout_s:.0f} s "
                f"(received {r.gtid_io_pos or relay_end}, applied {o.gtid_slave_pos})",
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
    if o.replica.io_stopped and not o.replica.gtid_io_pos:
        at = await resume_point(admin, node, o)
        if not o.gtid_slave_pos.contains(at.last):
            raise StepFailed(f"{node}: its relay logs hold {at.last} but it applied only {o.gtid_slave_pos}", node=node)
    await admin.run(node, "STOP SLAVE", "RESET SLAVE ALL")
    return f"replication reset; holds {o.gtid_current_pos}"


async def start_replica(admin: Admin, node: NodeName, change_master: str, stuck: Stuck, *, timeout_s: float) -> str:
    """Start a replica that a restart left with both threads stopped (``skip-slave-start``): apply
    its relay log from where it stands, then switch back to GTID mode on its recorded source and
    start both threads (``change_master`` is the CHANGE MASTER for that source)."""
    o = await admin.observe(node)
    r = o.replica
    if r is None:
        raise StepFailed(f"{node}: not configured as a replica; nothing to start", node=node)
    if r.io_connected or r.io_running == "Connecting":
        return "already started"
    at = await resume_point(admin, node, o)
    applied_note = "nothing in its relay log to apply"
    if at.pending and not r.sql_ok:
        await ensure_sql_running(admin, node, o, stuck)
        applied_note = f"relay log applied from {at.file}:{at.pos}"
    deadline = time.monotonic() + timeout_s
    while at.pending:
        o = await admin.observe(node)
        if o.gtid_slave_pos.contains(at.last):
            break
        if o.replica is not None and o.replica.last_sql_errno:
            stuck(
                node,
                f"{node}: SQL thread error {o.replica.last_sql_errno} while applying its relay log: "
                f"{o.replica.last_sql_error[:160]}",
                "fix the error by hand and START SLAVE SQL_THREAD; never RESET SLAVE or START SLAVE with both "
                "threads stopped before the relay log is applied",
            )
        if time.monotonic() > deadline:
            raise StepFailed(f"{node}: relay log not applied after {timeout_s:.0f} s", node=node)
        await asyncio.sleep(0.02)
    # Everything received is applied: restarting the IO thread may now discard the relay log.
    await admin.run(node, "STOP SLAVE", change_master, "START SLAVE")
    return f"{applied_note}; replication started in GTID mode"


async def catch_up(
    admin: Admin, node: NodeName, source: NodeName, change_master: str, stuck: Stuck, *, timeout_s: float
) -> str:
    """Until ``node`` holds everything ``source`` holds: replicate from ``source`` (whose IO thread
    is stopped, its relay log applied) if it lacks some, then stop replicating. ``node``'s own
    relay log was applied first (``wait_applied``): switching its source discards it."""
    src = await admin.observe(source)
    want = src.received()
    o = await admin.observe(node)
    if o.gtid_current_pos.contains(want):
        if o.replica is not None and o.source == source and not o.replica.io_stopped:
            await admin.run(node, "STOP SLAVE")
        return f"holds {o.gtid_current_pos}, all {source} received ({want})"
    if o.replica is None:
        stuck(
            node,
            f"{node} is detached and holds {o.gtid_current_pos}, not all {source} received ({want})",
            f"compare the GTIDs of {node} and {source} by hand; promote only the one holding every acked commit",
        )
    if o.source != source or o.replica.io_stopped:
        # Resumed after a crash, the IO thread may be stopped while pointing at the acker already.
        if not all_applied(o):
            raise StepFailed(f"{node}: its relay log is not applied yet; not switching its source", node=node)
        await admin.run(node, "STOP SLAVE", change_master, "START SLAVE")
    deadline = time.monotonic() + timeout_s
    while True:
        o = await admin.observe(node)
        if o.gtid_current_pos.contains(want):
            await admin.run(node, "STOP SLAVE")
            return f"caught up from {source} to {o.gtid_current_pos}"
        r = o.replica
        if r is not None and (r.last_sql_errno or (r.io_stopped and r.last_io_errno)):
            stuck(
                node,
                f"{node} cannot catch up from {source}: IO error {r.last_io_errno} {r.last_io_error[:120]}; "
                f"SQL error {r.last_sql_errno} {r.last_sql_error[:120]}",
                "fix replication by hand; the failover resumes once the candidate holds all the acker received",
            )
        if time.monotonic() > deadline:
            stuck(
                node,
                f"{node} has not caught up from {source} after {timeout_s:.0f} s (holds {o.gtid_current_pos}, "
                f"needs {want})",
                "the failover keeps waiting; check the candidate's replication from the acker",
            )
        await asyncio.sleep(0.02)
