"""Fence on return: an old primary cut off by a partition never takes acknowledged writes again."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

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


def _stranded_insert(lab: Lab, node: str, row: int, table: str = "t4.a") -> subprocess.Popen[str]:
    """A client inside the node's IDC (on another machine) inserts ``row``; run after the cut, its
    commit waits for an ack that cannot come. Bounded: the client dies after 60 s."""
    m = lab.node(node)
    peer_ns = next(n["netns"] for n in lab.info["nodes"] if n["machine"] != m["machine"] and n["idc"] == m["idc"])
    return subprocess.Popen(
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
            f"INSERT INTO {table} VALUES ({row})",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_shard1_in_idc2(daemon: Daemon) -> None:
    daemon.wait_records(
        lambda r: r["shard1"].primary == "shard1-sx" and r["shard1"].op is None, timeout=30, what="shard1 in IDC2"
    )


def _late_write_acked(lab: Lab, node: str, row: int) -> bool:
    """Whether a new write on ``node`` is acknowledged within 10 s (it must not be)."""
    result: dict[str, object] = {}

    def late_write() -> None:
        try:
            w = app_conn(lab, node, read_timeout=4)
            sql(w, f"INSERT INTO t4.a VALUES ({row})")
            result["acked"] = True
        except pymysql.MySQLError as e:
            result["error"] = e

    t = threading.Thread(target=late_write, daemon=True)
    t.start()
    t.join(timeout=10)
    return "acked" in result


def test_a_commit_stranded_on_the_old_primary_is_never_acknowledged(lab: Lab, daemon: Daemon) -> None:
    """A commit left waiting on the cut-off primary blocks its fence when the link returns. The
    controller runs the machine's fence command (the lab's: a restart as a replica): the client
    gets an error, never an OK, the row is truncated, and the old primary is read-only at once."""
    c = app_conn(lab, "shard1-m")
    sql(c, "CREATE DATABASE IF NOT EXISTS t4", "CREATE TABLE IF NOT EXISTS t4.a (id INT PRIMARY KEY)")
    c.close()
    topic = f"idc-ha/{lab.config().cluster}/alerts/#"
    with MqttCollector("127.0.0.1", lab.info["mqtt"]["port"], topic) as alerts:  # subscribed before the fault
        isolate_idc(lab.workdir, "IDC1")
        stranded = _stranded_insert(lab, "shard1-m", 7)
        try:
            _wait_shard1_in_idc2(daemon)
            assert stranded.poll() is None, "the stranded commit must be waiting, not acknowledged"
            heal_idc(lab.workdir, "IDC1")
            healed = time.monotonic()
            hit = alerts.wait_for(lambda x: x[1]["kind"] == "fence_blocked" and x[1]["node"] == "shard1-m", timeout=30)
            assert hit is not None, [m[1]["kind"] for m in alerts.messages]
            assert "fence_command" in hit[1]["hint"] and "never KILL QUERY" in hit[1]["hint"], hit
            wait_until(lambda: writable(lab, "shard1-m") is False, 20, "shard1-m read-only after its fence command")
            print(f"shard1-m read-only {time.monotonic() - healed:.1f} s after the heal")
            out, err = stranded.communicate(timeout=30)
            assert stranded.returncode != 0, f"the stranded commit was acknowledged: {out!r} {err!r}"
            assert not _late_write_acked(lab, "shard1-m", 8), "a write on the fenced-out old primary was acknowledged"
            assert _rows(lab, "shard1-m", 7, "t4.a") == 0, "the never-acknowledged row survived the fence command"
            assert _rows(lab, "shard1-sx", 7, "t4.a") == 0

            # The node is read-only once the restart's server is up; the command's journal line comes
            # when the command exits, a moment later (CI once read the journal in between).
            def runs() -> list[dict[str, Any]]:
                return [e for e in daemon.journal() if e["event"] == "fence_command" and e["node"] == "shard1-m"]

            wait_until(lambda: bool(runs()), 30, "the fence command's journal line")
            assert [e["rc"] for e in runs()] == [0], runs()
            wait_until(
                lambda: "shard1-m" not in daemon.records()["shard1"].fence_pending, 15, "shard1-m leaves fence_pending"
            )
        finally:
            stranded.kill()
            stranded.wait(timeout=10)


def test_with_kills_allowed_and_no_fence_command_the_waiters_are_killed_and_the_node_is_errant(
    lab: Lab, tmp_path: Path
) -> None:
    """No fence command, policy fencing.kill_waiters: the waiting connection is killed (KILL
    CONNECTION, never KILL QUERY). Its client gets an error, never an OK; the fence goes through;
    the row stays in the old primary's binlog (errant) and is on no node of the new layout."""
    policy = tmp_path / "kill.toml"
    policy.write_text("[fencing]\nkill_waiters = true\n")
    text = "\n".join(
        line for line in lab.config_path.read_text().splitlines() if not line.startswith("fence_command")
    ).replace('policy = "policies/default.toml"', f"policy = {json.dumps(str(policy))}")
    cfg = tmp_path / "nofence.toml"
    cfg.write_text(text)
    c = app_conn(lab, "shard1-m")
    sql(c, "CREATE DATABASE IF NOT EXISTS t4", "CREATE TABLE IF NOT EXISTS t4.a (id INT PRIMARY KEY)")
    c.close()
    with Daemon(cfg, tmp_path / "daemon.log") as daemon:
        daemon.wait_safe(3, timeout=20)
        time.sleep(1.5)  # watched for a while: the proof's min_watch_s
        isolate_idc(lab.workdir, "IDC1")
        stranded = _stranded_insert(lab, "shard1-m", 9)
        try:
            _wait_shard1_in_idc2(daemon)
            heal_idc(lab.workdir, "IDC1")
            wait_until(lambda: writable(lab, "shard1-m") is False, 20, "shard1-m read-only after the kill")
            out, err = stranded.communicate(timeout=30)
            assert stranded.returncode != 0, f"the killed commit was acknowledged: {out!r} {err!r}"
            killed = [e for e in daemon.journal() if e["event"] == "fence_killed" and e["node"] == "shard1-m"]
            assert killed and killed[0]["connections"], killed
            assert not [e for e in daemon.journal() if e["event"] == "fence_command"]
            assert _rows(lab, "shard1-m", 9, "t4.a") == 1, "a killed waiter's row stays: the node is errant"
            assert _rows(lab, "shard1-sx", 9, "t4.a") == 0
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
