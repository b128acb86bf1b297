"""The chaos verbs on the real lab: a frozen server answers nothing and answers again once thawed;
a flapped link loses every packet until it is up; bad input names the fix and changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pymysql

from sim.chaos import flap_link, freeze_machine, thaw_machine, unflap_link
from sim.harness import ROOT, Lab
from tests.integration.helpers import ctl_conn, sql


def chaos(lab: Lab, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sim.chaos", "--workdir", str(lab.workdir), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def answers(lab: Lab, node: str, *, timeout: float = 1.0) -> bool:
    """Whether ``node`` answers a query within ``timeout`` (connect and read)."""
    try:
        conn = ctl_conn(lab, node, connect_timeout=timeout, read_timeout=timeout)
    except pymysql.err.OperationalError:
        return False
    try:
        return sql(conn, "SELECT 1")[0] == [{"1": 1}]
    except pymysql.err.OperationalError:
        return False
    finally:
        conn.close()


def test_freeze_thaw_and_flap_on_the_lab(lab: Lab) -> None:
    topo = lab.config().topology
    m = topo.node_by_name["shard1-m"].machine
    other = next(n.name for n in topo.nodes if topo.idc_of(n.name) == "IDC1" and n.machine != m)

    # freeze-idc with SECONDS: nothing in IDC1 answers meanwhile, everything does after
    p = subprocess.Popen(
        [sys.executable, "-m", "sim.chaos", "--workdir", str(lab.workdir), "freeze-idc", "IDC1", "3"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        time.sleep(1.0)
        assert not answers(lab, "shard1-m") and not answers(lab, other)
        assert answers(lab, "shard1-sx")  # IDC2 untouched
        out, _ = p.communicate(timeout=30)
    finally:
        p.kill()
    done = json.loads(out)
    assert done["action"] == "freeze-idc" and "shard1-m" in done["nodes"] and done["healed"]["action"] == "thaw-idc"
    assert answers(lab, "shard1-m", timeout=5) and answers(lab, other, timeout=5)

    # freeze-machine: only that machine's servers stop answering
    freeze_machine(lab.workdir, m)
    try:
        assert not answers(lab, "shard1-m") and answers(lab, other)
    finally:
        thaw_machine(lab.workdir, m)
    assert answers(lab, "shard1-m", timeout=5)

    # flap-link: the machine's packets are lost until the link is up; the server never stopped
    conn = ctl_conn(lab, "shard1-m")
    flap_link(lab.workdir, m)
    try:
        assert not answers(lab, "shard1-m")
    finally:
        unflap_link(lab.workdir, m)
    assert sql(conn, "SELECT 1")[0] == [{"1": 1}]  # the open connection survived the flap
    conn.close()

    # bad input names the fix and changes nothing (one lab for all: a lab costs seconds)
    r = chaos(lab, "freeze-machine", "no-such-machine")
    assert r.returncode == 1 and "no servers on machine 'no-such-machine'" in r.stderr and m in r.stderr
    r = chaos(lab, "isolate-idc", "IDC1", "2")
    assert r.returncode == 2 and "isolate-idc takes no SECONDS" in r.stderr
    assert answers(lab, "shard1-m", timeout=5)  # nothing was done
