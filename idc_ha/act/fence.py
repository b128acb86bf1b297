"""Fence on return: keep re-dialling fenced-out nodes and make them read-only the moment they
answer; get through a fence that a waiting commit blocks.

A returning ex-primary may still have read_only=0 (it never heard it was replaced). Every
``fence_redial_s`` the scheduler calls ``Fencer.sweep()``; each pending node without a fence in
flight gets a *fresh* connection whose first statement is ``SET GLOBAL read_only=ON``.

If a session on that node still waits for a semi-sync ack (a commit from before the partition),
``SET GLOBAL read_only=ON`` waits for it too ("Waiting for backup lock"), and that commit can
never be acked: its acker was detached. Meanwhile MariaDB queues every new write behind the fence,
so the node takes no new commits. After ``fencing.blocked_after_s`` the fence is blocked, and
``decide/fence.py`` chooses the way through, on a node the record has put out of the layout
only: the machine's fence command (a restart as a replica truncates the never-acknowledged tail),
else, if the policy allows, KILL of the waiting connections (their clients get an error, their
rows stay: the node must be rebuilt), else an alert naming what to run. Never KILL QUERY, never
semi-sync off: both would acknowledge the waiting commit. Once the statement completes the node
leaves ``fence_pending`` and stays ``out`` of the layout until it is rejoined or rebuilt.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Collection

import structlog

from idc_ha.act.commands import CommandResult, SubprocessRunner
from idc_ha.act.hooks import HookRunner
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import Store
from idc_ha.decide.fence import Way, out_of_layout, way_through
from idc_ha.errors import NodeError, NodeUnreachable
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.command import expand
from idc_ha.model.config import HookEvent
from idc_ha.model.ids import NodeName, ShardName
from idc_ha.model.policy import Fencing
from idc_ha.model.topology import Topology
from idc_ha.notify.alerts import AlertSink
from idc_ha.ports import Admin, CommandRunner

log = structlog.get_logger("idc_ha.fence")

PENDING_FENCE_TIMEOUT_S = 120  # how long one fence statement may stay queued before it is re-issued
# Bounded on the server too (measured: it then fails with 1205): a fence whose client gave up must
# not stay queued there for lock_wait_timeout's default of a day, holding a connection.
FENCE = f"SET STATEMENT lock_wait_timeout={PENDING_FENCE_TIMEOUT_S} FOR SET GLOBAL read_only=ON"
WAITERS = "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for semi-sync ACK from slave'"
KILL_ROUNDS = 20  # KILL CONNECTION rounds (a commit queued behind a killed one may wait next)


def pending(book: RecordBook, adopted: Collection[ShardName] | None = None) -> dict[NodeName, ShardName]:
    """Node -> shard for every node to fence: recorded as pending, or one an operation in flight
    fences (its old primary and any stray writable node). With ``adopted``, only shards in it: a
    record (or an operation) reality has not been seen to match may be stale, and fencing from it
    could fence the real primary. A running controller's own operations are always adopted."""
    out: dict[NodeName, ShardName] = {}
    for rec in book.all().values():
        if adopted is not None and rec.shard not in adopted:
            continue
        for n in rec.fence_pending:
            out[n] = rec.shard
        if rec.op is not None:
            for n in (rec.op.old_primary, *rec.op.fence):
                if n != rec.op.target:
                    out[n] = rec.shard
    return out


