"""`make demo`: the lab, the daemon, status, an IDC failure under write load, the report.

Runs in ./labs/demo (removed at the end, whatever happens). Every step prints what it does.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from sim.harness import ROOT, Daemon, Lab, kill_idc
from sim.site import SiteWorkload


def say(msg: str) -> None:
    print(f"\n=== {msg}", flush=True)


def status(cfg: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "idc_ha.cli", "status", "--config", str(cfg)], cwd=ROOT, timeout=60, check=False
    )


async def demo() -> int:
    workdir = ROOT / "labs" / "demo"
    say(f"bringing up the lab in {workdir}: 3 IDCs in 2 cities, 3 shards x 5 mariadbd, Mosquitto, etcd")
    t0 = time.perf_counter()
    lab = Lab(workdir).up()
    print(f"lab up in {time.perf_counter() - t0:.1f} s; config {lab.config_path}")
    daemon = Daemon(lab.config_path, workdir / "daemon.log")
    try:
        say("starting the daemon (idc-ha run); waiting until every shard is proven IDC_SAFE")
        daemon.start()
        t1 = time.perf_counter()
        await asyncio.to_thread(daemon.wait_safe, 3, 30)
        print(f"all shards IDC_SAFE {time.perf_counter() - t1:.1f} s after start")
        say("idc-ha check --live")
        subprocess.run(
            [sys.executable, "-m", "idc_ha.cli", "check", "--live", "--config", str(lab.config_path)],
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        say("idc-ha status")
        status(lab.config_path)
        say("writing to every shard (workload with a ledger of acknowledged writes), 3 s")
        wl = SiteWorkload(lab.config(), lab.info)  # the writers run at the client site
        await wl.start()
        await asyncio.sleep(3)
        say("planned switch drills (`idc-ha switch --to IDC2`) come with the next release; skipping")
        say("killing every server of IDC1 (SIGKILL)")
        fault, killed = await asyncio.to_thread(kill_idc, lab, "IDC1")
        ok = await wl.wait_all_acked_after(killed, timeout=60)
        await asyncio.sleep(1)
        await wl.stop()
        report = await wl.verify(fault_at=fault, fault_over=killed)
        say("idc-ha status after the failover")
        status(lab.config_path)
        say("report")
        for s, r in report.items():
            print(
                f"{s:<8} writes back after {r['rto_s']} s on {r['final_node']} (epoch {r['final_epoch']}); "
                f"acked {r['acked']}, lost {r['lost']}, duplicated {r['duplicated']}, unexpected {r['unexpected']}"
            )
        steps = [e for e in daemon.journal() if e["event"] in ("decision", "op_done")]
        for e in steps:
            print(
                f"journal {time.strftime('%H:%M:%S', time.localtime(e['ts']))} {e['event']:<9} {e.get('shard')}: "
                f"{e.get('reason', '') or ('done in ' + str(e.get('ms')) + ' ms, primary ' + str(e.get('primary')))}"[
                    :200
                ]
            )
        lost = sum(r["lost"] or 0 for r in report.values())
        print(json.dumps({"recovered": ok, "lost": lost, "rto_s": {s: r["rto_s"] for s, r in report.items()}}))
        return 0 if ok and lost == 0 else 1
    finally:
        say("stopping the daemon and removing the lab")
        daemon.stop()
        lab.down()


def main() -> int:
    return asyncio.run(demo())


if __name__ == "__main__":
    sys.exit(main())
