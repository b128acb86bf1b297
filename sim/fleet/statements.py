"""The statements the executor and the Fencer send, as MariaDB 10.11 answers them (lab-facts.md):

* in GTID mode any START SLAVE issued while *both* threads are stopped, and any START SLAVE
  IO_THREAD, deletes the relay log first: unapplied transactions are gone and Gtid_IO_Pos falls
  back to gtid_slave_pos (``discarded`` keeps them, ``traps`` names the START). CHANGE MASTER
  without a relay-log position deletes it too; with ``RELAY_LOG_FILE``/``RELAY_LOG_POS`` it keeps
  it and turns GTID mode off, as MariaDB's change_master() does. CHANGE MASTER and RESET SLAVE ALL
  fail with error 1198 while a replication thread runs;
* ``SET GLOBAL read_only=ON`` on a writable node waits while a session waits for a semi-sync ack
  (``wait_sessions``), as "Waiting for backup lock" does; ``SET STATEMENT lock_wait_timeout=N
  FOR`` it fails with 1205 after N seconds;
* the sessions waiting for an ack are listed by their processlist state, and ``KILL CONNECTION`` of
  one ends it with an error for its client while its transaction stays in the binlog (errant on a
  node out of the layout: docs/fencing.md);
* ``SET GLOBAL rpl_semi_sync_master_enabled=OFF`` switches semi-sync off (``no_times`` + 1);
* ``SHOW RELAYLOG EVENTS IN '<file>' [FROM pos] [LIMIT [offset,] n]`` lists the relay log (a
  Gtid and an Xid event per group; a group cut off half-way has its Gtid only);
* ``SHOW BINARY LOGS`` and ``SHOW MASTER STATUS`` are left out on purpose: they take the binlog's
  LOCK_log, which a commit queued behind a semi-sync wait holds (AFTER_SYNC), so nothing that
  runs on a primary with waiting commits may send them.

A statement nobody modelled raises ``UnknownStatement`` (an AssertionError the executor never
catches), so a test fails loudly instead of passing on it.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from idc_ha.errors import NodeError
from idc_ha.model.gtid import GtidPos

from .node import EVENT_BYTES, FakeNode, Replica, Sent

# KILL QUERY of anything, and switching master semi-sync off, turn a commit waiting for its ack into
# an acknowledged one. The only KILL modelled is of a replica's own IO thread (``_kill``).
FORBIDDEN = re.compile(r"^\s*KILL\s+QUERY\b|rpl_semi_sync_master_enabled\s*=\s*'?(OFF|0|FALSE)\b", re.IGNORECASE)
_BOUNDED = re.compile(r"SET STATEMENT lock_wait_timeout=(\d+) FOR (.+)", re.IGNORECASE)
_SET = re.compile(r"SET GLOBAL (\w+)\s*=\s*(.+)", re.IGNORECASE)
_SLAVE = re.compile(r"(START|STOP) SLAVE( IO_THREAD| SQL_THREAD)?", re.IGNORECASE)
_RELAYLOG = re.compile(
    r"SHOW RELAYLOG EVENTS IN '([^']+)'(?: FROM (\d+))?(?: LIMIT (?:(\d+),\s*)?(\d+))?", re.IGNORECASE
)
KILL = re.compile(r"KILL (?:CONNECTION )?(\d+)", re.IGNORECASE)
_IO_THREAD_QUERY = "SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Slave_IO'"
WAITER_IDS = 2_000_000_000  # + the waiting commit's sequence number
_WAITERS_QUERY = "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for semi-sync ACK from slave'"
_STATUS = re.compile(r"SHOW GLOBAL STATUS LIKE '(\w+)'", re.IGNORECASE)
_OPTION = re.compile(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^,\s]+)")
_KNOWN = {f"MASTER_{k}" for k in ("HOST", "PORT", "USER", "PASSWORD", "USE_GTID", "CONNECT_RETRY")} | {
    "MASTER_HEARTBEAT_PERIOD",
    "RELAY_LOG_FILE",
    "RELAY_LOG_POS",
}


class UnknownStatement(AssertionError):
    """The executor sent something the fake does not model: extend the fake, or fix the caller."""


def delete_relay_log(n: FakeNode) -> None:
    r = n.replica
    assert r is not None
    n.discarded += r.relay
    r.log, r.at, r.info_at, r.io_pos, r.partial = [], 0, None, n.slave_pos, None
    r.relay_file += 1


async def execute(n: FakeNode, sql: str) -> list[dict[str, Any]]:
    """Run one statement on a live node; the rows it returns."""
    await asyncio.sleep(0)
    s = " ".join(sql.split())
    if m := _BOUNDED.fullmatch(s):
        try:
            async with asyncio.timeout(int(m[1])):
                return await execute(n, m[2])
        except TimeoutError:
            raise NodeError(f"{n.name}: {sql}: 1205 Lock wait timeout exceeded", node=n.name, code=1205) from None
    if m := _SET.fullmatch(s):
        await _set(n, m[1].lower(), m[2].strip("'\""))
    elif m := _SLAVE.fullmatch(s):
        threads = {"": ("io", "sql"), " IO_THREAD": ("io",), " SQL_THREAD": ("sql",)}[(m[2] or "").upper()]
        (_start if m[1].upper() == "START" else _stop)(n, threads, s)
    elif s.upper() == "RESET SLAVE ALL":
        if n.replica is not None:
            _must_be_stopped(n, s)
            delete_relay_log(n)
        n.replica = None
    elif s.upper().startswith("CHANGE MASTER TO "):
        _change_master(n, s)
    elif m := _RELAYLOG.fullmatch(s):
        return _relaylog_events(n, m[1], int(m[2] or 4), int(m[3] or 0), int(m[4]) if m[4] else None)
    elif s == _IO_THREAD_QUERY:
        r = n.replica
        return [{"ID": io_thread_id(n)}] if r is not None and r.io != "No" else []
    elif s == _WAITERS_QUERY:
        return [{"ID": i} for i in waiter_ids(n)]
    elif m := KILL.fullmatch(s):
        _kill(n, int(m[1]), s)
    elif s.startswith(("CREATE DATABASE IF NOT EXISTS idc_ha", "CREATE TABLE IF NOT EXISTS idc_ha.routing ")):
        pass
    elif s.startswith("INSERT INTO idc_ha.routing "):
        _routing_upsert(n, s)
    elif s == "SELECT shard, epoch, node, host, port, idc FROM idc_ha.routing":
        return [{"shard": k, **{f: v for f, v in r.items() if f != "updated_at"}} for k, r in n.routing_rows.items()]
    elif m := _STATUS.fullmatch(s):
        status = {"Rpl_semi_sync_master_wait_sessions": n.wait_sessions}
        return [{"Variable_name": m[1], "Value": str(status[m[1]])}] if m[1] in status else []
    else:
        raise UnknownStatement(f"{n.name}: the fake does not model {sql!r}")
    return []


_ROUTING_ROW = re.compile(
    r"SELECT '([^']*)' AS n_shard, (\d+) AS n_epoch, '([^']*)' AS n_node, '([^']*)' AS n_host, (\d+) AS n_port, "
    r"'([^']*)' AS n_idc, FROM_UNIXTIME\(([\d.]+)\) AS n_updated_at"
)


def _routing_upsert(n: FakeNode, s: str) -> None:
    """``act/routing_table.upsert_sql``: nothing on a read-only node (its WHERE), else each row
    inserted, or updated only for an equal or higher epoch. Rows are kept on the node (they do
    not replicate in the fake)."""
    if "WHERE @@global.read_only = 0" not in s:
        raise UnknownStatement(f"{n.name}: a routing write without its read-only guard: {s[:80]!r}")
    if n.read_only:
        return
    for shard, epoch, node, host, port, idc, ts in _ROUTING_ROW.findall(s):
        old = n.routing_rows.get(shard)
        if old is None or int(epoch) >= int(old["epoch"]):  # type: ignore[call-overload]
            n.routing_rows[shard] = {
                "epoch": int(epoch),
                "node": node,
                "host": host,
                "port": int(port),
                "idc": idc,
                "updated_at": float(ts),
            }


async def _set(n: FakeNode, name: str, value: str) -> None:
    on = value.upper() in ("ON", "1")
    if name == "read_only":
        if on and not n.read_only:
            # Queued behind a commit waiting for its ack. Polling (not an Event) lets a test end
            # the wait by setting a plain attribute.
            while n.wait_sessions:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
        n.read_only = on
    elif name == "rpl_semi_sync_master_enabled":
        if n.master_enabled and not on:
            n.no_times += 1
        n.master_enabled = on
    elif name == "rpl_semi_sync_master_wait_point":
        n.wait_point = value.upper()
    elif name == "rpl_semi_sync_master_timeout":
        n.master_timeout = int(value)
    elif name == "rpl_semi_sync_master_wait_no_slave":
        n.wait_no_slave = on
    elif name == "gtid_slave_pos":
        _must_be_stopped(n, f"SET GLOBAL gtid_slave_pos='{value}'")
        n.slave_pos = GtidPos.parse(value)
    elif name == "rpl_semi_sync_slave_enabled":
        n.slave_enabled = on  # counts only once the IO thread (re)connects
    else:
        raise UnknownStatement(f"{n.name}: the fake does not model SET GLOBAL {name}")


def io_thread_id(n: FakeNode) -> int:
    """The processlist id of a fake node's IO thread."""
    return 1_000_000 + n.server_id


