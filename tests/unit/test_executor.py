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
from idc_ha.act.routing import RoutingPublisher
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import FileStore
from idc_ha.decide.plans import failover_plan
from idc_ha.errors import StepFailed
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName, ShardName, SyncState
from idc_ha.model.policy import Execution, Policy
from idc_ha.model.state import ShardRecord
from idc_ha.notify.alerts import MemoryAlertSink
from idc_ha.ports import Admin
from sim.fleet import Fleet
from sim.fleet.statements import io_thread_id

from .builders import TOPO, WALL, failover_op, in_idc, pos, record

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
        if io == "Yes":  # IDC1 went silent: Sx's IO thread still says connected, waiting to read
            sx.replica.io, sx.replica.waits_on_silence = "Yes", True
        sx.apply_per_tick = rate
        assert len(sx.replica.relay) == 50 - applied and sx.replica.io_pos == RECEIVED
        made.append(c)
        return c

    yield make
    for c in made:
        assert c.forbidden() == [], "a KILL QUERY or master semi-sync OFF was sent"


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


async def test_a_connected_io_thread_is_killed_before_the_stop(
    new_cluster: Callable[..., Fleet], tmp_path: Path
) -> None:
    """IDC1 silent (Sx's IO thread still says connected): KILL of the IO thread, then the stop (on
    MariaDB 10.11 the stop alone takes 2 s on a silent source); IDC1 refusing (reconnecting): the
    stop alone, the kill would change nothing."""
    c = new_cluster(io="Yes")
    d = started(c, tmp_path)
    await resume(d)
    assert_promoted_without_loss(c, d.book)
    on_sx = [x for x in c.statements(SX) if x.startswith(("KILL", "STOP SLAVE IO_THREAD"))]
    assert on_sx[:2] == [f"KILL CONNECTION {io_thread_id(c.nodes[SX])}", "STOP SLAVE IO_THREAD"], on_sx
    c2 = new_cluster()
    d2 = started(c2, tmp_path / "refused")
    await resume(d2)
    assert not [x for x in c2.statements(SX) if x.startswith("KILL")]


@pytest.mark.parametrize("code", [1095, 1227, 1094])
async def test_a_refused_kill_of_the_io_thread_only_costs_speed(
    new_cluster: Callable[..., Fleet], tmp_path: Path, code: int
) -> None:
    """The KILL before STOP SLAVE IO_THREAD is a speed-up: refused (no grant: 1095, 1227) or too
    late (1094), the failover goes on and ends promoted with nothing lost, saying so."""
    c = new_cluster(io="Yes")  # IDC1 silent: Sx's IO thread still says connected
    c.nodes[SX].kill_error = code
    d = started(c, tmp_path)
    await resume(d)
    assert_promoted_without_loss(c, d.book)
    [detail] = [e["detail"] for e in d.store.journal() if e["event"] == "step_done" and e["step"] == "stop_receiving"]
    assert ("not killed first" in detail) == (code != 1094) and "(killed first)" not in detail, detail
    assert c.forbidden() == []


def test_the_fleet_flags_a_kill_of_anything_but_the_io_thread() -> None:
    """forbidden() names a KILL of a session (it might be waiting for its ack), not of the IO thread."""
    c = Fleet(TOPO).arrange_home(seq=10)
    c.record = True
    asyncio.run(c.run(SX, f"KILL CONNECTION {io_thread_id(c.nodes[SX])}"))
    assert c.forbidden() == []
    with pytest.raises(AssertionError):
        asyncio.run(c.run(M, "KILL 42"))
    assert [s.sql for s in c.forbidden()] == ["KILL 42"]


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
    assert [x for x in c.statements(SX) if not x.startswith(("SHOW", "SELECT", "KILL"))][:2] == FIRST_ON_SX[variant]
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
    assert [x for x in c.statements(SX) if not x.startswith(("SELECT", "KILL"))] == ["STOP SLAVE IO_THREAD"]
    assert c.nodes[SX].replica is not None and c.nodes[SX].read_only
    rec = d.book.get(SHARD)
    assert rec is not None and rec.op is not None
    assert (rec.epoch, rec.primary, rec.op.promotion_point) == (1, M, None)
