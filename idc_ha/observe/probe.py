"""What one probe of a node reads, and how it is parsed into a ``NodeObservation``; the prober
that keeps a connection per node and calls it is ``observe.prober``.

One probe is one round trip: a multi-statement query reading the variables, the semi-sync and
connection counters and SHOW SLAVE STATUS (a second one reads the processlist only on a writable
semi-sync master that counts no semi-sync client: ``FINALIZING_SQL``). Every call runs under
``asyncio.timeout``: an open connection never times out by itself. A connection whose call
failed or timed out is in an unknown state and is discarded; the next probe dials afresh, after a
backoff that doubles from the probe interval up to ``backoff_max_s`` (a refused dial is cheap, so
it backs off less), but only once a node has failed for longer than ``fresh_window_s``: inside
that window, where a failure is still being confirmed, every round dials afresh.

Driver errors are translated here into ``ProbeFailure`` kinds; nothing from pymysql leaves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiomysql
import asyncmy
import asyncmy.errors
import pymysql

from idc_ha.clock import boottime
from idc_ha.model.gtid import GtidParseError, GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import (
    NodeObservation,
    ProbeFailure,
    ReplicaStatus,
    SemiSyncMaster,
    SemiSyncSlave,
)
from idc_ha.observe.addresses import AddressBook
from idc_ha.observe.boots import BootTracker

PROBE_SQL = (
    "SELECT @@read_only, @@server_id, @@version, @@gtid_binlog_pos, @@gtid_slave_pos, "
    "@@gtid_current_pos, @@gtid_strict_mode, @@rpl_semi_sync_master_enabled, "
    "@@rpl_semi_sync_master_wait_point, @@rpl_semi_sync_master_timeout, "
    "@@rpl_semi_sync_master_wait_no_slave, @@rpl_semi_sync_slave_enabled, @@slave_net_timeout;"
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('Rpl_semi_sync_master_status', "
    "'Rpl_semi_sync_master_clients', 'Rpl_semi_sync_master_yes_tx', 'Rpl_semi_sync_master_no_tx', "
    "'Rpl_semi_sync_master_wait_sessions', 'Rpl_semi_sync_master_no_times', 'Rpl_semi_sync_slave_status', "
    "'Slave_received_heartbeats', 'Slave_heartbeat_period', 'Threads_connected', 'Uptime');"
    "SHOW SLAVE STATUS"
)
# Read only when the node is a writable semi-sync master with no semi-sync client registered:
# a dump thread stuck finalizing its termination there is the MariaDB 10.11 ack-receiver
# deadlock (decide/wake.py). A killed dump thread shows COMMAND 'Killed'.
FINALIZING_SQL = (
    "SELECT COALESCE(MIN(ID), 0) FROM information_schema.PROCESSLIST "
    "WHERE STATE = 'Waiting to finalize termination' AND COMMAND IN ('Binlog Dump', 'Killed')"
)


def classify(exc: BaseException) -> tuple[ProbeFailure, str]:
    """Translate a driver or socket error into a failure kind and a one-line message."""
    if isinstance(exc, TimeoutError):
        return ProbeFailure.TIMEOUT, "timed out"
    if isinstance(exc, (pymysql.err.OperationalError, asyncmy.errors.OperationalError)) and exc.args:
        code = exc.args[0]
        text = str(exc.args[1]) if len(exc.args) > 1 else ""
        cause = exc.__cause__ or exc.__context__
        if code == 2003 and (isinstance(cause, ConnectionRefusedError) or "refused" in text.lower()):
            return ProbeFailure.REFUSED, "connection refused"
        if code == 2003 and (isinstance(cause, TimeoutError) or "timed out" in text.lower()):
            return ProbeFailure.TIMEOUT, "connect timed out"
        if code in (1045, 1044, 1227):
            return ProbeFailure.AUTH, f"{code} {text}"
        return ProbeFailure.OTHER, f"{code} {text}"[:300]
    if isinstance(exc, ConnectionRefusedError):
        return ProbeFailure.REFUSED, "connection refused"
    return ProbeFailure.OTHER, f"{type(exc).__name__}: {exc}"[:300]


def _gtid(v: Any) -> GtidPos:
    try:
        return GtidPos.parse(v.decode() if isinstance(v, bytes) else (v or ""))
    except GtidParseError:
        return GtidPos()


def _on(v: Any) -> bool:
    return str(v).upper() in ("1", "ON", "YES")


def parse_observation(
    node: NodeName,
    variables: tuple[Any, ...],
    status: dict[str, str],
    slave: dict[str, Any] | None,
    *,
    latency_ms: float,
    book: AddressBook | None = None,
    booted_at: float = 0.0,
    finalizing_dump: int = 0,
) -> NodeObservation:
    """Build a NodeObservation from the three result sets of PROBE_SQL (and FINALIZING_SQL's
    answer, when it was asked); ``book`` names the replica's source node by resolved address
    (without it the source stays unknown); ``booted_at`` is the server's start on the caller's
    monotonic clock."""
    (ro, sid, version, binlog, slave_pos, current, strict, m_on, wait_point, timeout, no_slave, s_on, *rest) = variables
    master = SemiSyncMaster(
        enabled=_on(m_on),
        status=_on(status.get("Rpl_semi_sync_master_status", "OFF")),
        wait_point=str(wait_point),
        timeout_ms=int(timeout),
        wait_no_slave=_on(no_slave),
        clients=int(status.get("Rpl_semi_sync_master_clients", 0)),
        yes_tx=int(status.get("Rpl_semi_sync_master_yes_tx", 0)),
        no_tx=int(status.get("Rpl_semi_sync_master_no_tx", 0)),
        wait_sessions=int(status.get("Rpl_semi_sync_master_wait_sessions", 0)),
        no_times=int(status.get("Rpl_semi_sync_master_no_times", 0)),
    )
    replica = None
    if slave:
        sbm = slave.get("Seconds_Behind_Master")
        host, port = str(slave.get("Master_Host") or ""), int(slave.get("Master_Port") or 0)
        replica = ReplicaStatus(
            source_host=host,
            source_port=port,
            source=book.node_at(host, port) if book is not None else None,
            io_running=str(slave.get("Slave_IO_Running") or "No"),
            sql_running=str(slave.get("Slave_SQL_Running") or "No"),
            gtid_io_pos=_gtid(slave.get("Gtid_IO_Pos")),
            using_gtid=str(slave.get("Using_Gtid") or ""),
            last_io_errno=int(slave.get("Last_IO_Errno") or 0),
            last_io_error=str(slave.get("Last_IO_Error") or "")[:300],
            last_sql_errno=int(slave.get("Last_SQL_Errno") or 0),
            last_sql_error=str(slave.get("Last_SQL_Error") or "")[:300],
            seconds_behind=None if sbm is None else int(sbm),
            read_at=f"{slave.get('Master_Log_File') or ''}:{slave.get('Read_Master_Log_Pos') or 0}",
            # Global status in 10.11 (SHOW SLAVE STATUS lacks them): the default connection's.
            heartbeats=int(status.get("Slave_received_heartbeats") or 0),
            heartbeat_period_s=float(status.get("Slave_heartbeat_period") or 0.0),
            sql_state=str(slave.get("Slave_SQL_Running_State") or ""),
            io_state=str(slave.get("Slave_IO_State") or "")[:80],
            relay_log_file=str(slave.get("Relay_Log_File") or ""),
            relay_log_pos=int(slave.get("Relay_Log_Pos") or 0),
        )
    return NodeObservation(
        node=node,
        reachable=True,
        latency_ms=latency_ms,
        read_only=_on(ro),
        server_id=int(sid),
        version=str(version),
        gtid_binlog_pos=_gtid(binlog),
        gtid_slave_pos=_gtid(slave_pos),
        gtid_current_pos=_gtid(current),
        gtid_strict_mode=_on(strict),
        replica=replica,
        semisync_master=master,
        semisync_slave=SemiSyncSlave(enabled=_on(s_on), status=_on(status.get("Rpl_semi_sync_slave_status", "OFF"))),
        threads_connected=int(status.get("Threads_connected", 0)),
        slave_net_timeout_s=int(rest[0]) if rest else 0,
        booted_at=booted_at,
        finalizing_dump=finalizing_dump,
    )


# The variables, the status counters, the SHOW SLAVE STATUS row, the round trip in ms, and
# FINALIZING_SQL's answer (0 when not asked).
Raw = tuple[tuple[Any, ...], dict[str, str], dict[str, Any] | None, float, int]


def _asks_finalizing(variables: tuple[Any, ...], status: dict[str, str]) -> bool:
    """A writable semi-sync master with no semi-sync client registered."""
    return not _on(variables[0]) and _on(variables[7]) and int(status.get("Rpl_semi_sync_master_clients", 0)) == 0


async def read_raw(conn: Any) -> Raw:
    """Run PROBE_SQL on an open connection (the caller holds the timeout): the variables, the
    status counters, the SHOW SLAVE STATUS row and the round trip in ms."""
    t0 = time.perf_counter()
    async with conn.cursor() as cur:
        await cur.execute(PROBE_SQL)
        variables = await cur.fetchone()
        await cur.nextset()
        status = {str(k): str(v) for k, v in await cur.fetchall()}
        await cur.nextset()
        row = await cur.fetchone()
        slave = dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None
        finalizing = 0
        if _asks_finalizing(tuple(variables), status):
            await cur.execute(FINALIZING_SQL)
            finalizing = int((await cur.fetchone())[0] or 0)
    ms = (time.perf_counter() - t0) * 1000
    return tuple(variables), status, slave, ms, finalizing


async def learn_source(raw: Raw, book: AddressBook | None) -> None:
    """Resolve the replica's source host name if it is not known yet (cached, under its own
    timeout), so the observation can name the source node."""
    slave = raw[2]
    if book is not None and slave and not book.known(str(slave.get("Master_Host") or "")):
        await book.learn(str(slave.get("Master_Host") or ""))


async def read_observation(
    conn: aiomysql.Connection,
    node: NodeName,
    book: AddressBook | None = None,
    clock: Callable[[], float] = boottime,
    boots: BootTracker | None = None,
) -> NodeObservation:
    """One full observation over an open connection (the caller holds the timeout). With
    ``boots``, the boot time is the one the prober holds for this boot (``BootTracker.peek``)."""
    now = clock()
    raw = await read_raw(conn)
    after = clock()
    await learn_source(raw, book)
    variables, status, slave, ms, finalizing = raw
    uptime = int(status.get("Uptime", 0))
    booted = boots.peek(node, uptime, now, after) if boots is not None else now - uptime
    return parse_observation(
        node, variables, status, slave, latency_ms=ms, book=book, booted_at=booted, finalizing_dump=finalizing
    )


def unchanged_key(raw: Raw, book: AddressBook | None) -> tuple[Any, ...]:
    """What must be equal for a probe to repeat the last observation: everything but Uptime and
    the round trip's duration, plus the node the source address resolves to now (a name learnt
    or re-resolved since changes the observation with no change on the server)."""
    variables, status, slave, _, finalizing = raw
    source = None
    if slave and book is not None:
        source = book.node_at(str(slave.get("Master_Host") or ""), int(slave.get("Master_Port") or 0))
    return (
        variables,
        tuple(sorted((k, v) for k, v in status.items() if k != "Uptime")),
        tuple(slave.items()) if slave else None,
        source,
        finalizing,
    )