def waiter_ids(n: FakeNode) -> list[int]:
    """The processlist ids of the sessions waiting for an ack, oldest first: one per commit among the
    binlog's last ``wait_sessions``, numbered by its sequence number."""
    tail = n.binlog[len(n.binlog) - n.wait_sessions :] if n.wait_sessions else []
    return [WAITER_IDS + g.seq for g in tail]


def _kill(n: FakeNode, thread: int, sql: str) -> None:
    """KILL of the node's own IO thread: it ends (in MariaDB, at its next read; the executor follows
    with STOP SLAVE IO_THREAD). KILL CONNECTION of a session waiting for its ack ends the wait with
    an error for the client; the commit stays in the binlog. A KILL of anything else is not
    modelled."""
    r = n.replica
    waiters = waiter_ids(n)
    if thread in waiters and sql.upper().startswith("KILL CONNECTION "):
        if thread != waiters[0]:
            raise UnknownStatement(f"{n.name}: the fake models KILL of waiters oldest first, not {sql!r}")
        n.wait_sessions -= 1
        n.killed_waiters += 1
        return
    if thread != io_thread_id(n):
        raise UnknownStatement(f"{n.name}: the fake models KILL of the IO thread only, not {sql!r}")
    if n.kill_error is not None:
        raise NodeError(f"{n.name}: {sql}: {n.kill_error} refused", node=n.name, code=n.kill_error)
    if r is None or r.io == "No":
        raise NodeError(f"{n.name}: {sql}: 1094 Unknown thread id: {thread}", node=n.name, code=1094)
    # MariaDB only marks the thread: it ends at its next read (an event, which it drops, or the
    # read timeout) or at the STOP that the executor sends next. Ending it here is what the
    # executor sees either way: nothing more is received, and the STOP finds it stopped.
    r.io, r.semi = "No", False


