"""Rejoin on the lab: an IDC killed and restored (or frozen and woken) comes back as replicas of the
new primaries, becomes the standby IDC again, and a second disaster moves every shard back to it."""

from __future__ import annotations

import asyncio
import time

from idc_ha.model.ids import SyncState
from idc_ha.model.state import ShardRecord
from sim.chaos import freeze_idc, restore_idc, thaw_idc
from sim.harness import Daemon, Lab, kill_idc
from tests.integration.helpers import app_conn, assert_routing_table_agrees, root_conn, sql, writable
from tests.integration.test_failover import (
    RTO_PROMISE_S,
    SHARDS,
    assert_no_acked_write_lost,
    run_workload_through,
    wait_all_in_idc2,
)
from tests.integration.test_fence import wait_until


def test_an_idc_killed_and_restored_rejoins_and_is_the_standby_idc_again(lab: Lab, daemon: Daemon) -> None:
    """Kill IDC1, let every shard fail over, restore IDC1 as the runbook says: within 60 s every
    IDC1 node is back in its shard's layout, read-only, and every shard is IDC_SAFE again at a
    new epoch with its home primary as the acker (IDC1 the standby IDC): it acks, the cascade in
    IDC2 does not, the new primary counts one semi-sync client, the local candidate and the
    remote replicate from the new acker, and a commit on the new primary reaches them all."""
    idc1 = {n["name"] for n in lab.nodes_in("IDC1")}
    kill_idc(lab, "IDC1")
    wait_all_in_idc2(daemon)
    restore_idc(lab.workdir, "IDC1")
    t0 = time.monotonic()
    daemon.wait_records(
        lambda r: all(not (set(r[s].out) & idc1) and not r[s].needs_rebuild for s in SHARDS),
        timeout=60,
        what="every IDC1 node rejoined",
    )
    rejoined = time.monotonic() - t0
    recs = wait_idc_safe_again(daemon, timeout=60 - rejoined)
    print(f"after the restore: rejoined in {rejoined:.1f} s, IDC_SAFE again in {time.monotonic() - t0:.1f} s")
    for s in SHARDS:
        check_idc_safe_again(lab, s, recs[s])
        c = app_conn(lab, f"{s}-sx")
        sql(c, "CREATE DATABASE IF NOT EXISTS rj", "CREATE TABLE IF NOT EXISTS rj.t (id INT PRIMARY KEY)")
        sql(c, "INSERT INTO rj.t VALUES (1)")
        c.close()
    deadline = time.monotonic() + 20
    missing = {f"{s}-{r}" for s in SHARDS for r in ("m", "ms", "rem")}
    while missing and time.monotonic() < deadline:
        for n in sorted(missing):
            try:
                if sql(root_conn(lab, n), "SELECT COUNT(*) AS n FROM rj.t")[0][0]["n"] == 1:
                    missing.discard(n)
            except Exception:  # the table has not arrived yet
                pass
        time.sleep(0.2)
    assert not missing, f"the new primaries' commits never reached {sorted(missing)}"


def wait_idc_safe_again(daemon: Daemon, *, timeout: float) -> dict[str, ShardRecord]:
    """Until every shard is IDC_SAFE with its home primary acking for the IDC2 primary."""
    return daemon.wait_records(
        lambda r: all(
            r[s].primary == f"{s}-sx" and r[s].sync == SyncState.IDC_SAFE and r[s].ackers == (f"{s}-m",) for s in SHARDS
        ),
        timeout=max(timeout, 1.0),
        what="every shard IDC_SAFE with its acker in IDC1",
    )


def check_idc_safe_again(lab: Lab, s: str, rec: ShardRecord) -> None:
    """Semi-sync as the record says, at both ends, and the followers behind the new acker."""
    assert rec.epoch == 3, rec
    assert rec.upstreams == {f"{s}-m": f"{s}-sx", f"{s}-cas": f"{s}-sx", f"{s}-ms": f"{s}-m", f"{s}-rem": f"{s}-m"}
    acking = {f"{s}-m": 1, f"{s}-ms": 0, f"{s}-cas": 0, f"{s}-rem": 0}
    for n, want in acking.items():
        assert writable(lab, n) is False
        [[v]] = sql(
            root_conn(lab, n),
            "SELECT @@rpl_semi_sync_slave_enabled AS slave, @@rpl_semi_sync_master_enabled AS master",
        )
        assert int(v["slave"]) == want and int(v["master"]) == 0, (n, v)
        [[st]] = sql(root_conn(lab, n), "SHOW SLAVE STATUS")
        assert st["Master_Host"] == lab.node(rec.upstreams[n])["host"], (n, st["Master_Host"])
    wait_until(
        lambda: (
            _status(lab, f"{s}-sx", "Rpl_semi_sync_master_clients") == "1"
            and _status(lab, f"{s}-m", "Rpl_semi_sync_slave_status") == "ON"
            and _status(lab, f"{s}-cas", "Rpl_semi_sync_slave_status") == "OFF"
        ),
        10,
        f"{s}: one semi-sync client on {s}-sx, {s}-m acking, {s}-cas not",
    )


def _status(lab: Lab, node: str, var: str) -> str:
    [[row]] = sql(root_conn(lab, node), f"SHOW GLOBAL STATUS LIKE '{var}'")
    return str(row["Value"])


