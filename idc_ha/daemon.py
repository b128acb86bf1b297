"""The daemon: observe -> decide -> act, every ``probe.interval_s``, for as long as it runs.

Tasks (all named, all supervised: a crash is logged and the task restarted after a pause):

* ``tick``: the loop. One probe round, ``decide()``, write changed records durably, send alerts,
  start operation tasks, reconcile drift, write the tick view. The sleep between ticks is
  interruptible (``wake()``), so an operator command or a finished operation acts at once; but
  while operations run the loop first rests as long as the tick held the event loop, within a
  bound on the time between probe rounds (``rest_after``), so at thousands of shards
  back-to-back ticks do not starve the operations.
* ``mqtt``: the broker connection for routing and alerts.
* ``op:<shard>``: one per operation in flight; probing never waits for a failover.
* APScheduler 3 jobs (``max_instances=1``, coalesced): fence-on-return re-dialling every
  ``execution.fence_redial_s``, routing re-publication every 30 s, the meta shard's routing
  table (``act/routing_table.py``) written every 0.5 s while a row is pending.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Awaitable, Callable

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from idc_ha.act.admin import MysqlAdmin
from idc_ha.act.commands import SubprocessRunner
from idc_ha.act.executor import Executor
from idc_ha.act.fence import Fencer
from idc_ha.act.hooks import HookRunner
from idc_ha.act.routing import RoutingPublisher
from idc_ha.act.routing_table import RoutingTable
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import FileStore
from idc_ha.decide.contact import ACKER_GAP_S
from idc_ha.decide.memory import Memory
from idc_ha.decide.plan import Decision, ShardPlan
from idc_ha.decide.tick import decide
from idc_ha.errors import IdcHaError, StoreFailed
from idc_ha.model.config import Config
from idc_ha.model.ids import NodeName, ShardName
from idc_ha.model.policy import Policy
from idc_ha.model.state import ShardRecord
from idc_ha.notify.alerts import AlertSink, Deduplicating, LogAlertSink, MqttAlertSink
from idc_ha.notify.mqtt import MqttPublisher
from idc_ha.observe.addresses import AddressBook
from idc_ha.observe.boots import BootTracker
from idc_ha.observe.snapshot import Observer
from idc_ha.ports import Admin, Clock, CommandRunner, Prober, Store, SystemClock
from idc_ha.process import sd_notify
from idc_ha.reconcile import Reconciler, backoff_s
from idc_ha.view import TickView, tick_view

log = structlog.get_logger("idc_ha.daemon")

ROUND_GAP_S = 0.8 * ACKER_GAP_S  # the rest after a tick never puts two probe rounds further apart
# While a refusal is being confirmed, rounds come this often: the verdict is due as soon as the
# refusal has lasted detection.confirm_refused_s, not up to a whole probe interval later.
HURRY_S = 0.05


class Daemon:
    """The controller. It is handed its ports (``idc_ha.ports``); ``from_config`` wires the real
    ones. ``mqtt`` is the broker connection the real sinks and routing share (None: no broker)."""

    def __init__(
        self,
        config: Config,
        policy: Policy,
        *,
        prober: Prober,
        admin: Admin,
        store: Store,
        alerts: AlertSink,
        routing: RoutingPublisher,
        clock: Clock | None = None,
        mqtt: MqttPublisher | None = None,
        runner: CommandRunner | None = None,
        crash_after: str | None = None,
    ) -> None:
        self.cfg, self.policy = config, policy
        self.t = config.topology
        self.clock = clock or SystemClock()
        self.store = store
        self.store.acquire()
        self.book = RecordBook(self.store)
        self.observer = prober
        self.admin = admin
        self.mqtt = mqtt
        self.alerts = alerts
        self.routing = routing
        self.table = routing.table = RoutingTable(admin, self.book, self.t, self.store)
        runner = runner or SubprocessRunner()
        self.hooks = HookRunner(config.hooks, self.t, runner, alerts, self.store)
        self.executor = Executor(
            admin=self.admin,
            book=self.book,
            store=self.store,
            topology=self.t,
            policy=policy,
            routing=self.routing,
            alerts=self.alerts,
            hooks=self.hooks,
            crash_after=crash_after,
            wall=self.clock.wall,
            monotonic=self.clock.monotonic,
        )
        self.reconciler = Reconciler(self.executor, self.book, self.store, self.clock)
        self.memory = Memory()
        self.fencer = Fencer(
            self.admin,
            self.book,
            self.store,
            self.alerts,
            topology=self.t,
            policy=policy.fencing,
            runner=runner,
            hooks=self.hooks,
            adopted=lambda: self.memory.adopted,
        )
        self.view: TickView | None = None
        self.ops: dict[ShardName, asyncio.Task[None]] = {}
        self.fatal: StoreFailed | None = None  # set when the store failed: the daemon stops and run() raises it
        self.op_failures: dict[ShardName, tuple[int, float]] = {}  # shard -> (failures in a row, when)
        self.reasons: dict[ShardName, str] = {}
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.ticks = 0
        self.published: dict[ShardName, tuple[int, str]] = {}
        self.last_decision: Decision | None = None
        self.held = 0.0  # how long the last tick held the event loop (rest_after)

    @classmethod
    def from_config(cls, config: Config, policy: Policy, *, crash_after: str | None = None) -> Daemon:
        """The daemon on real servers: aiomysql probes and admin connections sharing one address
        book, the file store in ``state_dir``, alerts to the log and MQTT (when enabled)."""
        book = AddressBook(config.topology)
        clock = SystemClock()
        boots = BootTracker()  # the prober judges restarts; the admin's observations name the same boots
        x = policy.execution
        mqtt = (
            MqttPublisher(config.mqtt, client_id=f"idc-ha-{config.cluster}-{os.getpid()}")
            if config.mqtt.enabled
            else None
        )
        sinks: list[AlertSink] = [LogAlertSink()]
        if mqtt is not None:
            sinks.append(MqttAlertSink(mqtt, prefix=config.mqtt.topic_prefix, cluster=config.cluster))
        observer = Observer(config, book=book, clock=clock.monotonic, boots=boots)
        daemon = cls(
            config,
            policy,
            prober=observer,
            admin=MysqlAdmin(
                config,
                timeout=x.step_timeout_s,
                connect_timeout=config.probe.connect_timeout_s,
                book=book,
                clock=clock.monotonic,
                boots=boots,
            ),
            store=FileStore(config.state_dir),
            alerts=Deduplicating(*sinks, repeat_s=policy.alerts.repeat_s),
            routing=RoutingPublisher(mqtt, config.topology, prefix=config.mqtt.topic_prefix),
            mqtt=mqtt,
            clock=clock,
            crash_after=crash_after,
        )
        observer.on_lost(daemon.heard_loss)
        return daemon

    def heard_loss(self, node: NodeName) -> None:
        """A writable node's server closed the probe connection (it died, or was shut down): a
        round now, not at the next interval; the rounds decide what it means."""
        log.info("a writable node closed its probe connection; probing now", node=node)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # -- supervision
    def _supervise(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        async def loop() -> None:
            while not self._stop.is_set():
                try:
                    await factory()
                    return
                except asyncio.CancelledError:
                    raise
                except StoreFailed as e:
                    log.critical("the store failed; stopping", task=name, error=str(e), hint=e.hint)
                    self.fatal = e
                    self.stop()
                    return
                except Exception:
                    log.exception("task crashed; restarting", task=name)
                    await asyncio.sleep(1.0)

        self._tasks.append(asyncio.create_task(loop(), name=name))

    # -- the loop
    async def _tick_loop(self) -> None:
        interval = self.cfg.probe.interval_s
        while not self._stop.is_set():
            started = self.clock.monotonic()
            self._wake.clear()  # a wake() while this round runs brings the next one forward
            await self.tick()
            rest = self.rest_after(self.clock.monotonic() - started)
            if rest > 0:
                try:  # not cut short by wake(): 5,000 operations finishing would wake it 5,000 times
                    await asyncio.wait_for(self._stop.wait(), timeout=rest)
                except TimeoutError:
                    pass
            every = min(interval, HURRY_S) if self._confirming_refusal() else interval
            delay = max(0.0, every - (self.clock.monotonic() - started))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
            except TimeoutError:
                pass

    def _confirming_refusal(self) -> bool:
        """Some node refuses connections and its refusal is not yet old enough to confirm (with a
        round's slack): the rounds that confirm it come quickly. A refusal is cheap to re-probe
        (no timeout is waited) and short-lived, so this costs little. Not for a node whose shard
        an operation is already acting on: its rounds would only compete with the failover's
        statements for the CPU."""
        tracks = self.memory.tracks
        if tracks.at is None:
            return False
        window = self.policy.detection.confirm_refused_s + 2 * self.cfg.probe.interval_s
        acting = {shard for shard, t in self.ops.items() if not t.done()}
        nodes = self.t.node_by_name
        return any(
            s.refused and tracks.at - s.since < window and (n not in nodes or nodes[n].shard not in acting)
            for n, s in tracks.streaks.items()
        )

    def rest_after(self, took: float) -> float:
        """The least rest after a tick that took ``took`` seconds, of which it held the event loop
        ``self.held`` (decide and the bookkeeping around it, not its awaits): while operations run,
        as long as it held the loop, so they get at least half of it; but never so long that two
        probe rounds end up more than ``ROUND_GAP_S`` apart (the proof takes an acker unseen for
        longer than ``ACKER_GAP_S`` to have possibly reconnected). None when nothing runs."""
        if not any(not t.done() for t in self.ops.values()):
            return 0.0
        return max(0.0, min(self.held, ROUND_GAP_S - took))

    async def tick(self) -> Decision:
        version = self.book.version
        snap = await self.observer.round()
        held_since = time.perf_counter()  # the tick holds the event loop from here to each await
        # Records an operation wrote while the round ran are newer than what it saw of them.
        stale = self.book.written_since(version)
        control = self.store.load_control()
        wall = self.clock.wall()
        decision = decide(
            (snap,), self.t, self.policy, self.book.all(), control, wall=wall, memory=self.memory, stale=stale
        )
        self.memory = decision.memory
        self.ticks += 1
        # Durable first: nothing below may act on a record the store does not hold.
        held = 0.0
        if decision.records:
            held += time.perf_counter() - held_since
            await self.book.commit(*decision.records.values())
            held_since = time.perf_counter()
            for rec in decision.records.values():
                self.store.append(
                    "record",
                    shard=rec.shard,
                    epoch=rec.epoch,
                    sync=rec.sync,
                    primary=rec.primary,
                    ackers=rec.ackers,
                    op=rec.op.id if rec.op else None,
                    reason=rec.reason,
                )
                if rec.op is None:
                    self._publish_if_new(rec)
        for shard, reason in decision.reasons.items():
            if shard not in stale and self.reasons.get(shard) != reason:
                log.info("decision", shard=shard, reason=reason, tick=self.ticks)
                self.reasons[shard] = reason
        for alert in decision.alerts:
            self.alerts.emit(alert)
        for plan in decision.plans:
            self._start_op(plan)
        held += time.perf_counter() - held_since
        await self.reconciler.run(decision, lambda shard: self._busy(self.ops, shard))
        held_since = time.perf_counter()
        self.last_decision = decision
        self.view = tick_view(
            pid=os.getpid(),
            tick=self.ticks,
            snap=snap,
            decision=decision,
            control=control,
            shards=[s.name for s in self.t.shards],
            running=[s for s, task in self.ops.items() if not task.done()],
            wall=wall,
        )
        self.store.write_tick(self.view.model_dump(mode="json"))
        self.held = held + time.perf_counter() - held_since
        await self.book.sync()  # this tick's journal lines, durable off the loop
        return decision

    @staticmethod
    def _busy(tasks: dict[ShardName, asyncio.Task[None]], shard: ShardName) -> bool:
        t = tasks.get(shard)
        return t is not None and not t.done()

    def _start_op(self, plan: ShardPlan) -> None:
        if self._busy(self.ops, plan.shard) or self.reconciler.yield_to_op(plan.shard):
            return  # one hand per shard: a reconcile step ends (cancelled, or bounded by its timeout) first
        failures, last = self.op_failures.get(plan.shard, (0, -1e9))
        if self.clock.monotonic() - last < backoff_s(failures):
            return
        self.store.append("decision", shard=plan.shard, op=plan.op_id, reason=plan.reason)

        async def run() -> None:
            try:
                await self.executor.run(plan)
                self.op_failures.pop(plan.shard, None)
            except IdcHaError as e:
                self.op_failures[plan.shard] = (failures + 1, self.clock.monotonic())
                what = {"shard": plan.shard, "op": plan.op_id, "error": str(e), "hint": e.hint}
                log.warning("operation paused; resumes on a later tick", **what)
            except Exception:
                self.op_failures[plan.shard] = (failures + 1, self.clock.monotonic())
                log.exception("operation crashed; resumes on a later tick", shard=plan.shard, op=plan.op_id)
            finally:
                self.wake()

        self.ops[plan.shard] = asyncio.create_task(run(), name=f"op:{plan.shard}")

    def _publish_if_new(self, rec: ShardRecord) -> None:
        key = (rec.epoch, rec.primary)
        if self.published.get(rec.shard) != key:
            self.routing.publish(rec, reason=rec.reason)
            self.published[rec.shard] = key

    async def _republish_routing(self) -> None:
        for rec in self.book.all().values():
            if rec.op is None:
                self.routing.publish(rec, reason="periodic")
                self.published[rec.shard] = (rec.epoch, rec.primary)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self.stop)
        self.store.append("daemon_start", pid=os.getpid(), cluster=self.cfg.cluster)
        size = {"nodes": len(self.t.nodes), "shards": len(self.t.shards)}
        log.info("idc-ha daemon starting", cluster=self.cfg.cluster, **size, pid=os.getpid())
        if self.mqtt is not None:
            self._supervise("mqtt", self.mqtt.run)
        await self._republish_routing()
        sched = AsyncIOScheduler(event_loop=loop)
        every = self.policy.execution.fence_redial_s
        sched.add_job(
            self.fencer.sweep, "interval", seconds=every, max_instances=1, coalesce=True, id="fence-on-return"
        )
        sched.add_job(
            self._republish_routing, "interval", seconds=30, max_instances=1, coalesce=True, id="republish-routing"
        )
        sched.add_job(self.table.flush, "interval", seconds=0.5, max_instances=1, coalesce=True, id="routing-table")
        sched.start()
        self._supervise("tick", self._tick_loop)
        sd_notify("READY=1")
        await self._stop.wait()
        log.info("idc-ha daemon stopping")
        sched.shutdown(wait=False)
        work = [t for t in self._tasks if t.get_name() != "mqtt"] + list(self.ops.values()) + self.reconciler.running()
        work += self.hooks.running()
        for t in work:
            t.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        if self.mqtt is not None:
            await self.mqtt.drain(2.0)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.fencer.close()
        await self.observer.close()
        await self.admin.close()
        try:
            self.store.append("daemon_stop", pid=os.getpid())
            self.store.release()
        except OSError as e:
            log.error("the store could not be closed cleanly", error=str(e))
        if self.fatal is not None:
            raise self.fatal