def _replica(n: FakeNode, sql: str) -> Replica:
    if n.replica is None:
        raise NodeError(f"{n.name}: {sql}: 1200 The server is not configured as slave", node=n.name, code=1200)
    return n.replica


def _must_be_stopped(n: FakeNode, sql: str) -> None:
    r = n.replica
    if r is not None and (r.io != "No" or r.sql != "No"):
        msg = "1198 This operation requires a running slave to be stopped first"
        raise NodeError(f"{n.name}: {sql}: {msg}", node=n.name, code=1198)


def _start(n: FakeNode, threads: tuple[str, ...], sql: str) -> None:
    r = _replica(n, sql)
    if r.use_gtid != "no":
        if r.io == "No" and r.sql == "No":
            n.traps.append(sql)
            delete_relay_log(n)
        elif threads == ("io",) and r.io == "No":
            delete_relay_log(n)
    if "io" in threads and r.io == "No":
        r.io = "Connecting"
    if "sql" in threads and r.sql == "No":
        r.sql, r.last_sql_errno, r.last_sql_error = "Yes", 0, ""


def _stop(n: FakeNode, threads: tuple[str, ...], sql: str) -> None:
    r = _replica(n, sql)
    if "io" in threads:
        r.io, r.semi = "No", False
    if "sql" in threads:
        r.sql = "No"


