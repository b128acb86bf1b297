"""Fence on return: an old primary cut off by a partition never takes acknowledged writes again."""

from __future__ import annotations

import subprocess
import threading
import time

import pymysql

from sim.chaos import heal_idc, isolate_idc
from sim.harness import Daemon, Lab
from sim.lab.control import restart_nodes
from tests.integration.helpers import MqttCollector, app_conn, ctl_conn, root_conn, sql, writable
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
    topic = f"idc-ha/{lab.config().cluster}/alerts/#"
    with MqttCollector("127.0.0.1", lab.info["mqtt"]["port"], topic) as alerts:  # subscribed before the fault
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
                lambda r: r["shard1"].primary == "shard1-sx" and r["shard1"].op is None,
                timeout=30,
                what="shard1 in IDC2",
            )
            heal_idc(lab.workdir, "IDC1")
            hit = alerts.wait_for(lambda x: x[1]["kind"] == "fence_blocked" and x[1]["node"] == "shard1-m", timeout=30)
            assert hit is not None and "never KILL" in hit[1]["hint"], [m[1]["kind"] for m in alerts.messages]
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


def _waiting_commit(lab: Lab, node: str, acker: str, row: int) -> tuple[threading.Thread, dict[str, str], str]:
    """A commit of ``row`` waiting on ``node`` for an ack that cannot come (the acker's IO thread
    stopped); returns the writer, its outcome and the node's binlog position before the commit."""
    c = app_conn(lab, node)
    sql(c, "CREATE DATABASE IF NOT EXISTS w", "CREATE TABLE IF NOT EXISTS w.t (id INT PRIMARY KEY)")
    c.close()
    wait_until(lambda: _rows(lab, acker, row, "w.t") is not None, 10, f"{acker} has w.t")
    sql(ctl_conn(lab, acker), "STOP SLAVE IO_THREAD")
    [[before]] = sql(ctl_conn(lab, node), "SELECT @@gtid_binlog_pos AS pos")
    outcome: dict[str, str] = {}

    def commit() -> None:
        c = app_conn(lab, node, read_timeout=30)
        try:
            sql(c, f"INSERT INTO w.t VALUES ({row})")
            outcome["ok"] = "OK"
        except Exception as e:  # the read timeout: the suite never hangs
            outcome["error"] = repr(e)
        finally:
            c.close()

    writer = threading.Thread(target=commit, daemon=True)
    writer.start()
    wait_until(lambda: _waiters(lab, node), 10, f"a commit waiting on {node}")
    return writer, outcome, str(before["pos"])


def _waiters(lab: Lab, node: str) -> list[int]:
    rows = sql(
        ctl_conn(lab, node),
        "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'Waiting for semi-sync ACK from slave'",
    )[0]
    return [int(r["ID"]) for r in rows]


def _rows(lab: Lab, node: str, row: int, table: str = "w.t") -> int | None:
    try:
        return int(sql(root_conn(lab, node), f"SELECT COUNT(*) AS n FROM {table} WHERE id = {row}")[0][0]["n"])
    except pymysql.MySQLError:
        return None


def test_what_each_way_through_a_blocked_fence_leaves_behind(lab: Lab) -> None:
    """On an old primary out of the layout, a commit waiting for an ack blocks its fence. The ways
    through, measured (docs/fencing.md): a lock-wait-bounded fence fails fast (1205) instead of
    hanging; KILL of the waiter's connection gives the client no OK but leaves the row committed
    (errant); SIGKILL and a restart as a replica (init_rpl_role=SLAVE, the lab's fence command)
    gives the client no OK and truncates the row and its GTID: nothing errant is left."""
    # KILL (connection) on shard1-m.
    writer, outcome, _ = _waiting_commit(lab, "shard1-m", "shard1-sx", 11)
    m = ctl_conn(lab, "shard1-m", read_timeout=10)
    t0 = time.monotonic()
    try:
        sql(m, "SET STATEMENT lock_wait_timeout=1 FOR SET GLOBAL read_only=ON")
        raise AssertionError("the bounded fence went through while a commit waits")
    except pymysql.err.OperationalError as e:
        assert e.args[0] == 1205, e
    assert time.monotonic() - t0 < 5, "the bounded fence did not fail fast"
    [waiter] = _waiters(lab, "shard1-m")
    sql(m, f"KILL {waiter}")
    writer.join(timeout=15)
    assert "ok" not in outcome and "error" in outcome, outcome
    assert _rows(lab, "shard1-m", 11) == 1, "a killed waiter's row stays committed: the node is errant"
    sql(m, "SET GLOBAL read_only=ON")  # the fence goes through once the waiter is gone
    # SIGKILL and a restart as a replica on shard2-m.
    writer, outcome, before = _waiting_commit(lab, "shard2-m", "shard2-sx", 22)
    restart_nodes(lab.workdir, ["shard2-m"], as_replica=True)
    writer.join(timeout=15)
    assert "ok" not in outcome and "error" in outcome, outcome
    [[after]] = sql(root_conn(lab, "shard2-m"), "SELECT @@gtid_binlog_pos AS pos, @@read_only AS ro")
    assert int(after["ro"]) == 1
    assert _rows(lab, "shard2-m", 22) == 0, "the never-acknowledged row survived the restart as a replica"
    assert str(after["pos"]) == before, f"the truncated commit's GTID is still in the binlog: {after} vs {before}"
