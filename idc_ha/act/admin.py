"""The MySQL Admin (``idc_ha.ports.Admin``): statements the executor runs on a node, each under a timeout.

Connections are kept per node between calls and discarded on any error or timeout (a cancelled
aiomysql call leaves the connection in an unknown state). A per-node lock keeps two tasks from
interleaving statements on one connection. Driver errors become ``NodeUnreachable`` (could not
connect) or ``NodeError`` (connected, the statement failed); both are temporary.

``fresh=True`` dials a new connection for the call and closes it after: the fence-on-return path
uses it so a half-open socket to a node that vanished can never swallow the fence.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import aiomysql
import pymysql
from pymysql.constants import CLIENT, COMMAND

from idc_ha.clock import boottime
from idc_ha.errors import NodeError, NodeUnreachable
from idc_ha.model.config import Config
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, ProbeFailure
from idc_ha.observe.addresses import AddressBook
from idc_ha.observe.boots import BootTracker
from idc_ha.observe.probe import classify, read_observation


def change_master_sql(host: str, port: int, *, user: str, password: str) -> str:
    """CHANGE MASTER for a GTID replica as idc-ha wires them (retry every 1 s; a heartbeat every
    0.1 s while the source has nothing else to send, so a silent source shows within 0.3 s:
    ``decide/tracks.py``)."""
    q = pymysql.converters.escape_string
    return (
        f"CHANGE MASTER TO MASTER_HOST='{q(host)}', MASTER_PORT={int(port)}, MASTER_USER='{q(user)}', "
        f"MASTER_PASSWORD='{q(password)}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, "
        "MASTER_HEARTBEAT_PERIOD=0.1"
    )


class MysqlAdmin:
    def __init__(
        self,
        config: Config,
        *,
        timeout: float,
        connect_timeout: float,
        book: AddressBook | None = None,
        clock: Callable[[], float] = boottime,
        boots: BootTracker | None = None,
    ) -> None:
        self._t = config.topology
        self._clock = clock  # the daemon's decision clock: observations' boot times are on it
        self._boots = boots  # the prober's: a baseline taken here names the boot the next probe does
        self.book = book or AddressBook(config.topology)
        c = config.credentials
        self._user = c.user
        self._password = c.password.get_secret_value() if c.password else ""
        self.repl_user = c.replication_user
        self.repl_password = c.replication_password.get_secret_value() if c.replication_password else ""
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._conns: dict[NodeName, aiomysql.Connection] = {}
        self._locks: dict[NodeName, asyncio.Lock] = {}

    def address(self, node: NodeName) -> tuple[str, int]:
        return self._t.address_of(node)

    async def _dial(self, node: NodeName, connect_timeout: float) -> aiomysql.Connection:
        host, port = self.address(node)
        try:
            async with asyncio.timeout(connect_timeout + 0.5):
                return await aiomysql.connect(
                    host=host,
                    port=port,
                    user=self._user,
                    password=self._password,
                    connect_timeout=connect_timeout,
                    autocommit=True,
                    client_flag=CLIENT.MULTI_STATEMENTS,
                )
        except (Exception, TimeoutError) as e:
            kind, msg = classify(e)
            raise NodeUnreachable(f"cannot connect to {node} ({host}:{port}): {msg}", node=node, cause=kind) from e

    def _drop(self, node: NodeName) -> None:
        conn = self._conns.pop(node, None)
        if conn is not None:
            conn.close()

    async def run(
        self,
        node: NodeName,
        *statements: str,
        fetch: bool = False,
        fresh: bool = False,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Run statements in order on one connection; with fetch, return each one's rows as dicts.

        Raises NodeUnreachable when no connection can be made, NodeError when a statement fails
        or the call times out (the connection is then discarded)."""
        if fresh:
            # A private connection: no lock, so a long fence cannot hold up other calls.
            conn = await self._dial(node, connect_timeout or self.connect_timeout)
            try:
                return await self._statements(node, conn, statements, fetch=fetch, timeout=timeout, fresh=True)
            finally:
                conn.close()
        async with self._locks.setdefault(node, asyncio.Lock()):
            conn = self._conns.get(node)
            if conn is None:
                conn = self._conns[node] = await self._dial(node, connect_timeout or self.connect_timeout)
            return await self._statements(node, conn, statements, fetch=fetch, timeout=timeout, fresh=False)

    async def _statements(
        self,
        node: NodeName,
        conn: aiomysql.Connection,
        statements: tuple[str, ...],
        *,
        fetch: bool,
        timeout: float | None,
        fresh: bool,
    ) -> list[list[dict[str, Any]]]:
        out: list[list[dict[str, Any]]] = []
        try:
            async with asyncio.timeout(timeout or self.timeout):
                async with conn.cursor(aiomysql.DictCursor) as cur:
                    for sql in statements:
                        await cur.execute(sql)
                        if fetch:
                            out.append(list(await cur.fetchall()))
                        else:
                            out.append([])
        except asyncio.CancelledError:
            if not fresh:
                self._drop(node)  # mid-call: the connection's state is unknown
            raise
        except (Exception, TimeoutError) as e:
            if not fresh:
                self._drop(node)
            kind, msg = classify(e)
            if isinstance(e, pymysql.err.OperationalError) and kind == ProbeFailure.REFUSED:
                raise NodeUnreachable(f"{node}: {msg}", node=node, cause=kind) from e
            failed = statements[len(out)] if len(out) < len(statements) else ""
            raise NodeError(f"{node}: {failed}: {msg}", node=node, code=_mysql_code(e)) from e
        return out

    async def observe(self, node: NodeName) -> NodeObservation:
        """A full observation of one node over the admin connection (raises like ``run``)."""
        lock = self._locks.setdefault(node, asyncio.Lock())
        async with lock:
            conn = self._conns.get(node)
            if conn is None:
                conn = self._conns[node] = await self._dial(node, self.connect_timeout)
            try:
                async with asyncio.timeout(self.timeout):
                    return await read_observation(conn, node, self.book, self._clock, self._boots)
            except asyncio.CancelledError:
                self._drop(node)  # mid-call: the connection's state is unknown
                raise
            except (Exception, TimeoutError) as e:
                self._drop(node)
                _, msg = classify(e)
                raise NodeError(f"{node}: observe: {msg}", node=node) from e

    async def attach_silent_replica(self, node: NodeName, *, server_id: int, gtid: GtidPos) -> Callable[[], None]:
        """A replication connection (the replication user) announcing itself as a semi-sync
        replica under ``server_id`` and dumping in GTID mode (strict) from ``gtid``. MariaDB
        starts such a dump at position 4 of the binlog file holding ``gtid`` and counts that as
        acknowledged by it; a position its binlogs do not hold is refused before the client
        registers (``act/wake.py`` chooses what the acker holds). Nothing on this path takes the
        binlog's LOCK_log, which a second commit queued behind a semi-sync wait holds (AFTER_SYNC):
        SHOW BINARY LOGS or SHOW MASTER STATUS would wait as long as the deadlock does.
        The returned callable closes the socket without COM_QUIT: nothing is written after the
        dump request, so nothing can be read as an ack. The server sends a heartbeat every 0.1 s
        once it has nothing else to send, and gives up a write after 2 s (``net_write_timeout``),
        so it drops the client soon after the socket closes, or once the controller vanished and
        the socket's buffers filled. aiomysql has no binlog client: the dump request goes through
        its command writer (``_execute_command``), as python-mysql-replication does with PyMySQL's."""
        host, port = self.address(node)
        try:
            async with asyncio.timeout(self.connect_timeout + 0.5):
                conn = await aiomysql.connect(
                    host=host,
                    port=port,
                    user=self.repl_user,
                    password=self.repl_password,
                    connect_timeout=self.connect_timeout,
                    autocommit=True,
                )
        except (Exception, TimeoutError) as e:
            kind, msg = classify(e)
            raise NodeUnreachable(f"cannot connect to {node} ({host}:{port}): {msg}", node=node, cause=kind) from e
        try:
            async with asyncio.timeout(self.timeout):
                async with conn.cursor() as cur:
                    await cur.execute(
                        "SET @master_binlog_checksum=@@global.binlog_checksum, @mariadb_slave_capability=4, "
                        "@rpl_semi_sync_slave=1, @master_heartbeat_period=100000000, @slave_connect_state=%s, "
                        "@slave_gtid_strict_mode=1, @slave_gtid_ignore_duplicates=0, SESSION net_write_timeout=2",
                        (str(gtid),),
                    )
                dump = struct.pack("<IHI", 4, 0, server_id)  # no file name: the GTID state says where
                await conn._execute_command(COMMAND.COM_BINLOG_DUMP, dump)
                await conn._read_packet()  # the first event (a rotate): the dump thread is running
        except BaseException as e:  # a cancelled step too: never leave the client attached
            conn.close()
            if not isinstance(e, Exception):
                raise
            _, msg = classify(e)
            raise NodeError(f"{node}: silent semi-sync replica: {msg}", node=node, code=_mysql_code(e)) from e

        def detach() -> None:
            conn.close()

        return detach

    async def close(self) -> None:
        for n in list(self._conns):
            self._drop(n)


def _mysql_code(e: BaseException) -> int | None:
    """The server's error number of a driver error, if it carries one."""
    code = e.args[0] if isinstance(e, pymysql.err.MySQLError) and e.args else None
    return code if isinstance(code, int) else None
