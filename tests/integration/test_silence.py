"""Silence on the real lab (issue 8): blips change nothing, one vantage point never acts, a cut
between the two IDCs promotes nothing, and an isolated IDC fails over with nothing lost."""

from __future__ import annotations

import asyncio
import struct
import threading
import time

import pymysql
import pytest
from pymysql.constants import COMMAND

from idc_ha.act.admin import MysqlAdmin
from idc_ha.act.wake import WAKER_SERVER_IDS
from idc_ha.errors import NodeError
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.state import ShardRecord
from sim.chaos import (
    cut_controller,
    flap_link,
    freeze_idc,
    freeze_machine,
    heal_idc,
    heal_partition,
    isolate_idc,
    partition,
    reconnect_controller,
    thaw_idc,
    thaw_machine,
    unflap_link,
)
from sim.harness import Daemon, Lab
from tests.integration.helpers import app_conn, ctl_conn, root_conn, sql, writable
from tests.integration.test_failover import (
    RTO_PROMISE_S,
    SHARDS,
    alerts_topic,
    assert_no_acked_write_lost,
    collector,
    run_workload_through,
    wait_all_in_idc2,
)


def _acked(lab: Lab, node: str) -> int:
    c = ctl_conn(lab, node)
    try:
        [row] = sql(c, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_yes_tx'")[0]
        return int(row["Value"])
    finally:
        c.close()


def _home(recs: dict[str, ShardRecord]) -> bool:
    return all(recs[s].primary == f"{s}-m" and recs[s].epoch == 1 and recs[s].op is None for s in SHARDS)


def _machine_of(lab: Lab, node: str) -> str:
    return str(lab.node(node)["machine"])


def blips(lab: Lab, cycles: int) -> int:
    """``cycles`` times: shard1-m's machine frozen 1 s, its link flapped 1 s, all of IDC1 frozen
    2 s, each followed by a rest; the number of blips run."""
    m = _machine_of(lab, "shard1-m")
    n = 0
    for _ in range(cycles):
        freeze_machine(lab.workdir, m)
        time.sleep(1.0)
        thaw_machine(lab.workdir, m)
        time.sleep(2.5)
        flap_link(lab.workdir, m)
        time.sleep(1.0)
        unflap_link(lab.workdir, m)
        time.sleep(2.5)
        freeze_idc(lab.workdir, "IDC1")
        time.sleep(2.0)
        thaw_idc(lab.workdir, "IDC1")
        time.sleep(3.0)
        n += 3
    return n


def _run_blips(lab: Lab, daemon: Daemon, cycles: int) -> None:
    def fault() -> tuple[float, float]:
        t = time.time()
        done = blips(lab, cycles)
        print(f"{done} blips without a failover")
        return t, time.time()

    with collector(lab, alerts_topic(lab)) as alerts:
        report, _, _ = asyncio.run(run_workload_through(lab, fault, expect_recovery=False))
        started = [m for m in alerts.messages if m[1]["kind"] in ("failover_started", "flap_guard")]
    assert not started, started
    assert _home(daemon.records()), daemon.records()
    assert not [e for e in daemon.journal() if e["event"] in ("decision", "step_done")]
    assert_no_acked_write_lost(report)
    assert all(writable(lab, f"{s}-m") for s in SHARDS)


def test_blips_under_load_cause_no_failover(lab: Lab, daemon: Daemon) -> None:
    """One cycle (3 blips) in the regular suite; ``-m chaos`` runs eleven (33)."""
    _run_blips(lab, daemon, 1)


@pytest.mark.chaos
def test_many_blips_under_load_cause_no_failover(lab: Lab, daemon: Daemon) -> None:
    _run_blips(lab, daemon, 11)


def test_controller_cut_off_from_idc1_fails_nothing_over_and_alerts(lab: Lab, daemon: Daemon) -> None:
    """Only the controller loses IDC1, for 8 s, under load: IDC2 keeps replicating from it
    (heartbeats and all), so no primary is witnessed dead; nothing moves, primary_unreachable names
    the primaries, and the writers, at the client site (a namespace of their own, not the
    controller's), write on to IDC1 throughout with nothing lost."""
    seen: dict[str, object] = {}

    def fault() -> tuple[float, float]:
        t = time.time()
        cut_controller(lab.workdir, "IDC1")
        try:
            seen["hit"] = alerts.wait_for(lambda m: m[1]["kind"] == "primary_unreachable", timeout=15)
            time.sleep(8.0)
            c = ctl_conn(lab, "shard1-sx")
            [seen["row"]] = sql(c, "SHOW SLAVE STATUS")[0]
            c.close()
        finally:
            reconnect_controller(lab.workdir, "IDC1")
        return t, time.time()

    with collector(lab, alerts_topic(lab)) as alerts:
        report, _, _ = asyncio.run(run_workload_through(lab, fault, expect_recovery=False))
        started = [m for m in alerts.messages if m[1]["kind"] == "failover_started"]
    hit, row = seen.get("hit"), seen.get("row")
    assert hit is not None, alerts.messages
    assert "no replica confirms" in hit[1]["reason"]  # type: ignore[index]
    assert row is not None and row["Slave_IO_Running"] == "Yes", row  # type: ignore[index]
    assert not started, started
    assert_no_acked_write_lost(report)
    for s in SHARDS:  # the writers never stopped: acks on the home primary all through the cut
        r = report[s]
        assert r["final_node"] == f"{s}-m" and r["nodes_written"] == [f"{s}-m"], r
        assert float(r["max_gap_s"]) < 3.0, r  # type: ignore[arg-type]
    time.sleep(2.0)
    assert _home(daemon.records())
    assert not [e for e in daemon.journal() if e["event"] in ("decision", "step_done")]


def _status(lab: Lab, node: str, name: str) -> int:
    c = ctl_conn(lab, node)
    try:
        return int(sql(c, f"SHOW GLOBAL STATUS LIKE '{name}'")[0][0]["Value"])
    finally:
        c.close()


def _file_mode_semisync_dump(lab: Lab, node: str, file: str, pos: int) -> pymysql.connections.Connection:
    """A semi-sync client dumping from ``file:pos`` (file mode), as act/wake.py must not: the
    counter-example that shows why the start position matters."""
    n, admin = lab.node(node), MysqlAdmin(lab.config(), timeout=5.0, connect_timeout=1.0)
    c = pymysql.connect(
        host=n["host"],
        port=n["port"],
        user=admin.repl_user,
        password=admin.repl_password,
        connect_timeout=2,
        read_timeout=5,
        write_timeout=5,
    )
    sql(c, "SET @master_binlog_checksum=@@global.binlog_checksum, @rpl_semi_sync_slave=1")
    c._execute_command(COMMAND.COM_BINLOG_DUMP, struct.pack("<IHI", pos, 0, WAKER_SERVER_IDS[1]) + file.encode())
    c._read_packet()
    return c


def test_a_silent_semisync_client_acknowledges_nothing(lab: Lab) -> None:
    """What wakes the MariaDB 10.11 ack-receiver deadlock (decide/wake.py) must never release a
    waiting commit, nor wait on the binlog's LOCK_log: with the acker's IO thread stopped, commit A
    waits on shard1-m and commit B queues behind it, holding LOCK_log (SHOW MASTER STATUS now
    hangs). The controller's silent semi-sync client, started as act/wake.py starts it (GTID mode,
    from what the acker holds), still attaches and registers (clients 0 -> 1), and both commits
    still wait, unacknowledged, for 2 s; once detached the server drops it. Then why the start
    matters: a semi-sync client started in file mode at the binlog's end (read before B) releases
    commit A at once, though no replica holds it (MariaDB counts the start as an ack)."""
    c = app_conn(lab, "shard1-m")
    sql(c, "CREATE DATABASE IF NOT EXISTS w", "CREATE TABLE IF NOT EXISTS w.t (id INT PRIMARY KEY)")
    c.close()
    sx = ctl_conn(lab, "shard1-sx")
    sql(sx, "STOP SLAVE IO_THREAD")
    deadline = time.monotonic() + 10
    while _status(lab, "shard1-m", "Rpl_semi_sync_master_clients") != 0:
        assert time.monotonic() < deadline, "the acker's dump thread did not go"
        time.sleep(0.1)
    outcome: dict[int, str] = {}

    def commit(i: int) -> None:
        c = app_conn(lab, "shard1-m", read_timeout=40)
        try:
            sql(c, f"INSERT INTO w.t VALUES ({i})")
            outcome[i] = "ok"
        except Exception as e:  # the read timeout: the suite never hangs
            outcome[i] = repr(e)
        finally:
            c.close()

    writers = [threading.Thread(target=commit, args=(i,), daemon=True) for i in (1, 2)]
    writers[0].start()
    deadline = time.monotonic() + 10
    while _status(lab, "shard1-m", "Rpl_semi_sync_master_wait_sessions") < 1:
        assert time.monotonic() < deadline and not outcome, f"commit A did not wait: {outcome}"
        time.sleep(0.05)
    [[end]] = sql(ctl_conn(lab, "shard1-m"), "SHOW MASTER STATUS")
    yes_before = _status(lab, "shard1-m", "Rpl_semi_sync_master_yes_tx")
    writers[1].start()
    time.sleep(0.5)
    with pytest.raises(pymysql.err.OperationalError):  # B holds LOCK_log: what act/wake.py must not need
        sql(ctl_conn(lab, "shard1-m", read_timeout=1), "SHOW MASTER STATUS")

    async def attach_and_hold() -> int:
        admin = MysqlAdmin(lab.config(), timeout=5.0, connect_timeout=1.0)
        node = NodeName("shard1-m")
        try:
            held = (await admin.observe(NodeName("shard1-sx"))).received()
            detach = await admin.attach_silent_replica(node, server_id=WAKER_SERVER_IDS[0], gtid=held)
            try:
                clients = _status(lab, "shard1-m", "Rpl_semi_sync_master_clients")
                await asyncio.sleep(2.0)
            finally:
                detach()
            return clients
        finally:
            await admin.close()

    assert asyncio.run(attach_and_hold()) == 1, "the silent client did not register as semi-sync"
    assert not outcome, f"a commit was released while only the silent client was connected: {outcome}"
    assert _status(lab, "shard1-m", "Rpl_semi_sync_master_wait_sessions") == 1
    assert _status(lab, "shard1-m", "Rpl_semi_sync_master_yes_tx") == yes_before
    deadline = time.monotonic() + 10
    while _status(lab, "shard1-m", "Rpl_semi_sync_master_clients") != 0:
        assert time.monotonic() < deadline, "the server kept the detached client"
        time.sleep(0.1)
    # From the end of the binlog, file mode: the start itself acknowledges commit A.
    counter = _file_mode_semisync_dump(lab, "shard1-m", str(end["File"]), int(end["Position"]))
    try:
        writers[0].join(timeout=15)
        assert outcome.get(1) == "ok", (
            f"a start at the binlog's end no longer acknowledges (revisit act/wake.py): {outcome}"
        )
        assert _status(lab, "shard1-m", "Rpl_semi_sync_master_yes_tx") == yes_before + 1
    finally:
        counter.close()
    sql(sx, "START SLAVE IO_THREAD")
    writers[1].join(timeout=15)
    assert outcome.get(2) == "ok", outcome
    sx.close()


def test_the_silent_client_is_refused_a_position_the_binlogs_no_longer_hold(lab: Lab) -> None:
    """The wake's dump runs in GTID mode: from a position in a purged binlog file the server refuses
    it (1236) and nothing registers. In file mode (the GTID variables lost) the same request would
    start at the oldest file that is left, past commits an acker could lack."""
    c = app_conn(lab, "shard1-m")
    sql(c, "CREATE DATABASE IF NOT EXISTS w", "CREATE TABLE IF NOT EXISTS w.t (id INT PRIMARY KEY)")
    m = root_conn(lab, "shard1-m")  # PURGE needs BINLOG ADMIN, which the controller does not hold
    [[old]] = sql(m, "SELECT @@gtid_binlog_pos AS pos")
    sql(c, "INSERT INTO w.t VALUES (0)")  # the transaction after `old`: in the file purged below
    sql(m, "FLUSH BINARY LOGS")
    sql(c, "INSERT INTO w.t VALUES (1)")
    [[newest]] = sql(m, "SHOW MASTER STATUS")
    sql(m, f"PURGE BINARY LOGS TO '{newest['File']}'")
    c.close()

    async def attach() -> NodeError:
        admin = MysqlAdmin(lab.config(), timeout=5.0, connect_timeout=1.0)
        try:
            with pytest.raises(NodeError) as refused:
                detach = await admin.attach_silent_replica(
                    NodeName("shard1-m"), server_id=WAKER_SERVER_IDS[2], gtid=GtidPos.parse(str(old["pos"]))
                )
                detach()
            return refused.value
        finally:
            await admin.close()

    e = asyncio.run(attach())
    assert e.code == 1236, e
    assert _status(lab, "shard1-m", "Rpl_semi_sync_master_clients") == 1  # the acker alone
    m.close()


def test_idc1_idc2_partition_promotes_nothing_and_writes_resume_on_heal(lab: Lab, daemon: Daemon) -> None:
    """IDC1 and IDC2 cannot reach each other for 8 s while the controller sees both: commits wait
    on the primaries (no acker), nothing is promoted, a commits_stuck alert names the wait, and on
    heal the waiting commits complete on every shard: 0 acknowledged writes lost.

    Most runs a primary's ack receiver deadlocks as the acker reconnects (MariaDB 10.11,
    decide/wake.py): the daemon then wakes it (the journal shows it), and a shard left without
    acks fails the test naming it, with the wakes tried."""
    resumed: set[str] = set()

    def fault() -> tuple[float, float]:
        t = time.time()
        partition(lab.workdir, "IDC1,IDC2")
        time.sleep(8.0)
        heal_partition(lab.workdir, "IDC1,IDC2")
        # The waiting commits complete once the ackers are back: acks flow again on every primary.
        before = {s: _acked(lab, f"{s}-m") for s in SHARDS}
        deadline = time.monotonic() + RTO_PROMISE_S
        while time.monotonic() < deadline and len(resumed) < len(SHARDS):
            resumed.update(s for s in SHARDS if _acked(lab, f"{s}-m") > before[s])
            time.sleep(0.2)
        return t, time.time()

    with collector(lab, alerts_topic(lab)) as alerts:
        report, _, _ = asyncio.run(run_workload_through(lab, fault, expect_recovery=False))
        stuck = [m for m in alerts.messages if m[1]["kind"] == "commits_stuck"]
        started = [m for m in alerts.messages if m[1]["kind"] == "failover_started"]
    assert not started, started
    assert _home(daemon.records())
    assert stuck and "no acker connected" in stuck[0][1]["reason"], alerts.messages
    assert all(writable(lab, f"{s}-m") for s in SHARDS)
    wakes = [e for e in daemon.journal() if e.get("step") == "wake_ack_receiver"]
    assert resumed == set(SHARDS), f"no ack since the heal on {sorted(set(SHARDS) - resumed)}; wakes: {wakes}"
    assert_no_acked_write_lost(report)
    for s in SHARDS:  # writes went on after the heal, on the same primaries
        assert report[s]["final_node"] == f"{s}-m", report[s]


def test_idc1_isolated_under_load_fails_over_with_nothing_lost(lab: Lab, daemon: Daemon) -> None:
    """Every link of IDC1 down (peers time out) under load: all shards move to IDC2, 0 lost."""

    def fault() -> tuple[float, float]:
        t = time.time()
        isolate_idc(lab.workdir, "IDC1")
        return t, time.time()

    try:
        report, _, recovered = asyncio.run(run_workload_through(lab, fault))
        assert recovered, report
        assert_no_acked_write_lost(report)
        for s, r in report.items():
            assert r["final_node"] == f"{s}-sx" and float(r["rto_s"]) < RTO_PROMISE_S, r  # type: ignore[arg-type]
        wait_all_in_idc2(daemon)
    finally:
        heal_idc(lab.workdir, "IDC1")
