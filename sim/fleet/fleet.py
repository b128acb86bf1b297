"""The simulated fleet: every server of a topology, behind the ``Prober`` and ``Admin`` ports.

One fake serves the unit tests (executor, Fencer, daemon) and the scale benchmarks. It models only
what the controller depends on, with the rules measured on 10.11 (``statements`` lists them):

* replication runs in ``tick()``, which ``round()`` and ``observe()`` call first: a running IO
  thread connects to a live source (negotiating its semi-sync role from
  ``rpl_semi_sync_slave_enabled`` *at that moment*) and copies the source's binlog tail into the
  relay log; a dead or cut-off source leaves it ``Connecting`` with error 2003. A running SQL
  thread then applies up to ``apply_per_tick`` relay-log transactions (log_slave_updates); one
  already applied stops it with error 1950 (gtid_strict_mode);
* semi-sync: a commit on a primary with master semi-sync on is acknowledged (``yes_tx``) when a
  semi-sync replica is connected, waits (``wait_sessions``) when none is and the timeout never
  expires, and goes through without an ack (``no_tx``, and ``no_times`` for the switch-off) when
  the timeout is finite. Waiting commits are acknowledged once a semi-sync replica connects and
  receives them. ``Rpl_semi_sync_master_clients`` counts the connected semi-sync replicas;
* faults per node: ``dead`` refuses connections, ``fault="timeout"`` times every call out at the
  connect timeout, ``fault="frozen"`` at the statement timeout;
* every statement costs ``latency_s`` (0 by default); a probe round costs it once (the probes run
  in parallel).

Single GTID domain (0), as the lab. Pure Python, no I/O: ``clock`` and ``wall`` are injectable.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from typing import Any

from idc_ha.errors import NodeError, NodeUnreachable
from idc_ha.model.gtid import Gtid, GtidPos
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName, NodeRole
from idc_ha.model.observation import (
    NodeObservation,
    ProbeFailure,
    Snapshot,
)
from idc_ha.model.topology import Topology

from .node import FakeNode, Replica, Sent, ack_upto, pos_of, seq_of
from .observe import build, finalizing, state_of
from .statements import delete_relay_log, execute, forbidden, io_thread_id

UPTIME = 86_400


class Fleet:
    """The servers of a topology; an ``Admin`` and a ``Prober`` onto them."""

    def __init__(
        self,
        topology: Topology,
        *,
        timeout: float = 2.0,
        connect_timeout: float = 0.3,
        latency_s: float = 0.0,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] | None = None,
        record: bool = True,
    ) -> None:
        self.t = topology
        self.nodes = {n.name: FakeNode(n.name, server_id=n.port) for n in topology.nodes}
        self._by_addr = {topology.address_of(n.name): n.name for n in topology.nodes}
        self.repl_user, self.repl_password = "repl", "s3cr'et"
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self.latency_s = latency_s
        self._clock = clock or (lambda: 0.0)
        self._wall = wall or (lambda: 1_700_000_000.0 + self._clock())
        self.record = record  # keep every statement in ``sent`` (unit tests); off at scale
        self.sent: list[Sent] = []
        self.refused: list[NodeName] = []  # calls to dead nodes, in order
        self.on_effect: Callable[[str], None] | None = None  # called after every statement that changed something
        self._conns = 0
        self._replicas_of: dict[NodeName, list[NodeName]] | None = None  # source -> replicas; None: rebuild
        self._seen: dict[NodeName, tuple[tuple[Any, ...], NodeObservation]] = {}  # node -> (state, observation)

    # -- the Clock port: the fleet's own clocks, so a daemon on it reads boot times on its clock
    def monotonic(self) -> float:
        return self._clock()

    def wall(self) -> float:
        return self._wall()

    # -- arranging the servers ----------------------------------------------------------------------

    def arrange_home(self, *, seq: int = 100) -> Fleet:
        """Every shard in its home layout: the primary wrote ``seq`` transactions, all replicated and
        applied; the acker acks (semi-sync on both ends), everything else replicates async."""
        for n in self.t.nodes:
            node = self.nodes[n.name]
            primary = next(p for p in self.t.nodes_by_shard[n.shard] if p.role == NodeRole.PRIMARY)
            node.binlog = [Gtid(0, primary.port, k) for k in range(1, seq + 1)]
            node.started = self._clock() - UPTIME
            if n.role == NodeRole.PRIMARY:
                node.read_only = False
                node.master_enabled, node.wait_point, node.master_timeout = True, "AFTER_SYNC", SEMISYNC_TIMEOUT_NEVER
                node.acked_upto = seq
                continue
            assert n.upstream is not None
            node.slave_pos = node.binlog_pos
            node.slave_enabled = n.role == NodeRole.ACKER
            host, port = self.t.address_of(n.upstream)
            node.replica = Replica(host, port, io_pos=node.binlog_pos, semi=node.slave_enabled)
        self._replicas_of = None
        return self

    def write(self, node: NodeName, count: int) -> None:
        """The node commits ``count`` transactions (its replicas get them on the next tick)."""
        n = self.nodes[node]
        last = n.binlog[-1].seq if n.binlog else 0
        n.binlog += [Gtid(0, n.server_id, last + k) for k in range(1, count + 1)]
        if not n.master_enabled:
            return
        if self.clients(n) and not n.semi_off:
            return  # acknowledged when the replica receives them, on the next tick
        if n.wait_no_slave and n.master_timeout >= SEMISYNC_TIMEOUT_NEVER // 2 and not n.semi_off:
            n.wait_sessions += count
            return
        if not n.semi_off:
            n.semi_off, n.no_times = True, n.no_times + 1  # the timeout expired: semi-sync switched off
        n.no_tx += count
        n.acked_upto = n.binlog[-1].seq

    def restart(
        self, node: NodeName, *, skip_slave_start: bool = False, stale_info: bool = False, as_replica: bool = False
    ) -> None:
        """The server restarts: read_only=ON from its config file. Without ``skip_slave_start`` the
        replication threads start again and, in GTID mode, the relay log is gone (the IO thread
        fetches from gtid_slave_pos). With it both threads stay stopped, the relay log is kept and
        Gtid_IO_Pos is empty (measured on 10.11.19); ``stale_info`` leaves relay-log.info at the
        start of the relay log, as a crash can. Status counters start again at zero. A crash
        recovery keeps the commits that were waiting for an ack; ``as_replica``
        (``init_rpl_role=SLAVE``, the lab's fence command) truncates them, and master semi-sync
        is off (docs/fencing.md)."""
        n = self.nodes[node]
        if as_replica:
            n.binlog = n.binlog[: len(n.binlog) - n.wait_sessions]
            n.master_enabled = False
        n.read_only, n.started, n.wait_sessions = True, self._clock(), 0
        n.yes_tx = n.no_tx = n.no_times = 0
        r = n.replica
        if r is None:
            return
        if skip_slave_start:
            r.io, r.sql, r.semi, r.io_pos = "No", "No", False, GtidPos()
            r.info_at = 0 if stale_info else None
            return
        if r.use_gtid != "no":
            delete_relay_log(n)
        r.io, r.sql, r.semi = "Connecting", "Yes", False

    def source_of(self, r: Replica) -> FakeNode | None:
        name = self._by_addr.get((r.host, r.port))
        return self.nodes.get(name) if name is not None else None

    def tick(self, *, apply: bool = True, only: list[FakeNode] | None = None) -> None:
        """One round of replication: IO threads connect and fetch, then SQL threads apply (of
        every node, or of ``only`` those)."""
        nodes = only if only is not None else list(self.nodes.values())
        for n in nodes:
            r = n.replica
            if not n.answers or r is None or r.io == "No":
                continue
            src = self.source_of(r)
            if src is None or not src.answers:
                if not (r.waits_on_silence and r.io == "Yes"):
                    r.io, r.semi, r.last_io_errno = "Connecting", False, 2003
                continue
            if r.io != "Yes":
                r.io, r.semi, r.last_io_errno = "Yes", n.slave_enabled, 0
            if n.stalled or (r.semi and src.hung_since is not None):
                continue  # a deadlocked source's new dump thread for a semi-sync replica sends nothing
            have = r.io_pos.by_domain[0].seq if r.io_pos.by_domain else 0
            new = src.binlog[bisect.bisect_right(src.binlog, have, key=seq_of) :]
            if new:
                r.log += new
                r.io_pos = r.io_pos.merge(pos_of(new[-1:]))
            if (
                r.semi
                and src.master_enabled
                and src.hung_since is None
                and src.binlog
                and src.acked_upto < src.binlog[-1].seq
            ):
                ack_upto(src, r.io_pos.by_domain[0].seq if r.io_pos.by_domain else 0)
        if not apply:
            return
        for n in nodes:
            r = n.replica
            if not n.answers or r is None or r.sql != "Yes" or r.at >= len(r.log):
                continue
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
        """Every KILL QUERY, KILL of a session, and switch of master semi-sync OFF under a waiting
        commit that was ever sent (must stay empty)."""
        return [s for s in self.sent if forbidden(s, io_thread_id(self.nodes[s.node]))]

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
        n = await self._dial(node, connect_timeout)
        self._conns += fresh
        conn, out, sql = self._conns if fresh else 0, [], ""
        try:
            async with asyncio.timeout(timeout or self.timeout):
                for sql in statements:
                    if n.fault == "frozen":
                        await asyncio.sleep(3600)
                    if self.latency_s:
                        await asyncio.sleep(self.latency_s)
                    if self.record:
                        self.sent.append(
                            Sent(node, sql, fresh=fresh, conn=conn, waiting=n.wait_sessions, read_only=n.read_only)
                        )
                    rows = await execute(n, sql)
                    if "CHANGE MASTER" in sql.upper() or "RESET SLAVE" in sql.upper():
                        self._replicas_of = None
                    out.append(rows if fetch else [])
                    if self.on_effect is not None and not sql.upper().startswith(("SHOW", "SELECT")):
                        self.on_effect(f"{node}: {sql}")
        except TimeoutError as e:
            raise NodeError(f"{node}: {sql}: timed out", node=node) from e
        return out

    async def observe(self, node: NodeName) -> NodeObservation:
        n = await self._answering(node, "observe")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.tick(only=[n])
        await asyncio.sleep(0)
        return self.observation(node)

    async def attach_silent_replica(self, node: NodeName, *, server_id: int, gtid: GtidPos) -> Callable[[], None]:
        """A semi-sync client that never acks: counted in the node's clients while attached; its
        registration wakes a deadlocked ack receiver (``FakeNode.hung_since``). MariaDB starts a
        GTID-mode dump at the start of the binlog file holding ``gtid`` and counts that start as
        acknowledged; the fake counts ``gtid`` itself (the furthest the real start can be), so a
        caller that starts past what the acker holds releases commits in any test that checks
        them. A position the binlog does not hold (purged, or past its end) is refused (1236)
        before the client registers, as MariaDB refuses it."""
        n = await self._answering(node, "silent semi-sync replica")
        if self.record:
            self.sent.append(
                Sent(node, f"BINLOG DUMP GTID '{gtid}' (silent semi-sync, server_id={server_id})", True, 0)
            )
        want = next((g.seq for g in gtid.by_domain if g.domain == 0), 0)  # the fake writes domain 0 only
        oldest = n.binlog[n.purged - 1].seq if n.purged else 0  # where the oldest binlog file starts
        if not oldest <= want <= (n.binlog[-1].seq if n.binlog else 0):
            raise NodeError(
                f"{node}: silent semi-sync replica: (1236) Could not find GTID state requested by slave in any "
                "binlog files",
                node=node,
                code=1236,
            )
        if n.master_enabled:
            ack_upto(n, want)
        n.silent_clients += 1
        n.hung_since = None
        attached = True

        def detach() -> None:
            nonlocal attached
            if attached:
                n.silent_clients, attached = n.silent_clients - 1, False

        return detach

    async def close(self) -> None:
        pass

    async def _dial(self, node: NodeName, connect_timeout: float | None) -> FakeNode:
        n = self.nodes[node]
        if n.dead:
            self.refused.append(node)
            raise NodeUnreachable(f"cannot connect to {node}: connection refused", node=node, cause="refused")
        if n.fault == "timeout":
            await asyncio.sleep(connect_timeout or self.connect_timeout)
            raise NodeUnreachable(f"cannot connect to {node}: connect timed out", node=node, cause="timeout")
        return n

    async def _answering(self, node: NodeName, what: str) -> FakeNode:
        """A dialled node that answers: a frozen one costs the call's timeout, then fails."""
        n = await self._dial(node, None)
        if n.fault == "frozen":
            await asyncio.sleep(self.timeout)
            raise NodeError(f"{node}: {what}: timed out", node=node)
        return n

    # -- the Prober port ----------------------------------------------------------------------------

    async def round(self) -> Snapshot:
        """Every node probed once, in parallel: one latency for the round, replication first."""
        taken, wall = self._clock(), self._wall()
        t0 = time.perf_counter()
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        self.tick()
        counts = self.semi_clients()
        nodes = {name: self._probe(n, counts) for name, n in self.nodes.items()}
        return Snapshot(taken_at=taken, wall=wall, duration_ms=(time.perf_counter() - t0) * 1000, nodes=nodes)

    def _probe(self, n: FakeNode, counts: dict[NodeName, int]) -> NodeObservation:
        if n.dead:
            return NodeObservation(
                node=n.name, reachable=False, failure=ProbeFailure.REFUSED, error="connection refused"
            )
        if n.fault is not None:
            return NodeObservation(node=n.name, reachable=False, failure=ProbeFailure.TIMEOUT, error="timed out")
        return self.observation(n.name, clients=counts)

    # -- observations -------------------------------------------------------------------------------

    def semi_clients(self) -> dict[NodeName, int]:
        """Per source, how many connected replicas negotiated semi-sync (one pass over the fleet)."""
        out: dict[NodeName, int] = {n.name: n.silent_clients for n in self.nodes.values() if n.silent_clients}
        for o in self.nodes.values():
            r = o.replica
            if o.answers and r is not None and r.io == "Yes" and r.semi:
                src = self._by_addr.get((r.host, r.port))
                if src is not None and self.nodes[src].hung_since is None:
                    out[src] = out.get(src, 0) + 1
        return out

    def replicas_of(self, source: NodeName) -> list[NodeName]:
        """The nodes configured to replicate from ``source`` (rebuilt after any CHANGE MASTER or
        RESET SLAVE sent through ``run``; call ``rewired()`` after changing a Replica by hand)."""
        if self._replicas_of is None:
            idx: dict[NodeName, list[NodeName]] = {}
            for o in self.nodes.values():
                if o.replica is not None:
                    src = self._by_addr.get((o.replica.host, o.replica.port))
                    if src is not None:
                        idx.setdefault(src, []).append(o.name)
            self._replicas_of = idx
        return self._replicas_of.get(source, [])

    def rewired(self) -> None:
        self._replicas_of = None

    def clients(self, n: FakeNode) -> int:
        count = n.silent_clients
        if n.hung_since is not None:
            return count  # the deadlocked receiver registers no replica
        for name in self.replicas_of(n.name):
            o = self.nodes[name]
            r = o.replica
            if o.answers and r is not None and r.io == "Yes" and r.semi and self.source_of(r) is n:
                count += 1
        return count

    def observation(self, node: NodeName, *, clients: dict[NodeName, int] | None = None) -> NodeObservation:
        """What ``observe`` returns for a live node, without letting replication run first. An
        unchanged node gives the very same observation object (as the real prober does)."""
        n = self.nodes[node]
        r = n.replica
        if not n.master_enabled:
            clients_n = 0
        elif clients is not None:
            clients_n = clients.get(n.name, 0)
        else:
            clients_n = self.clients(n)
        stuck_dump = finalizing(n, clients_n)
        state = state_of(n, clients_n, stuck_dump)
        hit = self._seen.get(node)
        if hit is not None and hit[0] == state:
            return hit[1]
        obs = build(n, clients_n, self._by_addr.get((r.host, r.port)) if r is not None else None, stuck_dump)
        self._seen[node] = (state, obs)
        return obs
