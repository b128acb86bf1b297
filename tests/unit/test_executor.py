"""The executor against an in-memory MariaDB (``sim.fleet``): an IDC failover promotes the acker
without losing one relay-log transaction, a restarted daemon finishes it from any crash point, and
it stops rather than promote or open on anything it has not verified.

The scenario throughout: IDC1 died (``shard1-m`` and ``shard1-ms`` with it) while ``shard1-sx``,
the acker in IDC2, held 50 transactions in its relay log that its SQL thread had not applied yet.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from idc_ha.act.executor import Executor
from idc_ha.act.fence import Fencer, pending
from idc_ha.act.routing import RoutingPublisher
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import FileStore
from idc_ha.decide.plan import OpenWrites, ShardPlan, StartReplica
from idc_ha.decide.plans import failover_plan
from idc_ha.errors import StepFailed
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName, ShardName, SyncState
from idc_ha.model.policy import Execution, Policy
from idc_ha.model.state import ShardRecord
from idc_ha.notify.alerts import MemoryAlertSink
from idc_ha.ports import Admin
from sim.fleet import Fleet

from .builders import TOPO, WALL, failover_op, in_idc, pos, record, settle

SHARD = ShardName("shard1")
M, MS, SX, CAS, REM = (NodeName(f"shard1-{s}") for s in ("m", "ms", "sx", "cas", "rem"))
RECEIVED = pos(TOPO, SHARD, 150)  # everything M wrote; Sx had received all of it when IDC1 died
POLICY = Policy(execution=Execution(relay_apply_timeout_s=2.0, semisync_verify_timeout_s=0.1))
BOUND = 5.0  # no test awaits longer than this

# Every durable effect of the failover in order: statements that changed a server, journal lines
# and record writes. The happy path must produce exactly these; the crash test cuts after each.
HAPPY_EFFECTS = (
    "journal op_run",
    "record shard1 epoch 1",  # the unreachable old primary handed to the Fencer, durably
    "journal step_done fence",
    "shard1-sx: STOP SLAVE IO_THREAD",
    "journal step_done stop_receiving",
    "journal step_done wait_relay_applied",
    "record shard1 epoch 1",
    "journal step_done record_promotion_point",
    "shard1-sx: STOP SLAVE",
    "shard1-sx: RESET SLAVE ALL",
    "journal step_done detach",
    "shard1-sx: SET GLOBAL rpl_semi_sync_master_wait_point='AFTER_SYNC'",
    f"shard1-sx: SET GLOBAL rpl_semi_sync_master_timeout={SEMISYNC_TIMEOUT_NEVER}",
    "shard1-sx: SET GLOBAL rpl_semi_sync_master_wait_no_slave=ON",
    "shard1-sx: SET GLOBAL rpl_semi_sync_master_enabled=ON",
    "journal step_done enable_master_semisync",
    "shard1-cas: SET GLOBAL rpl_semi_sync_slave_enabled=ON",
    "shard1-cas: STOP SLAVE IO_THREAD",
    "shard1-cas: START SLAVE IO_THREAD",
    "journal step_done arm_acker",
    "journal step_done verify_semisync",
    "record shard1 epoch 2",
    "journal step_done commit_layout",
    "shard1-sx: SET GLOBAL read_only=OFF",
    "journal step_done open_writes",
    "journal step_done publish_routing",
    "journal op_done",
    "record shard1 epoch 2, op cleared",
)


class Crash(Exception):
    """The daemon dies here: neither StepFailed nor NodeError, so nothing in the executor catches it."""


class EffectStore(FileStore):
    """A real FileStore that reports each durable write once it is made, so a test can crash right after."""

    def __init__(self, state_dir: Path, on_effect: Callable[[str], None] | None) -> None:
        super().__init__(state_dir)
        self.on_effect = on_effect

    def append(self, event: str, **fields: Any) -> None:
        super().append(event, **fields)
        if self.on_effect is not None:
            self.on_effect(f"journal {event} {fields.get('step', '')}".strip())

    def write_records(self, records: Iterable[ShardRecord], *, durable: bool = True) -> None:
        records = list(records)
        super().write_records(records, durable=durable)
        for r in records:
            if self.on_effect is not None:
                self.on_effect(f"record {r.shard} epoch {r.epoch}" + ("" if r.op else ", op cleared"))


@dataclass
class Daemon:
    """One controller process: its store, record book, alerts and executor, over the shared servers."""

    store: EffectStore
    book: RecordBook
    alerts: MemoryAlertSink
    executor: Executor

    def steps(self, event: str) -> list[str]:
        return [e["step"] for e in self.store.journal() if e["event"] == event]


def daemon(cluster: Fleet, state_dir: Path, *, on_effect: Callable[[str], None] | None = None) -> Daemon:
    """A freshly started daemon over ``state_dir`` (what it finds there is what it resumes)."""
    store = EffectStore(state_dir, on_effect)
    book, alerts = RecordBook(store), MemoryAlertSink()
    ex = Executor(
        admin=cast(Admin, cluster),
        book=book,
        store=store,
        topology=TOPO,
        policy=POLICY,
        routing=RoutingPublisher(None, TOPO, prefix="idc-ha"),
        alerts=alerts,
        wall=lambda: WALL,
        monotonic=lambda: 0.0,  # the fleet's clock
    )
    return Daemon(store, book, alerts, ex)


def started(cluster: Fleet, state_dir: Path, *, fence: tuple[NodeName, ...] = (M,)) -> Daemon:
    """A daemon whose store holds the IDC_SAFE home record with the failover decide() started."""
    op = failover_op(SHARD).model_copy(update={"seen_received": RECEIVED, "fence": fence})
    d = daemon(cluster, state_dir)
    d.book.put(record(TOPO, SHARD, op=op))
    return d


async def resume(d: Daemon) -> None:
    """Run the plan of the operation in the daemon's record from the top, as every tick does."""
    rec = d.book.get(SHARD)
    assert rec is not None and rec.op is not None
    async with asyncio.timeout(BOUND):
        await d.executor.run(failover_plan(rec.op))