def test_a_second_disaster_after_the_rejoin_moves_every_shard_back_to_idc1(lab: Lab, daemon: Daemon) -> None:
    """Kill IDC1, restore it, wait until it is the standby IDC again; then kill IDC2, now primary,
    under load: every shard fails over to its home primary (the local candidate acks) with no
    acknowledged write lost."""
    kill_idc(lab, "IDC1")
    wait_all_in_idc2(daemon)
    assert_routing_table_agrees(lab, "meta-sx")
    restore_idc(lab.workdir, "IDC1")
    wait_idc_safe_again(daemon, timeout=60)
    time.sleep(2.0)  # the new ackers watched long enough for the proof (min_watch_s)

    def fault() -> tuple[float, float]:
        window = kill_idc(lab, "IDC2")  # an ack after its end is certainly not from IDC2
        daemon.wait_records(
            lambda r: all(r[s].primary == f"{s}-m" and r[s].op is None for s in SHARDS),
            timeout=RTO_PROMISE_S,
            what="every shard back in IDC1",
        )
        return window

    report, _, recovered = asyncio.run(run_workload_through(lab, fault))
    assert recovered, report
    assert_no_acked_write_lost(report)
    recs = daemon.records()
    for s in SHARDS:
        assert recs[s].sync == SyncState.NODE_SAFE and recs[s].ackers == (f"{s}-ms",) and recs[s].epoch == 4, recs[s]
        assert writable(lab, f"{s}-m") is True
    rows = assert_routing_table_agrees(lab, "meta-m")
    assert {s: (rows[s]["epoch"], rows[s]["node"]) for s in SHARDS} == {s: (4, f"{s}-m") for s in SHARDS}
    print({s: {k: report[s][k] for k in ("acked", "lost", "rto_s", "nodes_written")} for s in SHARDS})


FREEZE_S = 40.0


def test_idc1_frozen_under_load_then_woken_is_fenced_and_rejoins(lab: Lab, daemon: Daemon) -> None:
    """Every IDC1 server frozen for 40 s under load: the shards fail over; when IDC1 wakes, its old
    primaries (each with commits stranded waiting for an ack) are fenced within 10 s, through the
    fence command where the fence is blocked (it truncates the stranded commits), and within 60 s
    every IDC1 node replicates in the new layout or is marked needs_rebuild: a local candidate
    may have applied the stranded commits (it replicates asynchronously from the old primary).
    Its errant rows are on no node of the new layout, so, with no acknowledged write lost, none
    of them was ever acknowledged."""
    idc1 = {n["name"] for n in lab.nodes_in("IDC1")}
    figures: dict[str, float] = {}

    def fault() -> tuple[float, float]:
        t = time.time()
        freeze_idc(lab.workdir, "IDC1")
        frozen = time.time()
        try:
            wait_all_in_idc2(daemon)
            time.sleep(max(0.0, t + FREEZE_S - time.time()))
        finally:
            thaw_idc(lab.workdir, "IDC1")
        woke = time.monotonic()
        wait_until(lambda: all(writable(lab, n) is False for n in idc1), 10, "every IDC1 node read-only")
        figures["read_only_s"] = time.monotonic() - woke
        daemon.wait_records(
            lambda r: all(set(r[s].out) & idc1 <= set(r[s].needs_rebuild) for s in SHARDS),
            timeout=60,
            what="every IDC1 node rejoined or marked for a rebuild",
        )
        figures["rejoined_s"] = time.monotonic() - woke
        return t, frozen  # writes resumed on IDC2 nodes after this (the workload checks)

    report, _, recovered = asyncio.run(run_workload_through(lab, fault))
    print(f"after the wake: read-only in {figures['read_only_s']:.1f} s, rejoined in {figures['rejoined_s']:.1f} s")
    assert recovered, report
    assert_no_acked_write_lost(report)
    recs = daemon.records()
    fenced_by_command = [e["node"] for e in daemon.journal() if e["event"] == "fence_command" and e["rc"] == 0]
    print(f"fence commands run: {fenced_by_command}")
    for s in SHARDS:
        assert recs[s].primary == f"{s}-sx"
        assert not {f"{s}-m", f"{s}-ms"} & set(recs[s].out) - set(recs[s].needs_rebuild)
        for n in recs[s].needs_rebuild:
            errant = _ledger_ids(lab, n) - _ledger_ids(lab, f"{s}-sx")
            print(f"{n} needs a rebuild: {len(errant)} errant ledger row(s), none acknowledged (0 lost)")
            assert errant, f"{n} was marked for a rebuild but holds no row the new primary lacks"
    # Every shard with an IDC1 node back in its layout is IDC-safe again with its acker in IDC1.
    recs = daemon.wait_records(
        lambda r: all(
            r[s].sync == SyncState.IDC_SAFE and r[s].ackers and r[s].ackers[0] in idc1
            for s in SHARDS
            if set(r[s].upstreams) & idc1
        ),
        timeout=30,
        what="every shard with an IDC1 node in its layout IDC_SAFE with its acker in IDC1",
    )
    print({s: (recs[s].sync, recs[s].ackers, recs[s].needs_rebuild) for s in SHARDS})


def _ledger_ids(lab: Lab, node: str) -> set[int]:
    rows = sql(root_conn(lab, node), "SELECT id FROM idcha_wl.ledger")[0]
    return {int(r["id"]) for r in rows}
