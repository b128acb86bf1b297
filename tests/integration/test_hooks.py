"""Hooks and the routing table on the lab: a failover hook that fails raises hook_failed, the
failover completes anyway, the hook saw the event in its environment, and the meta shard's
routing table agrees with the retained MQTT routing messages."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sim.harness import Daemon, Lab, kill_idc
from tests.integration.helpers import assert_routing_table_agrees
from tests.integration.test_failover import SHARDS, alerts_topic, collector, wait_all_in_idc2


def test_a_failing_failover_hook_is_alerted_and_undoes_nothing(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "hooks"
    out.mkdir()
    script = f'env | grep ^IDC_HA_ > {out}/"$IDC_HA_SHARD".env; echo "hook for $IDC_HA_SHARD refuses"; exit 3'
    hooks = f"[hooks]\nfailover = {json.dumps(['/bin/sh', '-c', script])}\ntimeout_s = 10\n\n"
    text = lab.config_path.read_text().replace("[[cities]]", hooks + "[[cities]]", 1)
    cfg = tmp_path / "hooks.toml"
    cfg.write_text(text)
    with collector(lab, alerts_topic(lab)) as alerts, Daemon(cfg, tmp_path / "daemon.log") as daemon:
        daemon.wait_safe(3, timeout=20)
        assert_routing_table_agrees(lab, "meta-m")
        time.sleep(1.5)  # watched for a while: the proof's min_watch_s
        kill_idc(lab, "IDC1")
        recs = wait_all_in_idc2(daemon)
        failed = alerts.wait_for(lambda m: "/hook_failed" in m[0] and m[1].get("shard") == "shard1", timeout=15)
        assert failed is not None, [t for t, _ in alerts.messages]
        assert "exit 3" in failed[1]["reason"] and "refuses" in failed[1]["reason"], failed
        assert_routing_table_agrees(lab, "meta-sx")
        assert all(daemon.records()[s].primary == f"{s}-sx" for s in SHARDS), "a failing hook undid a failover"
    for s in SHARDS:
        env = dict(line.split("=", 1) for line in (out / f"{s}.env").read_text().splitlines())
        assert env["IDC_HA_EVENT"] == "failover" and env["IDC_HA_SHARD"] == s
        assert env["IDC_HA_EPOCH"] == str(recs[s].epoch) and env["IDC_HA_PRIMARY_NODE"] == f"{s}-sx"
        assert env["IDC_HA_PRIMARY_IDC"] == "IDC2" and env["IDC_HA_OLD_PRIMARY"] == f"{s}-m"
        assert (env["IDC_HA_PRIMARY_HOST"], int(env["IDC_HA_PRIMARY_PORT"])) == (
            lab.node(f"{s}-sx")["host"],
            lab.node(f"{s}-sx")["port"],
        )