class Fencer:
    def __init__(
        self,
        admin: Admin,
        book: RecordBook,
        store: Store,
        alerts: AlertSink,
        *,
        topology: Topology,
        policy: Fencing,
        runner: CommandRunner | None = None,
        hooks: HookRunner | None = None,
        adopted: Callable[[], Collection[ShardName]] | None = None,
    ) -> None:
        self.admin, self.book, self.store, self.alerts, self.hooks = admin, book, store, alerts, hooks
        self.t, self.policy, self.runner = topology, policy, runner or SubprocessRunner()
        self._adopted = adopted
        self._inflight: dict[NodeName, asyncio.Task[None]] = {}
        self._command_at: dict[NodeName, float] = {}  # when each node's fence command last ran

    async def sweep(self) -> None:
        """Start a fence attempt for every pending node (of an adopted shard) that has none in flight."""
        for node, shard in pending(self.book, self._adopted() if self._adopted else None).items():
            t = self._inflight.get(node)
            if t is None or t.done():
                self._inflight[node] = asyncio.create_task(self._fence(node, shard), name=f"fence:{node}")

    async def _fence(self, node: NodeName, shard: ShardName) -> None:
        task = asyncio.create_task(
            self.admin.run(node, FENCE, fresh=True, connect_timeout=0.25, timeout=PENDING_FENCE_TIMEOUT_S + 5),
            name=f"fence-stmt:{node}",
        )
        t0 = time.monotonic()
        try:
            way: Way | None = None
            while not (await asyncio.wait({task}, timeout=self.policy.blocked_after_s))[0]:
                way = await self._blocked(node, shard, task, way)
            await task
        except NodeUnreachable:
            return  # still away (or restarting): the next sweep dials again
        except NodeError as e:
            log.warning("fence failed; retrying", node=node, shard=shard, error=str(e))
            return
        finally:
            task.cancel()  # a no-op once done; else the attempt itself was cancelled
        await self._fenced(node, shard, waited=time.monotonic() - t0)

    async def _way(self, node: NodeName, shard: ShardName) -> Way:
        """``decide/fence.py``'s choice now, from the record as it is and a fresh look at the
        recorded primary (only when an escalation is possible at all)."""
        last = self._command_at.get(node)
        rec = self.book.get(shard)
        choose = functools.partial(
            way_through,
            rec,
            node,
            has_command=bool(self._command(node)),
            command_tried=last is not None and time.monotonic() - last < self.policy.command_retry_s,
            policy=self.policy,
            adopted=self._adopted is None or shard in self._adopted(),
        )
        if choose() is Way.WAIT or rec is None:
            return Way.WAIT
        try:
            writes = (await self.admin.observe(rec.primary)).writable
        except NodeError:
            writes = False
        return choose(primary_writes=writes)

    def _command(self, node: NodeName) -> tuple[str, ...]:
        return self.t.machine_by_name[self.t.node_by_name[node].machine].fence_command

    async def _blocked(self, node: NodeName, shard: ShardName, fence: asyncio.Task[object], was: Way | None) -> Way:
        """The fence has waited ``blocked_after_s`` (again): report it when the way through is
        new, then take it. Returns the way taken (WAIT: the fence stays queued)."""
        way = await self._way(node, shard)
        if way is not was:
            waiting = await self._count_waiters(node)
            self.store.append("fence_blocked", shard=shard, node=node, waiting_sessions=waiting, way=str(way))
            self._alert_blocked(node, shard, waiting, way)
        if way is Way.COMMAND:
            if await self._run_command(node, shard, self._command(node), fence):
                return way
            way = Way.KILL_WAITERS if self.policy.kill_waiters else Way.WAIT
        if way is Way.KILL_WAITERS:
            await self._kill_waiters(node, shard, fence)
        return way

    async def _count_waiters(self, node: NodeName) -> int:
        try:
            rows = await self.admin.run(
                node,
                "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'",
                fetch=True,
                fresh=True,
                timeout=2.0,
            )
            return int(rows[0][0]["Value"]) if rows and rows[0] else 0
        except NodeError:
            return -1

    def _alert_blocked(self, node: NodeName, shard: ShardName, waiting: int, way: Way) -> None:
        why = (
            f"{node} is back and still writable; its fence waits behind {waiting} commit(s) waiting for a "
            "semi-sync ack that can never come (its acker was detached). New writes there queue behind the "
            "fence and are never acknowledged"
        )
        never = "never KILL QUERY those sessions or switch semi-sync off there: that would acknowledge them"
        then = {
            Way.COMMAND: "running its machine's fence_command now",
            Way.KILL_WAITERS: "killing the waiting connections now (policy fencing.kill_waiters): their rows stay "
            f"in {node}'s binlog, so it will need a rebuild",
            Way.WAIT: f"restart {node} as a replica (init_rpl_role=SLAVE: its never-acknowledged tail is "
            "truncated), or configure its machine's fence_command; " + never,
        }[way]
        self.alerts.emit(
            Alert(
                kind=AlertKind.FENCE_BLOCKED,
                severity=Severity.CRITICAL if way is Way.WAIT else Severity.WARNING,
                shard=shard,
                node=node,
                reason=why,
                hint=then if way is Way.WAIT else f"{then}; {never}",
            )
        )

    async def _run_command(
        self, node: NodeName, shard: ShardName, cmd: tuple[str, ...], fence: asyncio.Task[object]
    ) -> bool:
        """Run the fence command; True once the fence statement has ended (the node restarted, or
        the fence went through). False, alerted, if the command failed or left the fence queued."""
        n = self.t.node_by_name[node]
        host, port = self.t.address_of(node)
        values: dict[str, object] = {"cluster": self.t.cluster, "shard": shard, "node": node, "machine": n.machine}
        values |= {"idc": self.t.idc_of(node), "address": host, "port": port}
        self._command_at[node] = time.monotonic()
        log.warning("running the fence command", node=node, shard=shard)
        res = await self.runner.run(expand(cmd, values), timeout=self.policy.command_timeout_s)
        self._command_at[node] = time.monotonic()
        self.store.append(
            "fence_command",
            shard=shard,
            node=node,
            argv=list(res.argv),
            rc=res.rc,
            elapsed_s=round(res.elapsed_s, 3),
            error=res.error,
            output=res.output[-500:],
        )
        if res.ok:
            done, _ = await asyncio.wait({fence}, timeout=self.policy.blocked_after_s)
            if done:
                return True
        self._alert_command_failed(node, shard, res, still_blocked=res.ok)
        return False

    def _alert_command_failed(
        self, node: NodeName, shard: ShardName, res: CommandResult, *, still_blocked: bool
    ) -> None:
        what = (
            f"{node}'s fence command exited 0 but its fence still waits"
            if still_blocked
            else f"{node}'s fence command failed: {res.summary()}"
        )
        then = (
            "killing the waiting connections instead (policy fencing.kill_waiters)"
            if self.policy.kill_waiters
            else f"it runs again after {self.policy.command_retry_s:g} s if the fence is still blocked"
        )
        self.alerts.emit(
            Alert(
                kind=AlertKind.FENCE_FAILED,
                severity=Severity.CRITICAL,
                shard=shard,
                node=node,
                reason=f"{what}; {then}",
                hint=f"fix machines[{self.t.node_by_name[node].machine}].fence_command (idc-ha check shows the "
                f"config), or restart {node} as a replica (init_rpl_role=SLAVE) by hand",
            )
        )

    async def _kill_waiters(self, node: NodeName, shard: ShardName, fence: asyncio.Task[object]) -> None:
        """KILL CONNECTION (never KILL QUERY) of each session waiting for an ack, until the fence
        goes through. The clients get an error; the rows stay in ``node``'s binlog (errant)."""
        killed: list[int] = []
        for _ in range(KILL_ROUNDS):
            if fence.done() or not out_of_layout(self.book.get(shard), node):
                break
            try:
                rows = await self.admin.run(node, WAITERS, fetch=True, fresh=True, timeout=2.0)
                for r in rows[0]:
                    await self.admin.run(node, f"KILL CONNECTION {int(r['ID'])}", fresh=True, timeout=2.0)
                    killed.append(int(r["ID"]))
            except NodeError as e:
                log.warning("could not kill the waiting connections", node=node, error=str(e))
                break
            await asyncio.wait({fence}, timeout=0.2)
        self.store.append("fence_killed", shard=shard, node=node, connections=killed, fenced=fence.done())
        log.warning("killed the connections waiting for an ack", node=node, shard=shard, connections=killed)

    async def _fenced(self, node: NodeName, shard: ShardName, *, waited: float) -> None:
        rec = self.book.get(shard)
        if rec is None or node not in rec.fence_pending:
            return
        await self.book.commit(
            rec.model_copy(
                update={"fence_pending": tuple(n for n in rec.fence_pending if n != node), "updated_wall": time.time()}
            )
        )
        self.store.append("fenced", shard=shard, node=node, waited_s=round(waited, 3))
        log.warning("fenced a returning node", shard=shard, node=node, waited_s=round(waited, 3))
        self.alerts.emit(
            Alert(
                kind=AlertKind.FENCED,
                severity=Severity.WARNING,
                shard=shard,
                node=node,
                reason=f"{node} answered again and was made read-only (it is out of the layout)",
                hint="it rejoins as a replica after its GTIDs are checked, or is rebuilt",
            )
        )
        if self.hooks is not None:
            self.hooks.fire(HookEvent.FENCE, rec, old_primary=node, reason=f"{node} made read-only on its return")

    async def close(self) -> None:
        for t in self._inflight.values():
            t.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
