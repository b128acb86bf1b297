"""Fence on return: an old primary cut off by a partition never takes acknowledged writes again."""

from __future__ import annotations

import subprocess
import threading
import time

import pymysql

from sim.chaos import heal_idc, isolate_idc
from sim.harness import Daemon, Lab
from tests.integration.helpers import MqttCollector, app_conn, sql, writable
from tests.integration.test_failover import wait_all_in_idc2

SHARDS = ("meta", "shard1", "shard2")


def wait_until(pred: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(what)


def test_partitioned_primaries_fail_over_and_are_fenced_when_the_link_returns(lab: Lab, daemon: Daemon) -> None:
    """IDC1 cut off (servers alive, writable): its shards move to IDC2; on heal the old primaries turn read-only."""
    assert all(writable(lab, f"{s}-m") for s in SHARDS)
    isolate_idc(lab.workdir, "IDC1")
    wait_all_in_idc2(daemon, "every shard in IDC2 after the cut")
    heal_idc(lab.workdir, "IDC1")
    wait_until(lambda: all(writable(lab, f"{s}-m") is False for s in SHARDS), 15, "old primaries fenced")
    fenced = {e["node"] for e in daemon.journal() if e["event"] == "fenced"}
    assert {f"{s}-m" for s in SHARDS} <= fenced
    assert all(not r.fence_pending for r in daemon.records().values())
    assert all(writable(lab, f"{s}-sx") for s in SHARDS)


def test_a_commit_stranded_on_the_old_primary_is_never_acknowledged(lab: Lab, daemon: Daemon) -> None:
    """A commit left waiting on the cut-off primary blocks its fence; it is alerted, never killed, never acked."""
    c = app_conn(lab, "shard1-m")
    sql(c, "CREATE DATABASE IF NOT EXISTS t4", "CREATE TABLE IF NOT EXISTS t4.a (id INT PRIMARY KEY)")
    c.close()
    m = lab.node("shard1-m")
    peer_ns = next(n["netns"] for n in lab.info["nodes"] if n["machine"] != m["machine"] and n["idc"] == "IDC1")
    isolate_idc(lab.workdir, "IDC1")
    # A client inside IDC1 still reaches the old primary: its commit waits for an ack that cannot come.
    stranded = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            peer_ns,
            "timeout",
            "60",
            "mariadb",
            f"-h{m['host']}",
            f"-P{m['port']}",
            f"-u{lab.info['app_user']}",
            f"-p{lab.info['app_password']}",
            "-e",
            "INSERT INTO t4.a VALUES (7)",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        daemon.wait_records(
            lambda r: r["shard1"].primary == "shard1-sx" and r["shard1"].op is None, timeout=30, what="shard1 in IDC2"
        )
        with MqttCollector("127.0.0.1", lab.info["mqtt"]["port"], f"idc-ha/{lab.config().cluster}/alerts/#") as alerts:
            heal_idc(lab.workdir, "IDC1")
            hit = alerts.wait_for(lambda x: x[1]["kind"] == "fence_blocked" and x[1]["node"] == "shard1-m", timeout=15)
        assert hit is not None and "never KILL" in hit[1]["hint"]
        assert stranded.poll() is None, "the stranded commit must still be waiting, not acknowledged"
        result: dict[str, object] = {}

        def late_write() -> None:
            try:
                w = app_conn(lab, "shard1-m", read_timeout=4)
                sql(w, "INSERT INTO t4.a VALUES (8)")
                result["acked"] = True
            except pymysql.MySQLError as e:
                result["error"] = e

        t = threading.Thread(target=late_write, daemon=True)
        t.start()
        t.join(timeout=10)
        assert "acked" not in result, "a write on the fenced-out old primary was acknowledged"
        new = app_conn(lab, "shard1-sx")
        assert not sql(new, "SELECT id FROM t4.a")[0]
        new.close()
    finally:
        stranded.kill()
        stranded.wait(timeout=10)
