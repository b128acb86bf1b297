"""Automatic IDC failover on the real lab: RPO=0, the 30 s promise, and when not to act."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from idc_ha.model.ids import SyncState
from idc_ha.model.state import ShardRecord
from sim.chaos import kill_idc as chaos_kill_idc
from sim.harness import Daemon, Lab, kill_idc
from sim.site import SiteWorkload
from tests.integration.helpers import MqttCollector, ctl_conn, idc_ha_cli, sql, writable

RTO_PROMISE_S = 30.0
SHARDS = ("meta", "shard1", "shard2")


def alerts_topic(lab: Lab) -> str:
    return f"idc-ha/{lab.config().cluster}/alerts/#"


def collector(lab: Lab, topic: str) -> MqttCollector:
    return MqttCollector("127.0.0.1", lab.info["mqtt"]["port"], topic)


async def run_workload_through(
    lab: Lab,
    fault: object,
    *,
    warmup: float = 2.0,
    recover_timeout: float = RTO_PROMISE_S,
    expect_recovery: bool = True,
    moving: set[str] | None = None,
) -> tuple[dict[str, dict[str, object]], float, bool]:
    """Write to every shard, call ``fault()`` (returns (start, end) wall times), wait for writes
    on a new node of every shard (of ``moving``, default all) after it, then verify the ledger.
    Returns (per-shard report, fault time, recovered)."""
    wl = SiteWorkload(lab.config(), lab.info)  # the writers run at the client site
    await wl.start()
    try:
        await asyncio.sleep(warmup)
        start, end = await asyncio.to_thread(fault)  # type: ignore[arg-type]
        recovered = (
            await wl.wait_all_acked_after(end, timeout=recover_timeout, shards=moving) if expect_recovery else False
        )
        await asyncio.sleep(0.5)
    finally:
        await wl.stop()
    return await wl.verify(fault_at=start, fault_over=end), start, recovered


def assert_no_acked_write_lost(report: dict[str, dict[str, object]]) -> None:
    for s, r in report.items():
        assert r["error"] is None, r
        assert r["lost"] == 0, f"{s}: lost acknowledged writes {r['lost_sample']}"
        assert r["duplicated"] == 0 and r["unexpected"] == 0, r
        assert int(r["acked"]) > 0  # type: ignore[call-overload]


def wait_all_in_idc2(daemon: Daemon, what: str = "every shard in IDC2") -> dict[str, ShardRecord]:
    """Until every shard's failover to IDC2 is finished (within the 30 s promise)."""
    return daemon.wait_records(
        lambda r: all(r[s].primary == f"{s}-sx" and r[s].op is None for s in SHARDS),
        timeout=RTO_PROMISE_S,
        what=what,
    )