@pytest.fixture
def new_cluster() -> Iterator[Callable[..., Fleet]]:
    """Builds the scenario's servers; afterwards, checks nothing ever sent a KILL or turned master
    semi-sync OFF on any of them."""
    made: list[Fleet] = []

    def make(*, sql: str = "Yes", io: str = "Connecting", applied: int = 0, rate: int = 20) -> Fleet:
        """IDC1 dead; Sx received 50 transactions from M and applied ``applied`` of them, then its
        SQL (and, with io="No", IO) thread was left as given; it applies ``rate`` per tick."""
        c = Fleet(TOPO).arrange_home(seq=100)
        c.write(M, 50)
        c.tick(apply=False)  # Sx's IO thread receives them; its SQL thread lags
        sx = c.nodes[SX]
        sx.apply_per_tick = applied
        c.tick()
        assert sx.replica is not None
        sx.replica.sql = sql
        for n in in_idc(TOPO, "IDC1"):
            c.nodes[n].dead = True
        c.tick(apply=False)
        if io == "No":
            sx.replica.io = "No"  # someone ran STOP SLAVE
        sx.apply_per_tick = rate
        assert len(sx.replica.relay) == 50 - applied and sx.replica.io_pos == RECEIVED
        made.append(c)
        return c

    yield make
    for c in made:
        assert c.forbidden() == [], "a KILL or master semi-sync OFF was sent"


