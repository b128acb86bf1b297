"""Node failover on the real lab: one primary server dies while its IDC stays up."""

from __future__ import annotations

import asyncio
import time

from idc_ha.model.ids import SyncState
from sim.chaos import kill_node
from sim.harness import Daemon, Lab
from tests.integration.helpers import ctl_conn, sql, writable
from tests.integration.test_failover import (
    RTO_PROMISE_S,
    alerts_topic,
    assert_no_acked_write_lost,
    collector,
    run_workload_through,
)


def _kill(lab: Lab, node: str) -> tuple[float, float]:
    t = time.time()
    kill_node(lab.workdir, node)
    return t, time.time()


def _semisync_master(lab: Lab, node: str) -> dict[str, str]:
    c = ctl_conn(lab, node)
    try:
        return {r["Variable_name"]: r["Value"] for r in sql(c, "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_%'")[0]}
    finally:
        c.close()


def _replica_source(lab: Lab, node: str) -> tuple[int, str, str]:
    c = ctl_conn(lab, node)
    try:
        [row] = sql(c, "SHOW SLAVE STATUS")[0]
        return int(row["Master_Port"]), str(row["Slave_IO_Running"]), str(row["Slave_SQL_Running"])
    finally:
        c.close()


def test_primary_node_killed_under_load_is_replaced_inside_its_idc(lab: Lab, daemon: Daemon) -> None:
    """shard1-m SIGKILLed under load, IDC1 otherwise up: shard1-ms becomes primary (epoch 2,
    IDC_SAFE, shard1-sx still the acker), 0 acknowledged writes lost, the other shards untouched."""
    report, _, recovered = asyncio.run(run_workload_through(lab, lambda: _kill(lab, "shard1-m"), moving={"shard1"}))
    assert recovered, report
    assert_no_acked_write_lost(report)
    assert report["shard1"]["final_node"] == "shard1-ms", report["shard1"]
    assert float(report["shard1"]["rto_s"]) < RTO_PROMISE_S  # type: ignore[arg-type]
    rec = daemon.wait_records(
        lambda r: r["shard1"].sync == SyncState.IDC_SAFE and r["shard1"].op is None,
        timeout=10,
        what="shard1 IDC_SAFE on shard1-ms",
    )["shard1"]
    assert (rec.primary, rec.epoch, rec.ackers) == ("shard1-ms", 2, ("shard1-sx",)), rec
    assert rec.upstreams["shard1-sx"] == "shard1-ms" and rec.out == ("shard1-m",)
    st = _semisync_master(lab, "shard1-ms")
    assert st["Rpl_semi_sync_master_status"] == "ON" and int(st["Rpl_semi_sync_master_clients"]) == 1, st
    port, io, sql_ = _replica_source(lab, "shard1-sx")
    assert port == lab.node("shard1-ms")["port"] and (io, sql_) == ("Yes", "Yes")
    recs = daemon.records()
    for s in ("meta", "shard2"):
        assert recs[s].primary == f"{s}-m" and recs[s].epoch == 1, recs[s]
        assert writable(lab, f"{s}-m") is True


def test_lagging_local_candidate_catches_up_before_it_is_promoted(lab: Lab, daemon: Daemon) -> None:
    """shard1-ms's SQL thread is stopped for 5 s under load, then shard1-m is killed: MS holds
    the 5 s only in its relay log (and may have received less than Sx). 0 acknowledged writes
    lost: either MS applied it all and caught up from Sx, or Sx was promoted with an alert."""
    c = ctl_conn(lab, "shard1-ms")

    def fault() -> tuple[float, float]:
        sql(c, "STOP SLAVE SQL_THREAD")
        time.sleep(5.0)
        return _kill(lab, "shard1-m")

    with collector(lab, alerts_topic(lab)) as alerts:
        try:
            report, _, recovered = asyncio.run(run_workload_through(lab, fault, moving={"shard1"}))
        finally:
            c.close()
        assert recovered, report
        assert_no_acked_write_lost(report)
        rec = daemon.wait_records(
            lambda r: r["shard1"].op is None and r["shard1"].epoch == 2, timeout=10, what="shard1 failed over"
        )["shard1"]
        if rec.primary == "shard1-ms":
            assert rec.sync == SyncState.IDC_SAFE and rec.ackers == ("shard1-sx",)
        else:
            assert rec.primary == "shard1-sx", rec
            hit = alerts.wait_for(lambda m: m[1]["kind"] == "moved_idc" and m[1]["shard"] == "shard1", timeout=5)
            assert hit is not None, alerts.messages
    assert report["shard1"]["final_node"] == rec.primary
