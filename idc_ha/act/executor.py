"""The executor: runs a shard's plan step by step against MySQL, journaling each step.

Every step looks at the node before acting and does nothing when its effect is already there,
so running a plan again from the top after a crash is safe; the record's operation (written
before the first step) tells a restarted daemon which plan to run. The journal gets
``step_started``/``step_done``/``step_failed`` lines with timings.

Two rules from the field are enforced here:

* the candidate's IO thread is stopped, never restarted, and its SQL thread applies the whole
  relay log before its replication is reset: in GTID mode a restarted IO thread deletes relay
  logs, which on the acker hold the only copy of acknowledged commits;
* nothing ever KILLs a session: killing one that waits for a semi-sync ack commits it locally
  without an ack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import NoReturn

import structlog

from idc_ha.act import rearm, rejoin, relaylog, semisync, wake
from idc_ha.act.admin import change_master_sql
from idc_ha.act.hooks import HookRunner
from idc_ha.act.routing import RoutingPublisher
from idc_ha.clock import boottime
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import Store
from idc_ha.decide.layout import layout_after
from idc_ha.decide.plan import (
    AnyStep,
    ArmAcker,
    CatchUp,
    CommitLayout,
    Detach,
    Disarm,
    EnableMasterSemisync,
    Fence,
    OpenWrites,
    PublishRouting,
    Rearm,
    RecordPromotionPoint,
    Rejoin,
    Repoint,
    Rewire,
    ShardPlan,
    StartReplica,
    StopReceiving,
    VerifySemisync,
    WaitRelayApplied,
    WakeAckReceiver,
)
from idc_ha.decide.syncstate import baseline_of
from idc_ha.errors import NodeError, NodeUnreachable, StepFailed
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.config import HookEvent
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName, ShardName
from idc_ha.model.policy import Policy
from idc_ha.model.state import Operation, ShardRecord
from idc_ha.model.topology import Topology
from idc_ha.notify.alerts import AlertSink
from idc_ha.ports import Admin

log = structlog.get_logger("idc_ha.executor")

MASTER_ON = (
    "SET GLOBAL rpl_semi_sync_master_wait_point='AFTER_SYNC'",
    f"SET GLOBAL rpl_semi_sync_master_timeout={SEMISYNC_TIMEOUT_NEVER}",
    "SET GLOBAL rpl_semi_sync_master_wait_no_slave=ON",
    "SET GLOBAL rpl_semi_sync_master_enabled=ON",
)


class Executor:
    def __init__(
        self,
        *,
        admin: Admin,
        book: RecordBook,
        store: Store,
        topology: Topology,
        policy: Policy,
        routing: RoutingPublisher,
        alerts: AlertSink,
        hooks: HookRunner | None = None,
        crash_after: str | None = None,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = boottime,
    ) -> None:
        self.admin, self.book, self.store, self.t = admin, book, store, topology
        self.x = policy.execution
        self.routing, self.alerts, self.hooks = routing, alerts, hooks
        self.crash_after = crash_after
        self.wall = wall
        self.monotonic = monotonic

    def _op(self, shard: ShardName, op_id: str) -> tuple[ShardRecord, Operation]:
        rec = self.book.get(shard)
        if rec is None or rec.op is None or rec.op.id != op_id:
            raise StepFailed(f"{shard}: operation {op_id} is no longer in the record", shard=shard)
        return rec, rec.op

    async def run(self, plan: ShardPlan) -> None:
        """Run every step in order. Raises StepFailed (or NodeError) when a step cannot finish
        now; the operation stays in the record and the next tick resumes it from the top."""
        bound = log.bind(shard=plan.shard, op=plan.op_id)
        t_op = time.perf_counter()
        self.store.append("op_run", shard=plan.shard, op=plan.op_id, reason=plan.reason)
        for i, step in enumerate(plan.steps):
            t0 = time.perf_counter()
            try:
                # Read before every step: an operation replaced meanwhile (a node failover handed
                # over) stops here.
                rec, op = self._op(plan.shard, plan.op_id)
                if isinstance(step, StopReceiving | WaitRelayApplied | CatchUp) and rec.primary == op.target:
                    # Resumed after the layout was committed: the nodes now replicate from the new
                    # primary, and stopping them again would only hold its commits back.
                    detail = f"layout committed at epoch {rec.epoch}; nothing to settle"
                else:
                    detail = await self._step(plan.shard, plan.op_id, step)
            except (StepFailed, NodeError) as e:
                ms = round((time.perf_counter() - t0) * 1000, 1)
                self.store.append(
                    "step_failed", shard=plan.shard, op=plan.op_id, step=step.kind, idx=i, ms=ms, error=str(e)
                )
                bound.warning("step failed", step=step.kind, ms=ms, error=str(e), reason=step.reason)
                raise
            ms = round((time.perf_counter() - t0) * 1000, 1)
            self.store.append("step_done", shard=plan.shard, op=plan.op_id, step=step.kind, idx=i, ms=ms, detail=detail)
            bound.info("step done", step=step.kind, ms=ms, detail=detail, reason=step.reason)
            if self.crash_after in (step.kind, f"{plan.shard}:{step.kind}"):
                # Test-only fault point: die exactly here, as a crash would (no cleanup, no flush).
                bound.warning("test fault point: exiting", step=step.kind)
                os._exit(75)
        rec, op = self._op(plan.shard, plan.op_id)
        done = rec.model_copy(update={"op": None, "updated_wall": self.wall()})
        total = round((time.perf_counter() - t_op) * 1000, 1)
        # Journal and alert before the record lets go of the operation: a crash in between
        # repeats them on resume rather than losing them.
        self.store.append("op_done", shard=plan.shard, op=plan.op_id, ms=total, primary=done.primary, epoch=done.epoch)
        bound.info("operation done", ms=total, primary=done.primary, epoch=done.epoch)
        self.alerts.emit(
            Alert(
                kind=AlertKind.FAILOVER_DONE,
                severity=Severity.WARNING,
                shard=plan.shard,
                node=done.primary,
                idc=self.t.idc_of(done.primary),
                epoch=done.epoch,
                reason=f"{plan.shard} now writes on {done.primary} (epoch {done.epoch}, {done.sync}, "
                f"ackers {', '.join(done.ackers)}) after {total:.0f} ms",
                hint="the old primary's IDC rejoins as replicas once it returns and is checked",
            )
        )
        await self.book.commit(done)
        if self.hooks is not None:
            self.hooks.fire(HookEvent.FAILOVER, done, old_primary=op.old_primary, reason=plan.reason)

    async def reconcile_step(self, step: AnyStep) -> str:
        """Run one corrective step from the drift check (ArmAcker, StartReplica, Disarm; fences go
        to the Fencer), the ack-receiver watch (WakeAckReceiver), a returning node (Rejoin) or the
        move back to IDC-safe (Rearm, Rewire)."""
        node: NodeName = getattr(step, "node", NodeName(""))
        shard, t = self.t.node_by_name[node].shard if node else ShardName(""), self.x
        match step:
            case StartReplica():
                sql = self._change_master(step.source)
                return await relaylog.start_replica(
                    self.admin, step.node, sql, self._stuck, timeout_s=t.relay_apply_timeout_s
                )
            case WakeAckReceiver():
                rec = self.book.get(shard)
                if rec is None or rec.primary != step.node or step.acker not in rec.ackers:
                    # Decided before the record changed (the acker moved): its client would wake
                    # commits up to what a node that no longer acks received (found by review).
                    raise StepFailed(f"{shard}: {step.acker} is no longer the recorded acker of {step.node}")
                return await wake.wake_ack_receiver(self.admin, step.node, step.acker, hold_s=wake.HOLD_S)
            case Rejoin():
                detail = await rejoin.rejoin(self.admin, self.book, shard, step, wall=self.wall)
                if self.hooks is not None and (rec := self.book.get(shard)) is not None:
                    self.hooks.fire(HookEvent.REJOIN, rec, old_primary=step.node, reason=detail)
                return detail
            case Rearm():
                to = t.semisync_verify_timeout_s
                return await rearm.rearm(self.admin, self.book, shard, step, arm=self._arm_acker, timeout_s=to)
            case Rewire():
                return await rearm.rewire(self.admin, self.book, shard, step, self._change_master(step.source))
            case Disarm():
                return await rearm.disarm(self.admin, step.node)
            case ArmAcker():
                o = await self.admin.observe(step.node)
                if o.replica is not None and not o.replica.sql_ok:
                    # Re-arming restarts the IO thread; with the SQL thread stopped that discards
                    # the relay log of the recorded acker. Leave it to a human.
                    raise StepFailed(f"{step.node}: SQL thread stopped; not restarting its IO thread", node=step.node)
                return await self._arm_acker(step.node, step.source)
        raise StepFailed(f"{step.kind} is not a reconcile step")

    def _change_master(self, source: NodeName) -> str:
        host, port = self.admin.address(source)
        return change_master_sql(host, port, user=self.admin.repl_user, password=self.admin.repl_password)

    async def _step(self, shard: ShardName, op_id: str, step: AnyStep) -> str:
        match step:
            case Fence():
                return await self._fence(shard, op_id, step.node, dial=step.dial)
            case StopReceiving():
                return await relaylog.stop_receiving(self.admin, step.node, self._stuck)
            case WaitRelayApplied():
                return await relaylog.wait_applied(
                    self.admin, step.node, self._stuck, timeout_s=self.x.relay_apply_timeout_s
                )
            case RecordPromotionPoint():
                return await self._record_point(shard, op_id, step.node)
            case CatchUp():
                return await relaylog.catch_up(
                    self.admin,
                    step.node,
                    step.source,
                    self._change_master(step.source),
                    self._stuck,
                    timeout_s=self.x.relay_apply_timeout_s,
                )
            case Detach():
                return await relaylog.detach(self.admin, step.node)
            case Repoint():
                return await self._repoint(step.node, step.source)
            case EnableMasterSemisync():
                await self.admin.run(step.node, *MASTER_ON)
                return "semi-sync master on, AFTER_SYNC, timeout never"
            case ArmAcker():
                return await self._arm_acker(step.node, step.source)
            case VerifySemisync():
                return await self._verify(step.primary, step.ackers)
            case CommitLayout():
                return await self._commit(shard, op_id)
            case OpenWrites():
                return await self._open(step.node)
            case PublishRouting():
                rec, _ = self._op(shard, op_id)
                self.routing.publish(rec, reason=f"{op_id}")
                return f"routing epoch {rec.epoch} -> {rec.primary}"
            case StartReplica():
                raise StepFailed(f"{step.kind} is a reconcile step, not part of a plan")
        raise AssertionError(f"unknown step {step!r}")

    async def _fence(self, shard: ShardName, op_id: str, node: NodeName, *, dial: bool = True) -> str:
        """Make ``node`` read-only, or hand it to the Fencer (fence on return) durably.

        The old primary may be left to the Fencer whatever the failure: it cannot acknowledge
        anything, since its acker stops receiving in the next step. Any other node that answers
        but cannot be fenced may take (and locally acknowledge) writes: writes stay closed on
        the new primary until it is fenced."""
        try:
            if not dial:
                raise NodeUnreachable(
                    f"{node} was seen failed when the plan was made; not dialled", node=node, cause="failed"
                )
            await self.admin.run(node, "SET GLOBAL read_only=ON", fresh=True, connect_timeout=0.3, timeout=2.0)
            return "read_only=ON"
        except NodeError as e:
            rec, op = self._op(shard, op_id)
            if node not in rec.fence_pending:
                await self.book.commit(rec.model_copy(update={"fence_pending": (*rec.fence_pending, node)}))
            if node != op.old_primary and not isinstance(e, NodeUnreachable):
                self._stuck(
                    node,
                    f"{node} answers but could not be made read-only: {e.message[:120]}",
                    "writes stay closed on the new primary until it is fenced; find what holds it",
                )
            return f"not fenced now, fenced on return ({e.message[:80]})"

    def _stuck(self, node: NodeName, why: str, hint: str) -> NoReturn:
        self.alerts.emit(
            Alert(
                kind=AlertKind.FAILOVER_STUCK,
                severity=Severity.CRITICAL,
                node=node,
                idc=self.t.idc_of(node),
                shard=self.t.node_by_name[node].shard,
                reason=why,
                hint=hint,
            )
        )
        raise StepFailed(why, node=node, hint=hint)

    async def _record_point(self, shard: ShardName, op_id: str, node: NodeName) -> str:
        _, op = self._op(shard, op_id)
        if op.promotion_point is not None:
            return f"already recorded: {op.promotion_point}"
        o = await self.admin.observe(node)
        rec, op = self._op(shard, op_id)  # read again after the await: others may have written it
        point = o.received()
        if op.seen_received is not None and not point.contains(op.seen_received):
            # The candidate holds less than it had received when the proof was made: its relay
            # log was lost (a restart while the primary was dead). Acknowledged commits may be
            # missing; only a human can decide now.
            self._stuck(
                node,
                f"{node} holds {point} but had received {op.seen_received} when the failover "
                "was decided: part of its relay log is gone, acknowledged commits may be missing",
                "compare the nodes' GTIDs by hand; promote only with explicit consent",
            )
        await self.book.commit(
            rec.model_copy(update={"op": op.model_copy(update={"promotion_point": point}), "updated_wall": self.wall()})
        )
        return f"promotion point {point}"

    async def _arm_acker(self, node: NodeName, source: NodeName) -> str:
        o = await self.admin.observe(node)
        host, port = self.admin.address(source)
        stmts = ["SET GLOBAL rpl_semi_sync_slave_enabled=ON"]
        if o.replica is None or o.source != source:
            sql = change_master_sql(host, port, user=self.admin.repl_user, password=self.admin.repl_password)
            stmts += ["STOP SLAVE", sql, "START SLAVE"]
        elif o.semisync_slave is not None and o.semisync_slave.status and o.replica.io_connected:
            if not o.semisync_slave.enabled:
                # Acking on the role it negotiated, but the next reconnect would come back async.
                await self.admin.run(node, "SET GLOBAL rpl_semi_sync_slave_enabled=ON")
                return "acking; semi-sync slave setting switched back on"
            return "already acking"
        else:
            # The semi-sync role is negotiated when the IO thread connects. This node is not
            # being promoted, so re-fetching its relay log from the source is harmless.
            stmts += ["STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"]
            if o.replica is not None and not o.replica.sql_ok:
                # A plan resumed after a crash between CHANGE MASTER and START SLAVE: the node's
                # relay log was applied before it was repointed (the reconcile path refuses this).
                stmts.append("START SLAVE SQL_THREAD")
        await self.admin.run(node, *stmts)
        return f"semi-sync slave on, IO reconnected to {source}"

    async def _repoint(self, node: NodeName, source: NodeName) -> str:
        o = await self.admin.observe(node)
        if o.replica is not None and o.source == source and not o.replica.io_stopped:
            return f"already replicating from {source}"
        if o.replica is not None and not relaylog.all_applied(o):
            raise StepFailed(f"{node}: its relay log is not applied yet; not switching its source", node=node)
        await self.admin.run(node, "STOP SLAVE", self._change_master(source), "START SLAVE")
        return f"replicating from {source}"

    async def _verify(self, primary: NodeName, ackers: tuple[NodeName, ...]) -> str:
        return await semisync.verify(
            self.admin, primary, ackers, self._stuck, timeout_s=self.x.semisync_verify_timeout_s
        )

    async def _commit(self, shard: ShardName, op_id: str) -> str:
        rec, op = self._op(shard, op_id)
        if rec.primary == op.target:
            return f"already committed at epoch {rec.epoch}"
        p = await self.admin.observe(op.target)
        rec, op = self._op(shard, op_id)  # read again after the await: others may have written it
        new = layout_after(
            rec,
            op,
            self.t,
            point=op.promotion_point,
            baseline=baseline_of(op.target, p, wall=self.wall(), taken_at=self.monotonic()),
            wall=self.wall(),
        )
        await self.book.commit(new)
        return f"epoch {new.epoch}: primary {new.primary}, {new.sync}, ackers {', '.join(new.ackers)}"

    async def _open(self, node: NodeName) -> str:
        o = await self.admin.observe(node)
        m = o.semisync_master
        if m is None or not m.settings_hold:
            raise StepFailed(f"{node}: master semi-sync settings unverified; not opening writes", node=node)
        if not o.read_only:
            return "already writable"
        await self.admin.run(node, "SET GLOBAL read_only=OFF")
        return "read_only=OFF"