def assert_primaries_in_idc2(lab: Lab, daemon: Daemon) -> None:
    recs = daemon.records()
    for s in SHARDS:
        rec = recs[s]
        assert rec.primary == f"{s}-sx" and rec.ackers == (f"{s}-cas",) and rec.sync == SyncState.NODE_SAFE, rec
        assert rec.epoch == 2 and rec.op is None and rec.promotion_point is not None
        assert writable(lab, f"{s}-sx") is True
        for n in (f"{s}-cas", f"{s}-rem"):
            assert writable(lab, n) is False
        c = ctl_conn(lab, f"{s}-sx")
        st = {r["Variable_name"]: r["Value"] for r in sql(c, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'")[0]}
        c.close()
        assert st["Rpl_semi_sync_master_status"] == "ON" and int(st["Rpl_semi_sync_master_clients"]) >= 1, st


def test_idc1_killed_under_write_load(lab: Lab, daemon: Daemon) -> None:
    """Every IDC1 server SIGKILLed under load: all 3 shards write in IDC2 within 30 s, no acked write lost."""
    with collector(lab, f"idc-ha/{lab.config().cluster}/routing/#") as routing:
        report, _, recovered = asyncio.run(run_workload_through(lab, lambda: kill_idc(lab, "IDC1")))
        assert recovered, report
        assert_no_acked_write_lost(report)
        for s, r in report.items():
            assert r["rto_s"] is not None and float(r["rto_s"]) < RTO_PROMISE_S, r  # type: ignore[arg-type]
            assert r["final_node"] == f"{s}-sx" and r["final_epoch"] == 2
        assert_primaries_in_idc2(lab, daemon)
        for s in SHARDS:
            msg = routing.wait_for(lambda m, s=s: m[1]["shard"] == s and m[1]["epoch"] == 2, timeout=5)
            assert msg is not None and msg[1]["node"] == f"{s}-sx" and msg[1]["idc"] == "IDC2"
    journal = daemon.journal()
    for s in SHARDS:
        steps = [e["step"] for e in journal if e["event"] == "step_done" and e["shard"] == s]
        assert steps.index("verify_semisync") < steps.index("commit_layout") < steps.index("open_writes")


def test_idc1_frozen_under_write_load_fails_over_and_stays_proven(lab: Lab, daemon: Daemon) -> None:
    """Every IDC1 server SIGSTOPped under load (a hung IDC: connections open, nothing answers):
    all 3 shards write in IDC2 within 30 s, no acked write lost, and no shard is recorded ASYNC
    after its layout committed (a round slowed by the frozen servers saw a new primary before its
    semi-sync was on: every shard went ASYNC with a critical alert in 3 of 6 trials)."""
    from sim.chaos import freeze_idc, thaw_idc

    def freeze() -> tuple[float, float]:
        t = time.time()
        freeze_idc(lab.workdir, "IDC1")
        return t, time.time()

    try:
        with collector(lab, alerts_topic(lab)) as alerts:
            report, _, recovered = asyncio.run(run_workload_through(lab, freeze))
            assert recovered, report
            assert_no_acked_write_lost(report)
            wait_all_in_idc2(daemon)
            time.sleep(2.0)  # a few more ticks on the new layout
            assert_primaries_in_idc2(lab, daemon)
            degraded = [
                m for m in alerts.messages if m[1]["kind"] == "sync_degraded" and m[1].get("node", "").endswith("-sx")
            ]
            assert not degraded, degraded
    finally:
        thaw_idc(lab.workdir, "IDC1")


def test_main_city_down_promotes_nothing_and_raises_a_critical_alert(lab: Lab, daemon: Daemon) -> None:
    """IDC1 and IDC2 both dead: no promotion anywhere, and a critical main_city_down alert on MQTT."""
    with collector(lab, alerts_topic(lab)) as alerts:
        chaos_kill_idc(lab.workdir, "IDC1,IDC2")  # one request: no failover can start in between
        hit = alerts.wait_for(lambda m: m[1]["kind"] == "main_city_down", timeout=20)
        assert hit is not None, alerts.messages
        assert hit[0].endswith("/alerts/critical/main_city_down") and hit[1]["severity"] == "critical"
        assert "promote-city" in hit[1]["hint"]
        time.sleep(3)
    recs = daemon.records()
    for s in SHARDS:
        assert recs[s].primary == f"{s}-m" and recs[s].epoch == 1 and recs[s].op is None
        assert writable(lab, f"{s}-rem") is False
    assert not [e for e in daemon.journal() if e["event"] in ("decision", "step_done")]


def test_paused_daemon_only_alerts_then_acts_on_resume(lab: Lab, daemon: Daemon) -> None:
    """Paused, a dead IDC1 changes nothing but alerts; after resume the failover runs, losing nothing."""

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return idc_ha_cli(lab, *args)

    assert cli("pause").returncode == 0
    with collector(lab, alerts_topic(lab)) as alerts:

        def fault() -> tuple[float, float]:
            start, end = kill_idc(lab, "IDC1")
            hit = alerts.wait_for(lambda m: m[1]["kind"] == "paused", timeout=20)
            assert hit is not None, alerts.messages
            time.sleep(3)
            recs = daemon.records()
            assert all(recs[s].primary == f"{s}-m" and recs[s].op is None for s in SHARDS), recs
            assert all(writable(lab, f"{s}-sx") is False for s in SHARDS)
            assert cli("resume").returncode == 0
            return start, end

        report, _, recovered = asyncio.run(run_workload_through(lab, fault, recover_timeout=60))
    assert recovered
    assert_no_acked_write_lost(report)
    assert_primaries_in_idc2(lab, daemon)


def test_async_shard_is_not_promoted_and_the_alert_says_why(lab: Lab, daemon: Daemon) -> None:
    """A shard whose commits went through without an ack stays put when IDC1 dies; the others move."""
    c = ctl_conn(lab, "shard1-m")
    sql(c, "SET GLOBAL rpl_semi_sync_master_enabled=OFF")
    c.close()
    from tests.integration.helpers import app_conn

    a = app_conn(lab, "shard1-m")
    sql(
        a,
        "CREATE DATABASE IF NOT EXISTS t3",
        "CREATE TABLE IF NOT EXISTS t3.a (id INT PRIMARY KEY)",
        "INSERT INTO t3.a VALUES (1)",
    )
    a.close()
    daemon.wait_records(lambda r: r["shard1"].sync == SyncState.ASYNC, timeout=10, what="shard1 ASYNC")
    with collector(lab, alerts_topic(lab)) as alerts:
        kill_idc(lab, "IDC1")
        recs = daemon.wait_records(
            lambda r: all(r[s].primary == f"{s}-sx" and r[s].op is None for s in ("meta", "shard2")),
            timeout=RTO_PROMISE_S,
            what="meta and shard2 in IDC2",
        )
        hit = alerts.wait_for(lambda m: m[1]["kind"] == "not_proven_safe" and m[1]["shard"] == "shard1", timeout=10)
    assert hit is not None
    assert "ASYNC" in hit[1]["reason"] and "semi-sync master is off" in hit[1]["reason"]
    time.sleep(2)
    recs = daemon.records()
    assert recs["shard1"].primary == "shard1-m" and recs["shard1"].op is None and recs["shard1"].epoch == 1
    assert writable(lab, "shard1-sx") is False


@pytest.mark.parametrize(
    "step",
    [
        "fence",
        "stop_receiving",
        "wait_relay_applied",
        "record_promotion_point",
        "detach",
        "enable_master_semisync",
        "arm_acker",
        "verify_semisync",
        "commit_layout",
        "open_writes",
        "publish_routing",
    ],
)
def test_daemon_crash_after_each_step_resumes_to_completion(lab: Lab, tmp_path: Path, step: str) -> None:
    """The daemon dies right after one executor step; restarted, it finishes the failover with 0 lost writes."""
    crashing = Daemon(
        lab.config_path, tmp_path / "crash.log", env={"IDC_HA_TEST_CRASH_AFTER": f"shard1:{step}"}
    ).start()
    restarted = Daemon(lab.config_path, tmp_path / "restart.log")
    try:
        crashing.wait_safe(3, timeout=20)

        def fault() -> tuple[float, float]:
            start, end = kill_idc(lab, "IDC1")
            assert crashing.wait_exit(30) == 75, "the fault point did not fire"
            j = crashing.journal()
            assert [e for e in j if e["event"] == "step_done" and e["step"] == step and e["shard"] == "shard1"]
            restarted.start()
            return start, end

        report, _, recovered = asyncio.run(run_workload_through(lab, fault))
        assert recovered, report
        assert_no_acked_write_lost(report)
        restarted.wait_records(
            lambda r: all(r[s].op is None and r[s].epoch == 2 for s in SHARDS),
            timeout=20,
            what="every failover finished",
        )
        assert_primaries_in_idc2(lab, restarted)
        ops_run = [e for e in restarted.journal() if e["event"] == "op_run"]
        assert ops_run, "the restarted daemon did not resume from the journal"
    finally:
        crashing.stop()
        restarted.stop()


def test_a_short_network_blip_of_idc1_causes_no_failover(lab: Lab, daemon: Daemon) -> None:
    """IDC1 cut off for one second and back: probes time out, but nothing is promoted."""
    from sim.chaos import heal_idc, isolate_idc

    isolate_idc(lab.workdir, "IDC1")
    time.sleep(1.0)
    heal_idc(lab.workdir, "IDC1")
    time.sleep(6.0)
    recs = daemon.records()
    assert all(recs[s].primary == f"{s}-m" and recs[s].epoch == 1 and recs[s].op is None for s in SHARDS), recs
    assert not [e for e in daemon.journal() if e["event"] in ("decision", "step_done")]
    assert all(writable(lab, f"{s}-m") for s in SHARDS)


@pytest.mark.parametrize("stopped", ["sql_thread", "both_threads"])
def test_acked_commits_only_in_the_ackers_relay_log_survive_the_failover(
    lab: Lab, daemon: Daemon, stopped: str
) -> None:
    """Commits the acker received but never applied are all on the new primary: the relay log is
    applied, never discarded. sql_thread: its SQL thread was stopped before IDC1 died. both_threads:
    a DBA pauses the controller once IDC1 is dead and stops the acker's IO thread too, to keep its
    relay log (STOP SLAVE keeps the connect error, so it still witnesses the loss), then resumes.
    An IO thread stopped by hand *before* the loss would witness nothing, and the IDC could not be
    confirmed down: see the unit tests."""
    from tests.integration.helpers import app_conn

    a = app_conn(lab, "shard1-m")
    sql(a, "CREATE DATABASE IF NOT EXISTS t5", "CREATE TABLE IF NOT EXISTS t5.a (id INT PRIMARY KEY)")
    time.sleep(0.5)
    sx = ctl_conn(lab, "shard1-sx")
    sql(sx, "STOP SLAVE SQL_THREAD")
    for i in range(200):
        sql(a, f"INSERT INTO t5.a VALUES ({i})")  # each one acked by shard1-sx (its IO thread runs)
    a.close()
    if stopped == "both_threads":
        assert idc_ha_cli(lab, "pause").returncode == 0
        kill_idc(lab, "IDC1")
        deadline = time.monotonic() + 10
        while sql(sx, "SHOW SLAVE STATUS")[0][0]["Slave_IO_Running"] != "Connecting":
            assert time.monotonic() < deadline, "the acker never noticed the loss"
            time.sleep(0.1)
        sql(sx, "STOP SLAVE IO_THREAD")
    st = sql(sx, "SHOW SLAVE STATUS", "SELECT @@gtid_slave_pos AS applied")
    sx.close()
    assert st[0][0]["Gtid_IO_Pos"] != st[1][0]["applied"], "the acker should hold unapplied relay log"
    if stopped == "both_threads":
        assert st[0][0]["Slave_IO_Running"] == "No" and st[0][0]["Slave_SQL_Running"] == "No"
        assert idc_ha_cli(lab, "resume").returncode == 0
    else:
        kill_idc(lab, "IDC1")
    daemon.wait_records(
        lambda r: r["shard1"].primary == "shard1-sx" and r["shard1"].op is None,
        timeout=RTO_PROMISE_S,
        what="shard1 promoted",
    )
    new = app_conn(lab, "shard1-sx")
    rows = sql(new, "SELECT COUNT(*) AS n FROM t5.a")[0][0]["n"]
    new.close()
    assert rows == 200


def test_a_lost_store_after_a_failover_does_not_undo_it(lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    """The store is wiped after the failover: a new daemon adopts nothing, fences nothing, alerts."""
    import shutil

    kill_idc(lab, "IDC1")
    wait_all_in_idc2(daemon)
    daemon.stop()
    shutil.rmtree(daemon.store.dir)
    fresh = Daemon(lab.config_path, tmp_path / "fresh.log")
    with collector(lab, alerts_topic(lab)) as alerts:
        fresh.start()
        try:
            hit = alerts.wait_for(lambda m: m[1]["kind"] == "unadopted", timeout=15)
            assert hit is not None and "home layout" in hit[1]["reason"]
            time.sleep(2)
            assert fresh.records() == {}
            assert all(writable(lab, f"{s}-sx") for s in SHARDS), "a new daemon fenced the real primaries"
        finally:
            fresh.stop()