def end_state(c: Fleet, book: RecordBook) -> dict[str, Any]:
    """What a failover leaves behind, once replication has settled: the record and every server."""
    c.tick()
    c.tick()
    nodes: dict[str, Any] = {}
    for name in (M, MS, SX, CAS, REM):
        n, r = c.nodes[name], c.nodes[name].replica
        repl = None if r is None else (r.host, r.port, r.io, r.sql, r.use_gtid, tuple(r.relay), r.io_pos, r.semi)
        nodes[name] = dict(
            dead=n.dead,
            read_only=n.read_only,
            binlog=tuple(n.binlog),
            slave_pos=n.slave_pos,
            master=(n.master_enabled, n.wait_point, n.master_timeout, n.wait_no_slave),
            slave_enabled=n.slave_enabled,
            replica=repl,
        )
    return {"record": book.get(SHARD), "nodes": nodes}


def assert_promoted_without_loss(c: Fleet, book: RecordBook) -> None:
    sx = c.nodes[SX]
    assert sx.binlog == c.nodes[M].binlog, "Sx must hold every transaction M wrote, in order"
    assert sx.discarded == [] and sx.traps == []
    assert not sx.read_only and sx.replica is None
    assert (sx.master_enabled, sx.wait_point, sx.master_timeout) == (True, "AFTER_SYNC", SEMISYNC_TIMEOUT_NEVER)
    o = c.observation(SX)
    assert o.semisync_master is not None and o.semisync_master.clients == 1
    acker = c.observation(CAS)
    assert acker.replica is not None and acker.replica.source == SX
    assert acker.semisync_slave is not None and acker.semisync_slave.status
    assert acker.received().contains(sx.binlog_pos)
    rec = book.get(SHARD)
    assert rec is not None and rec.op is None
    assert (rec.epoch, rec.sync, rec.primary, rec.ackers) == (2, SyncState.NODE_SAFE, SX, (CAS,))
    assert rec.promotion_point == RECEIVED
    assert rec.fence_pending == (M, MS) and rec.out == (M, MS)


# -- 1. the happy path ---------------------------------------------------------------------------------


async def test_idc_failover_promotes_the_acker_with_its_whole_relay_log(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """With IDC1 dead, the failover makes Sx a semi-sync primary acked by the cascade, at epoch 2
    NODE_SAFE, after applying all 50 transactions its relay log held."""
    c = new_cluster(rate=5)  # a slow SQL thread: applying the relay log takes ten observations
    effects: list[str] = []
    d = started(c, tmp_path)
    c.on_effect = d.store.on_effect = effects.append
    await resume(d)
    assert_promoted_without_loss(c, d.book)
    assert tuple(effects) == HAPPY_EFFECTS
    assert d.steps("step_done") == [s.kind for s in failover_plan(failover_op(SHARD)).steps]
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_DONE]


# -- 2. a crash anywhere, then a restarted daemon ------------------------------------------------------


def crash_after(k: int) -> Callable[[str], None]:
    seen: list[str] = []

    def effect(label: str) -> None:
        seen.append(label)
        if len(seen) == k:
            raise Crash(label)

    return effect


@pytest.mark.parametrize(
    "cut", range(1, len(HAPPY_EFFECTS) + 1), ids=[f"{k:02d} {e}" for k, e in enumerate(HAPPY_EFFECTS, 1)]
)
async def test_a_restarted_daemon_finishes_the_failover_from_any_crash_point(
    new_cluster: Callable[..., Fleet], tmp_path: Path, cut: int
) -> None:
    """A daemon that dies right after any effect, restarted on the same store, ends exactly where an
    uninterrupted failover ends, with nothing lost."""
    happy = new_cluster()
    ok = started(happy, tmp_path / "happy")
    await resume(ok)
    expected = end_state(happy, ok.book)

    c = new_cluster()
    crash = crash_after(cut)
    first = started(c, tmp_path / "state")
    c.on_effect = first.store.on_effect = crash
    with pytest.raises(Crash, match=re.escape(HAPPY_EFFECTS[cut - 1])):
        await resume(first)
    c.on_effect = None
    first.store.release()

    second = daemon(c, tmp_path / "state")
    rec = second.book.get(SHARD)
    assert rec is not None
    if rec.op is not None:  # the operation is still recorded: the restarted daemon resumes it
        await resume(second)
    assert end_state(c, second.book) == expected
    assert_promoted_without_loss(c, second.book)


