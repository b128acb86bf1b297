"""Benchmarks that print JSON. Targets are measured here, never asserted by timing in tests.

    python -m sim.bench failover [--fault F] --trials N [--json]
                                                       a fault of IDC1 under write load
    python -m sim.bench probes [--seconds S] [--json]  probe rounds on a lab: probes/s per core
    python -m sim.bench lab [--trials N] [--json]      lab bring-up time
    python -m sim.bench scale --shards 100,1000,5000   the real daemon over the simulated fleet

failover, per trial: a fresh lab, the daemon, the workload; then the fault (``--fault``):
kill-idc (every IDC1 server SIGKILLed, the default), isolate-idc (every link of IDC1 down:
timeouts), freeze-idc (every IDC1 server SIGSTOPped), kill-node (shard1's primary SIGKILLed, its
IDC alive). The trial measures, over the shards the fault hits, detection (fault -> the daemon's
decision, from its journal), RTO (fault -> first acknowledged write by a new node on every such
shard, from the workload's ledger), lost acknowledged writes (every shard),
and whether semi-sync was verified before writes opened on every shard (journal order, and
the new primaries' semi-sync status afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sim.harness import Daemon, Lab, kill_idc


def _pct(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"p50": None, "max": None, "min": None}
    return {"p50": round(statistics.median(xs), 3), "max": round(max(xs), 3), "min": round(min(xs), 3)}


FAULTS = ("kill-idc", "isolate-idc", "freeze-idc", "kill-node")


def _fault(lab: Lab, fault: str) -> tuple[float, float, set[str] | None]:
    """Apply the fault: the wall times just before it began and once it was complete, and the
    shards it hits (None: every shard)."""
    from sim import chaos

    if fault == "kill-idc":
        t0, t1 = kill_idc(lab, "IDC1")
        return t0, t1, None
    t0 = time.time()
    if fault == "isolate-idc":
        chaos.isolate_idc(lab.workdir, "IDC1")
    elif fault == "freeze-idc":
        chaos.freeze_idc(lab.workdir, "IDC1")
    elif fault == "kill-node":
        chaos.kill_node(lab.workdir, "shard1-m")  # the home layout's primary of shard1
        return t0, time.time(), {"shard1"}
    else:
        raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
    return t0, time.time(), None


async def _failover_trial(base: Path, k: int, *, warmup: float, fault_kind: str = "kill-idc") -> dict[str, Any]:
    from sim.site import SiteWorkload

    lab = Lab(base / f"t{k}").up()
    daemon = Daemon(lab.config_path, base / f"t{k}-daemon.log")
    try:
        daemon.start()
        nshards = len(lab.config().topology.shards)
        await asyncio.to_thread(daemon.wait_safe, nshards, 30)
        wl = SiteWorkload(lab.config(), lab.info)  # the writers run at the client site
        await wl.start()
        await asyncio.sleep(warmup)
        fault, killed, hit = await asyncio.to_thread(_fault, lab, fault_kind)
        ok = await wl.wait_all_acked_after(killed, timeout=60, shards=hit)
        await asyncio.sleep(1.0)
        await wl.stop()
        shards = await wl.verify(fault_at=fault, fault_over=killed)
        moved = {s: r for s, r in shards.items() if hit is None or s in hit}
        journal = daemon.journal()
        decisions = [e["ts"] for e in journal if e["event"] == "decision" and e["ts"] > fault]
        order_ok = True
        for s in moved:
            steps = [e["step"] for e in journal if e["event"] == "step_done" and e.get("shard") == s]
            if (
                "open_writes" not in steps
                or "verify_semisync" not in steps
                or steps.index("verify_semisync") > steps.index("open_writes")
            ):
                order_ok = False
        recs = daemon.records()
        rtos = [r["rto_s"] for r in moved.values() if r["rto_s"] is not None]
        return {
            "trial": k,
            "recovered": ok,
            "detection_s": round(min(decisions) - fault, 3) if decisions else None,
            "kill_s": round(killed - fault, 3),
            "rto_s": round(max(rtos), 3) if ok and rtos else None,
            "rto_by_shard": {s: r["rto_s"] for s, r in moved.items()},
            "lost": sum(r["lost"] or 0 for r in shards.values()),
            "lost_unknown": any(r["lost"] is None for r in shards.values()),
            "acked": sum(r["acked"] for r in shards.values()),
            "semisync_before_open": order_ok,
            "final": {s: (r.primary, str(r.sync), list(r.ackers)) for s, r in recs.items()},
        }
    finally:
        daemon.stop()
        lab.down()


TARGETS = {  # issue 8's RTO targets per fault
    "kill-idc": {"rto_p50_s": 0.5, "rto_max_s": 0.8},
    "isolate-idc": {"rto_p50_s": 3.0, "rto_max_s": 4.5},
    "freeze-idc": {"rto_p50_s": 3.0, "rto_max_s": 4.5},
    "kill-node": {"rto_p50_s": 0.6, "rto_max_s": 1.0},
}
FAULT_TEXT = {
    "kill-idc": "SIGKILL of every IDC1 server under write load",
    "isolate-idc": "every link of IDC1 down (timeouts) under write load",
    "freeze-idc": "SIGSTOP of every IDC1 server under write load",
    "kill-node": "SIGKILL of shard1's primary (its IDC alive) under write load",
}


def failover(trials: int, warmup: float, fault: str = "kill-idc", keep: Path | None = None) -> dict[str, Any]:
    results = []
    with tempfile.TemporaryDirectory(prefix="idcha-bench-") as tmp:
        base = Path(tmp) if keep is None else keep
        base.mkdir(parents=True, exist_ok=True)
        for k in range(trials):
            r = asyncio.run(_failover_trial(base, k, warmup=warmup, fault_kind=fault))
            print(json.dumps(r), file=sys.stderr, flush=True)
            results.append(r)
    det = [r["detection_s"] for r in results if r["detection_s"] is not None]
    rto = [r["rto_s"] for r in results if r["rto_s"] is not None]
    return {
        "bench": "failover",
        "fault": FAULT_TEXT[fault],
        "fault_kind": fault,
        "trials": trials,
        "recovered": sum(1 for r in results if r["recovered"]),
        "detection_s": _pct(det),
        "rto_s": _pct(rto),
        "lost_writes": sum(r["lost"] for r in results),
        "lost_unknown_trials": sum(1 for r in results if r["lost_unknown"]),
        "acked_writes": sum(r["acked"] for r in results),
        "semisync_before_open_all": all(r["semisync_before_open"] for r in results),
        "target": TARGETS[fault],
        "trials_detail": results,
    }


async def _probes(config: Path, seconds: float) -> dict[str, Any]:
    from idc_ha.model.config import load_config
    from idc_ha.observe.snapshot import Observer

    ob = Observer(load_config(config))
    await ob.round()
    cpu0, t0 = time.process_time(), time.perf_counter()
    rounds, durations = 0, []
    while time.perf_counter() - t0 < seconds:
        s = await ob.round()
        durations.append(s.duration_ms)
        rounds += 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    await ob.close()
    n = len(ob.probers)
    return {
        "bench": "probes",
        "nodes": n,
        "rounds": rounds,
        "round_ms": _pct(durations),
        "probes_per_s": round(rounds * n / wall, 1),
        "probes_per_cpu_s": round(rounds * n / cpu, 1) if cpu else None,
        "cpu_share": round(cpu / wall, 2),
    }


def probes(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="idcha-bench-") as tmp:
        with Lab(Path(tmp) / "lab") as lab:
            return asyncio.run(_probes(lab.config_path, seconds))


def lab_bringup(trials: int) -> dict[str, Any]:
    times = []
    with tempfile.TemporaryDirectory(prefix="idcha-bench-") as tmp:
        for k in range(trials):
            t0 = time.perf_counter()
            lab = Lab(Path(tmp) / f"lab{k}").up()
            times.append(time.perf_counter() - t0)
            lab.down()
    return {"bench": "lab", "trials": trials, "up_s": _pct(times), "nodes": 15}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="bench", required=True)
    f = sub.add_parser("failover")
    f.add_argument("--trials", type=int, default=5)
    f.add_argument("--warmup", type=float, default=2.0)
    f.add_argument("--fault", choices=FAULTS, default="kill-idc", help="what happens to IDC1 (default kill-idc)")
    f.add_argument("--keep", type=Path, metavar="DIR", help="keep each trial's daemon log (tN-daemon.log) in DIR")
    p = sub.add_parser("probes")
    p.add_argument("--seconds", type=float, default=5.0)
    lb = sub.add_parser("lab")
    lb.add_argument("--trials", type=int, default=3)
    sc = sub.add_parser("scale")
    sc.add_argument("--shards", default="100,1000,5000", help="comma-separated sizes (shards, meta included)")
    sc.add_argument("--latency-ms", type=float, default=1.0, help="simulated latency per statement")
    for s in (f, p, lb, sc):
        s.add_argument("--json", action="store_true", help="JSON only (the default output is JSON too)")
    a = ap.parse_args(argv)
    if a.bench == "failover":
        out = failover(a.trials, a.warmup, a.fault, a.keep)
    elif a.bench == "probes":
        out = probes(a.seconds)
    elif a.bench == "scale":
        from sim.bench.scale import scale

        out = scale([int(x) for x in a.shards.split(",")], latency_s=a.latency_ms / 1000)
    else:
        out = lab_bringup(a.trials)
    print(json.dumps(out, indent=None if a.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
