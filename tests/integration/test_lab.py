"""The foundation on real servers: the lab, status, semi-sync behaviour, check --live, teardown."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest

from idc_ha.model.ids import NodeName
from idc_ha.model.observation import ProbeFailure
from idc_ha.observe.snapshot import Observer
from sim.chaos import kill_node
from sim.harness import ROOT, Daemon, Lab
from sim.lab import net
from sim.lab.shape import lab_tag
from tests.integration.helpers import app_conn, ctl_conn, sql, writable


def idc_ha(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idc_ha.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def lab_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.lab", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def test_lab_up_describes_every_server(lab: Lab) -> None:
    """`sim.lab up` prints the config path, app credentials and every node with a live pid."""
    info = lab.info
    assert Path(info["config"]).exists()
    assert info["app_user"] and info["app_password"]
    assert len(info["nodes"]) == 15
    for n in info["nodes"]:
        assert n["pid"] and Path(f"/proc/{n['pid']}").exists(), n
        assert {"name", "shard", "role", "idc", "city", "machine", "host", "port"} <= set(n)
    assert info["mqtt"]["port"] not in (1883,) and info["etcd"][0].startswith("http://127.0.0.1:")
    assert lab.status()["nodes"] == info["nodes"]


def test_status_sees_three_shards_primaries_in_idc1_ackers_in_idc2(lab: Lab) -> None:
    """`idc-ha status --json` sees 3 shards, each primary in IDC1 and its semi-sync acker in IDC2."""
    p = idc_ha("status", "--config", str(lab.config_path), "--json")
    assert p.returncode == 0, p.stderr
    shards = json.loads(p.stdout)["shards"]
    assert sorted(s["name"] for s in shards) == ["meta", "shard1", "shard2"]
    assert [s["meta"] for s in shards if s["name"] == "meta"] == [True]
    for s in shards:
        assert s["primary"]["idc"] == "IDC1" and s["primary"]["reachable"] and not s["primary"]["read_only"]
        ackers = [r for r in s["replicas"] if r["semisync"]]
        assert [(r["role"], r["idc"]) for r in ackers] == [("acker", "IDC2")], s
        for r in s["replicas"]:
            assert r["io_running"] == "Yes" and r["sql_running"] == "Yes" and r["lag_s"] == 0
    text = idc_ha("status", "--config", str(lab.config_path))
    assert "CITY1 / IDC1 (primary)" in text.stdout and "shard1-sx" in text.stdout


def test_app_user_cannot_write_on_replicas(lab: Lab) -> None:
    """read_only stops the app user on every replica; it can create databases on the primary."""
    c = app_conn(lab, "shard1-m")
    sql(c, "CREATE DATABASE IF NOT EXISTS t1", "CREATE TABLE IF NOT EXISTS t1.a (id INT PRIMARY KEY)")
    c.close()
    for n in ("shard1-ms", "shard1-sx", "shard1-cas", "shard1-rem"):
        c = app_conn(lab, n)
        with pytest.raises(pymysql.err.OperationalError) as e:
            sql(c, "INSERT INTO t1.a VALUES (1)")
        assert e.value.args[0] == 1290
        c.close()


def test_commit_waits_while_the_acker_is_down_and_completes_when_it_returns(lab: Lab) -> None:
    """With the IDC2 acker stopped a commit on the primary blocks; it completes once the acker is back
    and replicating. The acker restarts with skip-slave-start (no daemon runs here), so its threads
    stay stopped until started: the commit still waits then, and completes after START SLAVE."""
    c = app_conn(lab, "shard1-m", read_timeout=60)
    sql(c, "CREATE DATABASE IF NOT EXISTS t2", "CREATE TABLE IF NOT EXISTS t2.a (id INT PRIMARY KEY)")
    assert lab_cmd("stop-node", "shard1-sx", "--workdir", str(lab.workdir)).returncode == 0
    result: dict[str, object] = {}

    def commit() -> None:
        try:
            sql(c, "INSERT INTO t2.a VALUES (42)")
            result["ok"] = time.monotonic()
        except pymysql.MySQLError as e:  # the client-side read timeout: the test can never hang
            result["error"] = e

    t = threading.Thread(target=commit, daemon=True)
    t.start()
    t.join(timeout=3.0)
    assert t.is_alive(), f"the commit did not wait for the acker: {result}"
    assert lab_cmd("start-node", "shard1-sx", "--workdir", str(lab.workdir)).returncode == 0
    t.join(timeout=2.0)
    assert t.is_alive(), f"the acker started replicating by itself: {result}"
    restarted = time.monotonic()
    # Its relay log holds nothing unapplied (it was stopped cleanly), so a plain START SLAVE is safe.
    root = ctl_conn(lab, "shard1-sx")
    sql(root, "START SLAVE")
    root.close()
    t.join(timeout=30)
    assert not t.is_alive() and "ok" in result, result
    assert float(result["ok"]) >= restarted  # type: ignore[arg-type]
    sx = app_conn(lab, "shard1-sx")
    deadline = time.monotonic() + 10
    while not sql(sx, "SELECT id FROM t2.a WHERE id = 42")[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sql(sx, "SELECT id FROM t2.a WHERE id = 42")[0] == [{"id": 42}]


def test_check_live_passes_then_names_a_miswired_replica(lab: Lab) -> None:
    """check --live passes on the lab, then names the remote wired to the primary instead of the acker."""
    ok = idc_ha("check", "--config", str(lab.config_path), "--live", "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    m = lab.node("shard1-m")
    c = ctl_conn(lab, "shard1-rem")
    pw = (lab.workdir / "secrets" / "replication.password").read_text()
    sql(
        c,
        "STOP SLAVE",
        f"CHANGE MASTER TO MASTER_HOST='{m['host']}', MASTER_PORT={m['port']}, "
        f"MASTER_USER='repl', MASTER_PASSWORD='{pw}', MASTER_USE_GTID=slave_pos",
        "START SLAVE",
    )
    c.close()
    bad = idc_ha("check", "--config", str(lab.config_path), "--live", "--json")
    assert bad.returncode == 1
    problems = json.loads(bad.stdout)["problems"]
    hits = [p for p in problems if "shard1-rem" in p["field"]]
    assert hits and "shard1-sx" in hits[0]["message"] and "CHANGE MASTER" in hits[0]["fix"], problems


def test_daemon_proves_idc_safe_within_3s_of_start(lab: Lab, tmp_path: Path) -> None:
    """A daemon with an empty store records IDC_SAFE for every shard within 3 s, and status shows it."""
    d = Daemon(lab.config_path, tmp_path / "d.log").start()
    try:
        t0 = time.monotonic()
        d.wait_safe(3, timeout=10)
        assert time.monotonic() - t0 < 3.0
        p = idc_ha("status", "--config", str(lab.config_path), "--json")
        r = json.loads(p.stdout)
        assert r["store"]["daemon"]["last_tick_age_s"] < 5
        assert {s["sync"] for s in r["shards"]} == {"IDC_SAFE"} and {s["epoch"] for s in r["shards"]} == {1}
        second = Daemon(lab.config_path, tmp_path / "d2.log").start()
        assert second.wait_exit(20) == 1, "a second daemon must refuse the locked store"
        assert "holds the store" in (tmp_path / "d2.log").read_text()
    finally:
        d.stop()


def test_up_refuses_a_live_lab_and_two_labs_run_side_by_side(lab: Lab, tmp_path: Path) -> None:
    """`up` refuses a workdir with a live lab; a second lab elsewhere gets its own names and subnets."""
    again = lab_cmd("up", "--workdir", str(lab.workdir))
    assert again.returncode == 1 and "live lab" in again.stderr
    other = Lab(tmp_path / "other").up()
    try:
        a = {n["netns"] for n in lab.info["nodes"]}
        b = {n["netns"] for n in other.info["nodes"]}
        assert not a & b
        assert {n["host"] for n in lab.info["nodes"]}.isdisjoint({n["host"] for n in other.info["nodes"]})
        assert writable(lab, "meta-m") and writable(other, "meta-m")
    finally:
        other.down()
    assert writable(lab, "meta-m"), "taking the other lab down must not touch this one"


def test_lab_down_leaves_no_process_namespace_or_bridge(tmp_path: Path) -> None:
    """After `down` nothing of the lab is left: processes, namespaces, bridges, nft table, sockets."""
    lab = Lab(tmp_path / "gone").up()
    pids = [n["pid"] for n in lab.info["nodes"]] + [lab.info["mqtt"]["pid"]]
    tag = lab_tag(lab.workdir)
    lab.down()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert not [n for n in net.list_netns() if n.startswith(f"ih{tag}")]
    assert not [n for n in net.list_links() if n.startswith(f"ih{tag}")]
    assert net.run(["nft", "list", "table", "inet", f"ih{tag}"], check=False).returncode != 0
    assert not Path(f"/tmp/idcha-{tag}").exists()
    leftovers = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(lab.workdir) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    leftovers.append(proc.name)
            except OSError:
                continue
    assert leftovers == []
    # The same workdir again: a new lab is a new cluster, with no controller store left over.
    (lab.workdir / "state" / "shards").mkdir(parents=True, exist_ok=True)
    (lab.workdir / "state" / "shards" / "meta.json").write_text("{}")
    again = Lab(lab.workdir).up()
    try:
        assert not list((lab.workdir / "state").iterdir())
    finally:
        again.down()


def test_the_prober_hears_a_killed_primary_close_its_connection_between_rounds(lab: Lab) -> None:
    """A SIGKILLed server's sockets are closed by the kernel: the prober hears a writable node's
    connection close with no round running (observe/watch.py), and the next round finds it
    refusing. A replica's close, and the prober's own, are not reported."""

    async def go() -> tuple[list[str], object]:
        observer = Observer(lab.config())
        heard: list[str] = []
        got = asyncio.Event()
        observer.on_lost(lambda n: (heard.append(n), got.set()))
        try:
            snap = await observer.round()
            assert snap.nodes[NodeName("shard1-m")].writable and snap.nodes[NodeName("shard2-sx")].reachable
            await asyncio.to_thread(kill_node, lab.workdir, "shard2-sx")
            await asyncio.to_thread(kill_node, lab.workdir, "shard1-m")
            await asyncio.wait_for(got.wait(), 10)  # no round runs: only the watcher can tell
            await asyncio.sleep(0.5)
            failure = (await observer.round()).nodes[NodeName("shard1-m")].failure
        finally:
            await observer.close()
        await asyncio.sleep(0.2)
        return heard, failure

    heard, failure = asyncio.run(go())
    assert heard == ["shard1-m"], heard
    assert failure == ProbeFailure.REFUSED