def _change_master(n: FakeNode, sql: str) -> None:
    _must_be_stopped(n, sql)
    opts = {k.upper(): v.strip("'") for k, v in _OPTION.findall(sql[len("CHANGE MASTER TO ") :])}
    if set(opts) - _KNOWN:
        raise UnknownStatement(f"{n.name}: the fake does not model CHANGE MASTER options {set(opts) - _KNOWN}")
    r = n.replica or Replica("", 0, io="No", sql="No", io_pos=n.slave_pos)
    n.replica = r
    r.host = opts.get("MASTER_HOST", r.host)
    r.port = int(opts.get("MASTER_PORT", r.port))
    if "RELAY_LOG_FILE" in opts or "RELAY_LOG_POS" in opts:
        pos = int(opts.get("RELAY_LOG_POS", -1))
        k = (pos - 4) // EVENT_BYTES
        if opts.get("RELAY_LOG_FILE") != r.relay_name or (pos - 4) % EVENT_BYTES or not 0 <= k <= len(r.log):
            raise UnknownStatement(f"{n.name}: the fake models only event-group starts in {r.relay_name}, not {opts}")
        r.at, r.info_at = k, None
        r.use_gtid = "no"  # a relay-log position turns GTID mode off and keeps the relay log
    else:
        delete_relay_log(n)
        r.use_gtid = opts.get("MASTER_USE_GTID", r.use_gtid).lower()


def _relaylog_events(n: FakeNode, name: str, start: int, offset: int, limit: int | None) -> list[dict[str, Any]]:
    r = n.replica
    if r is None or name != r.relay_name:
        raise NodeError(
            f"{n.name}: 1220 Error when executing command SHOW BINLOG EVENTS: Could not find target log",
            node=n.name,
            code=1220,
        )
    rows: list[dict[str, Any]] = [
        {"Log_name": name, "Pos": 4, "Event_type": "Format_desc", "Server_id": n.server_id, "Info": "Server ver"}
    ]
    for k, g in enumerate(r.log):
        at = 4 + EVENT_BYTES * k
        rows.append(
            {"Log_name": name, "Pos": at, "Event_type": "Gtid", "Server_id": g.server, "Info": f"BEGIN GTID {g}"}
        )
        rows.append({"Log_name": name, "Pos": at + 40, "Event_type": "Xid", "Server_id": g.server, "Info": "COMMIT"})
    if r.partial is not None:
        at = 4 + EVENT_BYTES * len(r.log)
        rows.append(
            {"Log_name": name, "Pos": at, "Event_type": "Gtid", "Server_id": 0, "Info": f"BEGIN GTID {r.partial}"}
        )
    rows = [row for row in rows if int(row["Pos"]) >= start][offset:]
    return rows if limit is None else rows[:limit]


def forbidden(s: Sent, io_thread: int) -> bool:
    """A statement that may acknowledge a commit waiting for its ack: KILL QUERY of anything;
    master semi-sync OFF on a writable node, or while a commit waits (on a read-only node with
    none waiting it releases nothing: a rejoin); a KILL of anything but the node's own IO thread
    (``io_thread``) or, by KILL CONNECTION, a session waiting for its ack (a fence escalation:
    the Fencer's tests check it only hits a node out of the layout)."""
    if (m := FORBIDDEN.search(s.sql)) is not None:
        return m[0].upper().lstrip().startswith("KILL") or s.waiting > 0 or not s.read_only
    k = KILL.fullmatch(" ".join(s.sql.split()))
    if k is None or int(k[1]) == io_thread:
        return False
    return not (s.sql.upper().startswith("KILL CONNECTION ") and int(k[1]) >= WAITER_IDS)
