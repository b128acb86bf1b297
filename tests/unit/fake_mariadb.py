"""An in-memory MariaDB 10.11 cluster behind the Admin port, for executor and fencer unit tests.

``FakeCluster`` holds one ``FakeNode`` per node of a topology and answers the calls the executor
and the Fencer make on ``idc_ha.act.admin.Admin`` (``run``, ``observe``, ``address``, ``close``, the
``repl_user``/``repl_password``/``timeout``/``connect_timeout`` attributes). It models only the
behaviour those callers depend on, with the rules measured on 10.11 (docs: lab-facts.md):

* replication runs in ``tick()``, which ``observe()`` calls first (tests can also call it): a
  running IO thread connects to a live source (negotiating its semi-sync role from
  ``rpl_semi_sync_slave_enabled`` *at that moment*) and copies the source's binlog tail into the
  relay log; a dead source leaves it ``Connecting``. A running SQL thread then applies up to
  ``apply_per_tick`` relay-log transactions into its binlog (log_slave_updates) and gtid_slave_pos;
* in GTID mode any START SLAVE issued while *both* threads are stopped, and any START SLAVE
  IO_THREAD, deletes the relay log first: unapplied transactions are gone and Gtid_IO_Pos falls
  back to gtid_slave_pos (``discarded`` keeps them, ``traps`` names the START). CHANGE MASTER
  without a relay-log position deletes it too; with ``RELAY_LOG_FILE``/``RELAY_LOG_POS`` it keeps
  it and turns GTID mode off, as MariaDB's change_master() does. CHANGE MASTER and RESET SLAVE ALL
  fail with error 1198 while a replication thread runs;
* ``Rpl_semi_sync_master_clients`` counts the connected replicas that negotiated semi-sync, so
  enabling master semi-sync counts an already connected semi-sync replica at once;
* ``SET GLOBAL read_only=ON`` on a writable node waits while a session waits for a semi-sync ack
  (``wait_sessions``), as "Waiting for backup lock" does;
* a ``dead`` node refuses connections: every call raises ``NodeUnreachable``.

A statement the fake does not know raises ``UnknownStatement`` (an AssertionError the executor
never catches), so a test fails loudly instead of passing on a statement nobody modelled.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from idc_ha.act.fence import Fencer
from idc_ha.errors import NodeError, NodeUnreachable
from idc_ha.model.gtid import Gtid, GtidPos
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName, NodeRole
from idc_ha.model.observation import NodeObservation, ReplicaStatus, SemiSyncMaster, SemiSyncSlave
from idc_ha.model.topology import Topology

from .builders import UPTIME

EVENT_BYTES = 100  # how far Relay_Log_Pos moves per applied transaction
FORBIDDEN = re.compile(r"^\s*KILL\b|rpl_semi_sync_master_enabled\s*=\s*'?(OFF|0|FALSE)\b", re.IGNORECASE)


class UnknownStatement(AssertionError):
    """The executor sent something the fake does not model: extend the fake, or fix the caller."""


@dataclass(frozen=True)
class Sent:
    """One statement that reached a live server; ``conn`` numbers the fresh connection it came on
    (0: the admin connection kept per node)."""

    node: NodeName
    sql: str
    fresh: bool
    conn: int


@dataclass
class Replica:
    """One replica's replication. The relay log is one file holding ``log``, every event group
    received since it was last deleted; group k starts at ``4 + EVENT_BYTES * k``. The SQL thread
    stands at ``log[at]``; after a crash relay-log.info may say it stands at ``info_at`` instead."""

    host: str
    port: int
    io: str = "Yes"  # Yes, Connecting, No
    sql: str = "Yes"  # Yes, No
    use_gtid: str = "slave_pos"  # slave_pos, current_pos, no
    log: list[Gtid] = field(default_factory=list)
    at: int = 0
    io_pos: GtidPos = field(default_factory=GtidPos)
    semi: bool = False  # the semi-sync role negotiated when the IO thread last connected
    relay_file: int = 1
    info_at: int | None = None
    partial: Gtid | None = None  # a group whose start reached the relay log but not its end (cut off)
    last_io_errno: int = 0
    last_sql_errno: int = 0
    last_sql_error: str = ""

    @property
    def relay(self) -> list[Gtid]:
        """Received, not yet applied."""
        return self.log[self.at :]

    @property
    def relay_pos(self) -> int:
        return 4 + EVENT_BYTES * (self.at if self.info_at is None else self.info_at)

    @property
    def relay_name(self) -> str:
        return f"relay-bin.{self.relay_file:06d}"


@dataclass
class FakeNode:
    name: NodeName
    server_id: int
    dead: bool = False
    read_only: bool = True
    binlog: list[Gtid] = field(default_factory=list)
    slave_pos: GtidPos = field(default_factory=GtidPos)
    replica: Replica | None = None
    master_enabled: bool = False
    wait_point: str = "AFTER_COMMIT"
    master_timeout: int = 10_000
    wait_no_slave: bool = True
    slave_enabled: bool = False
    wait_sessions: int = 0  # commits waiting for a semi-sync ack that never comes
    stalled: bool = False  # the IO thread stays connected but nothing arrives
    apply_per_tick: int | None = None  # None: the SQL thread applies the whole relay log per tick
    uptime: int = UPTIME
    discarded: list[Gtid] = field(default_factory=list)  # unapplied transactions a relay-log deletion lost
    traps: list[str] = field(default_factory=list)  # STARTs issued with both threads stopped in GTID mode

    @property
    def binlog_pos(self) -> GtidPos:
        return _pos(self.binlog)

    @property
    def current_pos(self) -> GtidPos:
        return self.binlog_pos.merge(self.slave_pos)


def _pos(gtids: list[Gtid]) -> GtidPos:
    last = {g.domain: g for g in gtids}
    return GtidPos.of(*last.values())


class FakeCluster:
    """The servers of a topology, and an Admin port onto them."""

    def __init__(self, topology: Topology, *, timeout: float = 2.0, connect_timeout: float = 0.3) -> None:
        self.t = topology
        self.nodes = {n.name: FakeNode(n.name, server_id=n.port) for n in topology.nodes}
        self._by_addr = {topology.address_of(n.name): n.name for n in topology.nodes}
        self.repl_user, self.repl_password = "repl", "s3cr'et"
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.sent: list[Sent] = []
        self.refused: list[NodeName] = []  # calls to dead nodes, in order
        self.on_effect: Callable[[str], None] | None = None  # called after every statement that changed something
        self._conns = 0

    # -- arranging the servers ----------------------------------------------------------------------

    def arrange_home(self, *, seq: int = 100) -> FakeCluster:
        """Every shard in its home layout: the primary wrote ``seq`` transactions, all replicated and
        applied; the acker acks (semi-sync on both ends), everything else replicates async."""
        for n in self.t.nodes:
            node = self.nodes[n.name]
            primary = next(p for p in self.t.nodes_by_shard[n.shard] if p.role == NodeRole.PRIMARY)
            node.binlog = [Gtid(0, primary.port, k) for k in range(1, seq + 1)]
            if n.role == NodeRole.PRIMARY:
                node.read_only = False
                node.master_enabled, node.wait_point, node.master_timeout = True, "AFTER_SYNC", SEMISYNC_TIMEOUT_NEVER
                continue
            assert n.upstream is not None
            node.slave_pos = node.binlog_pos
            node.slave_enabled = n.role == NodeRole.ACKER
            host, port = self.t.address_of(n.upstream)
            node.replica = Replica(host, port, io_pos=node.binlog_pos, semi=node.slave_enabled)
        return self

    def write(self, node: NodeName, count: int) -> None:
        """The node commits ``count`` transactions (its replicas get them on the next tick)."""
        n = self.nodes[node]
        last = n.binlog[-1].seq if n.binlog else 0
        n.binlog += [Gtid(0, n.server_id, last + k) for k in range(1, count + 1)]

    def restart(self, node: NodeName, *, skip_slave_start: bool = False, stale_info: bool = False) -> None:
        """The server restarts: read_only=ON from its config file. Without ``skip_slave_start`` the
        replication threads start again and, in GTID mode, the relay log is gone (the IO thread
        fetches from gtid_slave_pos). With it both threads stay stopped, the relay log is kept and
        Gtid_IO_Pos is empty (measured on 10.11.19); ``stale_info`` leaves relay-log.info at the
        start of the relay log, as a crash can."""
        n = self.nodes[node]
        n.read_only, n.uptime, n.wait_sessions = True, 0, 0
        r = n.replica
        if r is None:
            return
        if skip_slave_start:
            r.io, r.sql, r.semi, r.io_pos = "No", "No", False, GtidPos()
            r.info_at = 0 if stale_info else None
            return
        if r.use_gtid != "no":
            self._delete_relay_log(n)
        r.io, r.sql, r.semi = "Connecting", "Yes", False

    def tick(self, *, apply: bool = True) -> None:
        """One round of replication: IO threads connect and fetch, then SQL threads apply."""
        for n in self.nodes.values():
            r = n.replica
            if n.dead or r is None or r.io == "No":
                continue
            src = self.nodes.get(self._by_addr.get((r.host, r.port), NodeName("")))
            if src is None or src.dead:
                r.io, r.semi, r.last_io_errno = "Connecting", False, 2003
                continue
            if r.io != "Yes":
                r.io, r.semi, r.last_io_errno = "Yes", n.slave_enabled, 0
            if not n.stalled:
                have = {g.domain: g.seq for g in r.io_pos.by_domain}
                new = [g for g in src.binlog if g.seq > have.get(g.domain, 0)]
                r.log += new
                r.io_pos = r.io_pos.merge(_pos(new))
        for n in self.nodes.values():
            r = n.replica
            if apply and not n.dead and r is not None and r.sql == "Yes":
                todo = r.relay[: n.apply_per_tick] if n.apply_per_tick is not None else r.relay
                for g in todo:
                    if n.slave_pos.contains(GtidPos.of(g)):
                        # gtid_strict_mode: re-applying a transaction already applied stops the SQL thread.
                        r.sql, r.last_sql_errno = "No", 1950
                        r.last_sql_error = f"An attempt was made to binlog GTID {g} which would create an out-of-order"
                        break
                    n.binlog.append(g)
                    n.slave_pos = n.slave_pos.merge(GtidPos.of(g))
                    r.at += 1

    def forbidden(self) -> list[Sent]:
        """Every KILL and every switch of master semi-sync OFF that was ever sent (must stay empty)."""
        return [s for s in self.sent if FORBIDDEN.search(s.sql)]

    def statements(self, node: NodeName) -> list[str]:
        return [s.sql for s in self.sent if s.node == node]

    # -- the Admin port -----------------------------------------------------------------------------

    def address(self, node: NodeName) -> tuple[str, int]:
        return self.t.address_of(node)

    async def run(
        self,
        node: NodeName,
        *statements: str,
        fetch: bool = False,
        fresh: bool = False,
        timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> list[list[dict[str, Any]]]:
        n = self._dial(node)
        self._conns += fresh
        conn, out, sql = self._conns if fresh else 0, [], ""
        try:
            async with asyncio.timeout(timeout or self.timeout):
                for sql in statements:
                    self.sent.append(Sent(node, sql, fresh=fresh, conn=conn))
                    rows = await self._execute(n, sql)
                    out.append(rows if fetch else [])
                    if self.on_effect is not None and not sql.upper().startswith("SHOW"):
                        self.on_effect(f"{node}: {sql}")
        except TimeoutError as e:
            raise NodeError(f"{node}: {sql}: timed out", node=node) from e
        return out

    async def observe(self, node: NodeName) -> NodeObservation:
        self._dial(node)
        self.tick()
        await asyncio.sleep(0)
        return self.observation(node)

    async def close(self) -> None:
        pass

    def _dial(self, node: NodeName) -> FakeNode:
        n = self.nodes[node]
        if n.dead:
            self.refused.append(node)
            raise NodeUnreachable(f"cannot connect to {node}: connection refused", node=node, cause="refused")
        return n

    # -- statements ---------------------------------------------------------------------------------

    async def _execute(self, n: FakeNode, sql: str) -> list[dict[str, Any]]:
        await asyncio.sleep(0)
        s = " ".join(sql.split())
        if m := re.fullmatch(r"SET GLOBAL (\w+)\s*=\s*(.+)", s, re.IGNORECASE):
            await self._set(n, m[1].lower(), m[2].strip("'\""))
        elif m := re.fullmatch(r"(START|STOP) SLAVE( IO_THREAD| SQL_THREAD)?", s, re.IGNORECASE):
            threads = {"": ("io", "sql"), " IO_THREAD": ("io",), " SQL_THREAD": ("sql",)}[(m[2] or "").upper()]
            (self._start if m[1].upper() == "START" else self._stop)(n, threads, s)
        elif s.upper() == "RESET SLAVE ALL":
            if n.replica is not None:
                self._must_be_stopped(n, s)
                self._delete_relay_log(n)
            n.replica = None
        elif s.upper().startswith("CHANGE MASTER TO "):
            self._change_master(n, s)
        elif m := re.fullmatch(
            r"SHOW RELAYLOG EVENTS IN '([^']+)'(?: FROM (\d+))?(?: LIMIT (?:(\d+),\s*)?(\d+))?", s, re.IGNORECASE
        ):
            return self._relaylog_events(n, m[1], int(m[2] or 4), int(m[3] or 0), int(m[4]) if m[4] else None)
        elif m := re.fullmatch(r"SHOW GLOBAL STATUS LIKE '(\w+)'", s, re.IGNORECASE):
            status = {"Rpl_semi_sync_master_wait_sessions": n.wait_sessions, "Uptime": n.uptime}
            return [{"Variable_name": m[1], "Value": str(status[m[1]])}] if m[1] in status else []
        else:
            raise UnknownStatement(f"{n.name}: the fake does not model {sql!r}")
        return []

    def _relaylog_events(
        self, n: FakeNode, name: str, start: int, offset: int, limit: int | None
    ) -> list[dict[str, Any]]:
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
            rows.append(
                {"Log_name": name, "Pos": at + 40, "Event_type": "Xid", "Server_id": g.server, "Info": "COMMIT"}
            )
        if r.partial is not None:
            at = 4 + EVENT_BYTES * len(r.log)
            rows.append(
                {"Log_name": name, "Pos": at, "Event_type": "Gtid", "Server_id": 0, "Info": f"BEGIN GTID {r.partial}"}
            )
        rows = [row for row in rows if int(row["Pos"]) >= start][offset:]
        return rows if limit is None else rows[:limit]

    async def _set(self, n: FakeNode, name: str, value: str) -> None:
        on = value.upper() in ("ON", "1")
        if name == "read_only":
            if on and not n.read_only:
                # Queued behind a commit waiting for its ack. Polling (not an Event) lets a test
                # end the wait by setting a plain attribute.
                while n.wait_sessions:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            n.read_only = on
        elif name == "rpl_semi_sync_master_enabled":
            n.master_enabled = on
        elif name == "rpl_semi_sync_master_wait_point":
            n.wait_point = value.upper()
        elif name == "rpl_semi_sync_master_timeout":
            n.master_timeout = int(value)
        elif name == "rpl_semi_sync_master_wait_no_slave":
            n.wait_no_slave = on
        elif name == "rpl_semi_sync_slave_enabled":
            n.slave_enabled = on  # counts only once the IO thread (re)connects
        else:
            raise UnknownStatement(f"{n.name}: the fake does not model SET GLOBAL {name}")

    def _replica(self, n: FakeNode, sql: str) -> Replica:
        if n.replica is None:
            raise NodeError(f"{n.name}: {sql}: 1200 The server is not configured as slave", node=n.name, code=1200)
        return n.replica

    def _must_be_stopped(self, n: FakeNode, sql: str) -> None:
        r = n.replica
        if r is not None and (r.io != "No" or r.sql != "No"):
            msg = "1198 This operation requires a running slave to be stopped first"
            raise NodeError(f"{n.name}: {sql}: {msg}", node=n.name, code=1198)

    def _start(self, n: FakeNode, threads: tuple[str, ...], sql: str) -> None:
        r = self._replica(n, sql)
        if r.use_gtid != "no":
            if r.io == "No" and r.sql == "No":
                n.traps.append(sql)
                self._delete_relay_log(n)
            elif threads == ("io",) and r.io == "No":
                self._delete_relay_log(n)
        if "io" in threads and r.io == "No":
            r.io = "Connecting"
        if "sql" in threads and r.sql == "No":
            r.sql, r.last_sql_errno, r.last_sql_error = "Yes", 0, ""

    def _stop(self, n: FakeNode, threads: tuple[str, ...], sql: str) -> None:
        r = self._replica(n, sql)
        if "io" in threads:
            r.io, r.semi = "No", False
        if "sql" in threads:
            r.sql = "No"

    def _change_master(self, n: FakeNode, sql: str) -> None:
        self._must_be_stopped(n, sql)
        opts = dict(
            (k.upper(), v.strip("'"))
            for k, v in re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|[^,\s]+)", sql[len("CHANGE MASTER TO ") :])
        )
        known = {f"MASTER_{k}" for k in ("HOST", "PORT", "USER", "PASSWORD", "USE_GTID", "CONNECT_RETRY")}
        known |= {"MASTER_HEARTBEAT_PERIOD", "RELAY_LOG_FILE", "RELAY_LOG_POS"}
        if set(opts) - known:
            raise UnknownStatement(f"{n.name}: the fake does not model CHANGE MASTER options {set(opts) - known}")
        r = n.replica or Replica("", 0, io="No", sql="No", io_pos=n.slave_pos)
        n.replica = r
        r.host = opts.get("MASTER_HOST", r.host)
        r.port = int(opts.get("MASTER_PORT", r.port))
        if "RELAY_LOG_FILE" in opts or "RELAY_LOG_POS" in opts:
            pos = int(opts.get("RELAY_LOG_POS", -1))
            if (
                opts.get("RELAY_LOG_FILE") != r.relay_name
                or (pos - 4) % EVENT_BYTES
                or not 0 <= (pos - 4) // EVENT_BYTES <= len(r.log)
            ):
                raise UnknownStatement(
                    f"{n.name}: the fake models only event-group starts in {r.relay_name}, not {opts}"
                )
            r.at, r.info_at = (pos - 4) // EVENT_BYTES, None
            r.use_gtid = "no"  # a relay-log position turns GTID mode off and keeps the relay log
        else:
            self._delete_relay_log(n)
            r.use_gtid = opts.get("MASTER_USE_GTID", r.use_gtid).lower()

    def _delete_relay_log(self, n: FakeNode) -> None:
        r = n.replica
        assert r is not None
        n.discarded += r.relay
        r.log, r.at, r.info_at, r.io_pos = [], 0, None, n.slave_pos
        r.relay_file += 1

    # -- observations -------------------------------------------------------------------------------

    def observation(self, node: NodeName) -> NodeObservation:
        """What ``observe`` returns for a live node, without letting replication run first."""
        n = self.nodes[node]
        r = n.replica
        clients = sum(
            1
            for o in self.nodes.values()
            if not o.dead
            and o.replica is not None
            and self._by_addr.get((o.replica.host, o.replica.port)) == n.name
            and o.replica.io == "Yes"
            and o.replica.semi
        )
        replica = None
        if r is not None:
            replica = ReplicaStatus(
                source_host=r.host,
                source_port=r.port,
                source=self._by_addr.get((r.host, r.port)),
                io_running=r.io,
                sql_running=r.sql,
                gtid_io_pos=r.io_pos,
                using_gtid={"slave_pos": "Slave_Pos", "current_pos": "Current_Pos", "no": "No"}[r.use_gtid],
                last_io_errno=r.last_io_errno,
                last_sql_errno=r.last_sql_errno,
                last_sql_error=r.last_sql_error,
                relay_log_file=r.relay_name,
                relay_log_pos=r.relay_pos,
            )
        return NodeObservation(
            node=n.name,
            reachable=True,
            read_only=n.read_only,
            server_id=n.server_id,
            version="10.11.9-MariaDB-fake",
            gtid_binlog_pos=n.binlog_pos,
            gtid_slave_pos=n.slave_pos,
            gtid_current_pos=n.current_pos,
            gtid_strict_mode=True,
            replica=replica,
            semisync_master=SemiSyncMaster(
                enabled=n.master_enabled,
                status=n.master_enabled and (clients > 0 or n.wait_no_slave),
                wait_point=n.wait_point,
                timeout_ms=n.master_timeout,
                wait_no_slave=n.wait_no_slave,
                clients=clients,
                yes_tx=0,
                no_tx=0,
                wait_sessions=n.wait_sessions,
            ),
            semisync_slave=SemiSyncSlave(enabled=n.slave_enabled, status=r is not None and r.io == "Yes" and r.semi),
            uptime_s=n.uptime,
        )


async def settle(fencer: Fencer) -> None:
    """Wait for every fence attempt the last sweep started (the Fencer keeps them in ``_inflight``;
    it has no public way to await them)."""
    await asyncio.gather(*fencer._inflight.values(), return_exceptions=True)