async def test_a_resumed_failover_keeps_the_promotion_point_it_recorded_first(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """Clients that wrote on the opened Sx before the crashed daemon came back do not move the
    recorded promotion point, and the cascade still receives their writes."""
    c = new_cluster()
    first = started(c, tmp_path)
    c.on_effect = first.store.on_effect = crash_after(HAPPY_EFFECTS.index("journal step_done publish_routing") + 1)
    with pytest.raises(Crash):
        await resume(first)
    c.on_effect = None
    first.store.release()
    c.write(SX, 5)  # the routing message is out: clients write on Sx
    second = daemon(c, tmp_path)
    await resume(second)
    rec = second.book.get(SHARD)
    assert rec is not None and rec.op is None and rec.promotion_point == RECEIVED
    c.tick()
    assert c.observation(CAS).received() == c.nodes[SX].binlog_pos != RECEIVED


# -- 3. a stopped SQL thread ----------------------------------------------------------------------------

STOPPED = {
    "sql-stopped": dict(sql="No", io="Connecting", applied=10),
    "both-stopped": dict(sql="No", io="No", applied=10),
}
FIRST_ON_SX = {
    "sql-stopped": ["START SLAVE SQL_THREAD", "STOP SLAVE IO_THREAD"],
    # 10 applied transactions past the start of relay-bin.000001 (4 + 10 * 100 bytes)
    "both-stopped": [
        "CHANGE MASTER TO MASTER_USE_GTID=no, RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=1004",
        "START SLAVE SQL_THREAD",
    ],
}


@pytest.mark.parametrize("variant", STOPPED)
async def test_a_stopped_sql_thread_resumes_from_its_relay_log(
    new_cluster: Callable[..., Fleet], tmp_path: Path, variant: str
) -> None:
    """With Sx's SQL thread (or both its threads) stopped before the failover, nothing STARTs a
    thread while both are stopped in GTID mode, and all 50 relay-log transactions are applied."""
    c = new_cluster(**STOPPED[variant])
    d = started(c, tmp_path)
    await resume(d)
    assert [x for x in c.statements(SX) if not x.startswith("SHOW")][:2] == FIRST_ON_SX[variant]
    assert c.nodes[SX].traps == []
    assert_promoted_without_loss(c, d.book)


@pytest.mark.parametrize("variant", STOPPED)
async def test_a_stopped_sql_thread_survives_a_crash_at_any_point(
    new_cluster: Callable[..., Fleet], tmp_path: Path, variant: str
) -> None:
    """With Sx's SQL thread stopped before the failover, a daemon crash after any effect up to the
    detach, then a restart, still ends promoted with nothing lost (past the detach the path is the
    happy one, cut everywhere above)."""
    dry = new_cluster(**STOPPED[variant])
    effects: list[str] = []
    ok = started(dry, tmp_path / "dry")
    dry.on_effect = ok.store.on_effect = effects.append
    await resume(ok)
    expected = end_state(dry, ok.book)
    cuts = effects[: effects.index("journal step_done detach") + 1]
    for cut, label in enumerate(cuts, 1):
        c = new_cluster(**STOPPED[variant])
        first = started(c, tmp_path / f"cut{cut}")
        c.on_effect = first.store.on_effect = crash_after(cut)
        with pytest.raises(Crash):
            await resume(first)
        c.on_effect = None
        first.store.release()
        second = daemon(c, tmp_path / f"cut{cut}")
        rec = second.book.get(SHARD)
        if rec is not None and rec.op is not None:
            await resume(second)
        assert end_state(c, second.book) == expected, f"crash after {cut}: {label}"
        assert c.nodes[SX].discarded == [] and c.nodes[SX].traps == [], f"crash after {cut}: {label}"


# -- 4. a candidate that lost part of its relay log ----------------------------------------------------


async def test_a_candidate_missing_what_the_proof_saw_is_never_promoted(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """Sx restarted after the proof and lost the 30 relay-log transactions it had not applied: the
    failover stops at record_promotion_point with FAILOVER_STUCK, and Sx is never detached or opened."""
    c = new_cluster(applied=20)
    c.restart(SX)
    assert len(c.nodes[SX].discarded) == 30
    d = started(c, tmp_path)
    for _ in range(2):  # the next tick's resume stops at the same place
        with pytest.raises(StepFailed, match="part of its relay log is gone"):
            await resume(d)
    assert d.steps("step_done") == ["fence", "stop_receiving", "wait_relay_applied"] * 2
    assert d.steps("step_failed") == ["record_promotion_point"] * 2
    stuck = [a for a in d.alerts.alerts if a.kind == AlertKind.FAILOVER_STUCK]
    assert len(stuck) == 2 and all(a.node == SX and a.shard == SHARD for a in stuck)
    assert c.statements(SX) == ["STOP SLAVE IO_THREAD"]
    assert c.nodes[SX].replica is not None and c.nodes[SX].read_only
    rec = d.book.get(SHARD)
    assert rec is not None and rec.op is not None
    assert (rec.epoch, rec.primary, rec.op.promotion_point) == (1, M, None)


# -- 5. verify before commit, verified settings before open --------------------------------------------


async def test_verify_semisync_waits_until_the_cascade_holds_all_the_new_primary_holds(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The cascade acks but has not received the 50 transactions Sx applied: verify_semisync fails
    with FAILOVER_STUCK and nothing is committed or opened; once they arrive, the failover finishes."""
    c = new_cluster()
    c.nodes[CAS].stalled = True  # connected, but nothing arrives
    d = started(c, tmp_path)
    with pytest.raises(StepFailed, match="shard1-cas has received"):
        await resume(d)
    assert d.steps("step_failed") == ["verify_semisync"]
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_STUCK]
    assert c.nodes[SX].read_only
    rec = d.book.get(SHARD)
    assert rec is not None and (rec.epoch, rec.primary) == (1, M)
    c.nodes[CAS].stalled = False
    await resume(d)
    assert_promoted_without_loss(c, d.book)


async def test_the_verify_semisync_alert_names_its_shard(new_cluster: Callable[..., Fleet], tmp_path: Path) -> None:
    """The FAILOVER_STUCK alert of a verify that times out names the shard, like every other alert."""
    c = new_cluster()
    c.nodes[CAS].stalled = True
    d = started(c, tmp_path)
    with pytest.raises(StepFailed):
        await resume(d)
    assert [(a.shard, a.idc) for a in d.alerts.alerts] == [(SHARD, "IDC2")]


VERIFIED = dict(master_enabled=True, wait_point="AFTER_SYNC", master_timeout=SEMISYNC_TIMEOUT_NEVER, wait_no_slave=True)
UNVERIFIED = [
    pytest.param(dict(master_enabled=False), id="master-off"),
    pytest.param(dict(wait_point="AFTER_COMMIT"), id="after-commit"),
    pytest.param(dict(master_timeout=10_000), id="timeout-10s"),
    pytest.param(dict(wait_no_slave=False), id="wait-no-slave-off"),
]


@pytest.mark.parametrize("settings", UNVERIFIED)
async def test_open_writes_refuses_a_node_whose_master_semisync_is_not_verified(
    new_cluster: Callable[..., Fleet], tmp_path: Path, settings: dict[str, Any]
) -> None:
    """OpenWrites re-reads the master semi-sync settings and leaves the node read-only unless all of
    them are what the failover set."""
    c = new_cluster()
    for k, v in {**VERIFIED, **settings}.items():
        setattr(c.nodes[SX], k, v)
    d = started(c, tmp_path)
    rec = d.book.get(SHARD)
    assert rec is not None and rec.op is not None
    only_open = ShardPlan(shard=SHARD, op_id=rec.op.id, steps=(OpenWrites(node=SX, reason="test"),), reason="t")
    with pytest.raises(StepFailed, match="not opening writes"):
        async with asyncio.timeout(BOUND):
            await d.executor.run(only_open)
    assert c.nodes[SX].read_only and "SET GLOBAL read_only=OFF" not in c.statements(SX)


# -- a stray writable node ------------------------------------------------------------------------------


async def test_a_stray_writable_node_that_could_not_be_fenced_is_fenced_when_it_returns(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """A writable remote the failover could not reach to fence is fenced by the Fencer when it
    answers again, so Sx is not left as one of two writable nodes."""
    c = new_cluster()
    rem = c.nodes[REM]
    rem.read_only, rem.dead = False, True  # seen writable by decide(), then unreachable at the fence
    d = started(c, tmp_path, fence=(M, REM))
    await resume(d)
    assert not c.nodes[SX].read_only  # the failover went on: "unreachable, fenced on return"
    assert REM in pending(d.book)
    rem.dead = False
    fencer = Fencer(cast(Admin, c), d.book, d.store, d.alerts)
    async with asyncio.timeout(BOUND):
        await fencer.sweep()
        await settle(fencer)
    assert rem.read_only, "two writable nodes: the new primary and the stray"
    assert REM not in pending(d.book)


async def test_a_reachable_stray_that_cannot_be_fenced_keeps_writes_closed(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """A writable remote that answers but whose fence is stuck (a commit waits for an ack there)
    stops the failover before writes open, with an alert; it is handed to the Fencer meanwhile."""
    c = new_cluster()
    rem = c.nodes[REM]
    rem.read_only, rem.wait_sessions = False, 1
    d = started(c, tmp_path, fence=(M, REM))
    with pytest.raises(StepFailed, match="could not be made read-only"):
        await resume(d)
    assert c.nodes[SX].read_only, "writes opened while another node stayed writable"
    assert REM in pending(d.book)
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_STUCK]


# -- 8. an acker restarted with skip-slave-start (relay log kept, relay-log.info maybe stale) -----------


@pytest.mark.parametrize("stale", [False, True], ids=["info-current", "info-stale"])
async def test_a_failover_resumed_after_the_acker_crashed_applies_its_whole_relay_log(
    new_cluster: Callable[..., Fleet], tmp_path: Path, stale: bool
) -> None:
    """Sx crashed mid-failover and came back with skip-slave-start: both threads stopped, Gtid_IO_Pos
    empty, relay-log.info possibly pointing at the start of its relay log (measured after a crash).
    The executor finds the first unapplied transaction by reading the relay log, applies the 40
    left, and promotes with every one of M's transactions: none re-applied, none discarded."""
    c = new_cluster(applied=10)
    c.restart(SX, skip_slave_start=True, stale_info=stale)
    r = c.nodes[SX].replica
    assert r is not None and (r.io, r.sql, str(r.io_pos)) == ("No", "No", "")
    d = started(c, tmp_path)
    await resume(d)
    assert_promoted_without_loss(c, d.book)
    resumed = [x for x in c.statements(SX) if x.startswith("CHANGE MASTER TO MASTER_USE_GTID=no")]
    assert resumed == ["CHANGE MASTER TO MASTER_USE_GTID=no, RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=1004"]


async def test_start_replica_applies_the_relay_log_before_the_io_thread_reconnects(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The acker restarted (skip-slave-start, stale relay-log.info) while M is alive: the reconcile
    step applies what its relay log holds from the first unapplied transaction, only then switches
    back to GTID mode and starts both threads; it acks again and nothing was discarded."""
    c = Fleet(TOPO).arrange_home(seq=100)
    c.write(M, 30)
    sx = c.nodes[SX]
    sx.apply_per_tick = 0
    c.tick()  # Sx received 30 it has not applied
    c.restart(SX, skip_slave_start=True, stale_info=True)
    sx.apply_per_tick = None
    d = daemon(c, tmp_path)
    detail = await asyncio.wait_for(d.executor.reconcile_step(StartReplica(node=SX, source=M, reason="t")), BOUND)
    assert "relay log applied" in detail
    stmts = [x for x in c.statements(SX) if not x.startswith("SHOW")]
    assert stmts[0] == "CHANGE MASTER TO MASTER_USE_GTID=no, RELAY_LOG_FILE='relay-bin.000001', RELAY_LOG_POS=4"
    assert stmts[1:3] == ["START SLAVE SQL_THREAD", "STOP SLAVE"]
    assert "MASTER_USE_GTID=slave_pos" in stmts[3] and stmts[4] == "START SLAVE"
    # The one START with both threads stopped comes after everything received was applied.
    assert sx.discarded == [] and sx.traps == ["START SLAVE"]
    assert sx.slave_pos == pos(TOPO, SHARD, 130)
    o = await c.observe(SX)
    assert o.replica is not None and o.replica.io_connected and o.semisync_slave is not None and o.semisync_slave.status
    assert c.forbidden() == []


async def test_start_replica_stops_on_a_sql_error_and_keeps_the_relay_log(tmp_path: Path) -> None:
    """Applying the relay log fails (the SQL thread stops with an error): the step alerts and raises,
    and never starts the IO thread, which would discard the rest of the relay log."""
    c = Fleet(TOPO).arrange_home(seq=100)
    c.write(M, 30)
    sx = c.nodes[SX]
    sx.apply_per_tick = 0
    c.tick()
    c.restart(SX, skip_slave_start=True)
    r = sx.replica
    assert r is not None
    r.log = [*r.log[:20], r.log[10], *r.log[20:]]  # a transaction the SQL thread will refuse (1950)
    sx.apply_per_tick = None
    d = daemon(c, tmp_path)
    with pytest.raises(StepFailed, match="SQL thread error 1950"):
        await asyncio.wait_for(d.executor.reconcile_step(StartReplica(node=SX, source=M, reason="t")), BOUND)
    assert "START SLAVE" not in c.statements(SX) and sx.discarded == []
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_STUCK]


async def test_a_group_cut_off_half_way_in_the_relay_log_is_not_waited_for(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """The link went in the middle of transaction 151: its GTID event is in Sx's relay log, its
    commit is not, and it was never acknowledged. After a crash of Sx (skip-slave-start) the
    failover applies the 50 complete transactions and promotes, instead of waiting for 151."""
    from idc_ha.model.gtid import Gtid

    c = new_cluster(applied=10)
    r = c.nodes[SX].replica
    assert r is not None
    r.partial = Gtid(0, c.nodes[M].server_id, 151)
    c.restart(SX, skip_slave_start=True)
    d = started(c, tmp_path)
    await resume(d)
    assert_promoted_without_loss(c, d.book)


async def test_arming_an_acker_that_acks_with_the_setting_off_switches_the_setting_on(tmp_path: Path) -> None:
    """The acker still acks on the role it negotiated, but rpl_semi_sync_slave_enabled was switched
    off: the reconcile switches it back on (the next reconnect would come back async otherwise),
    without restarting its IO thread."""
    from idc_ha.decide.plan import ArmAcker

    c = Fleet(TOPO).arrange_home()
    c.nodes[SX].slave_enabled = False
    d = daemon(c, tmp_path)
    detail = await asyncio.wait_for(d.executor.reconcile_step(ArmAcker(node=SX, source=M, reason="t")), BOUND)
    assert "switched back on" in detail
    assert c.statements(SX) == ["SET GLOBAL rpl_semi_sync_slave_enabled=ON"] and c.nodes[SX].slave_enabled
