"""The real daemon at scale, over the simulated fleet: ``python -m sim.bench scale --shards 100,1000,5000``.

For each size: the config is validated (``problems()`` included) as ``idc-ha check`` would; the
fleet is arranged in the home layout (1 ms per statement, one per probe round); the daemon (the
same decide, executor, Fencer and file store as in production) ticks until every shard is
IDC_SAFE and watched, then every IDC1 server dies and it ticks until every shard is promoted.

Figures per size: ``probe_round_ms`` (p50 of the fleet's probe rounds: the simulated latency and
the observations built, which a real prober spends parsing), ``decide_ms_p50``/``decide_ms_max``
(the pure core, IDC1 down included), ``tick_cpu_ms`` (p50 CPU of a daemon tick, the probe round
excluded), ``rss_mb`` (peak resident memory of the process: the simulated fleet included),
``rss_fleet_mb`` and ``rss_daemon_mb`` (what building the fleet added, and what the daemon added
after it, at the end of the run), ``failover_all_s`` (every IDC1 node dead -> every shard's
failover finished) and ``check_ms`` (validating the config).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import idc_ha.daemon as daemon_module
from idc_ha import logs
from idc_ha.clock import boottime
from idc_ha.model.config import Config
from idc_ha.model.ids import SyncState
from idc_ha.model.policy import Policy
from idc_ha.model.problems import problems
from idc_ha.model.topology import Topology
from idc_ha.notify.alerts import MemoryAlertSink
from idc_ha.process import settle_memory
from sim.fleet import Fleet, daemon_on
from sim.layout import home_layout

MACHINES_PER_IDC = 8
TIMEOUT_S = 600.0


def _rss_mb() -> float:
    """The process's resident memory now (not the peak), from /proc."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return round(pages * resource.getpagesize() / 2**20, 1)


def _ms(xs: list[float]) -> float:
    return round(statistics.median(xs) * 1000, 1) if xs else 0.0


class Timed:
    """Wraps a callable and keeps how long each call took (wall) and its CPU."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []


async def _size(shards: int, base: Path, latency_s: float) -> dict[str, Any]:
    raw = home_layout(data_shards=shards - 1, machines_per_idc=MACHINES_PER_IDC, cluster="scale")
    t0 = time.perf_counter()
    topo = Topology.model_validate(raw)
    found = problems(topo)
    check_ms = round((time.perf_counter() - t0) * 1000, 1)
    assert not [p for p in found if p.severity == "error"], found[:3]
    cfg = Config.model_validate(
        {**raw, "state_dir": str(base / f"state-{shards}"), "mqtt": {"enabled": False}, "probe": {"interval_s": 0.2}}
    )
    gc.collect()
    rss_before = _rss_mb()
    fleet = Fleet(topo, latency_s=latency_s, clock=boottime, wall=time.time, record=False).arrange_home(seq=10)
    gc.collect()
    rss_fleet = _rss_mb()

    rounds = Timed()
    real_round = fleet.round

    async def timed_round() -> Any:
        c0, w0 = time.process_time(), time.perf_counter()
        snap = await real_round()
        rounds.wall.append(time.perf_counter() - w0)
        rounds.cpu.append(time.process_time() - c0)
        return snap

    fleet.round = timed_round  # type: ignore[method-assign]
    decides = Timed()
    real_decide = daemon_module.decide

    def timed_decide(*a: Any, **kw: Any) -> Any:
        w0 = time.perf_counter()
        d = real_decide(*a, **kw)
        decides.wall.append(time.perf_counter() - w0)
        return d

    daemon_module.decide = timed_decide  # type: ignore[assignment]
    alerts = MemoryAlertSink()
    d = daemon_on(fleet, cfg, Policy(), alerts)
    settle_memory()  # as `idc-ha run` does once the daemon is built
    ticks_cpu: list[float] = []

    async def tick_until(what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{shards} shards: {what} not reached in {TIMEOUT_S} s")
            c0, n0, w0 = time.process_time(), len(rounds.cpu), time.monotonic()
            await d.tick()
            probe_cpu = sum(rounds.cpu[n0:])
            ticks_cpu.append(time.process_time() - c0 - probe_cpu)
            took = time.monotonic() - w0
            # the daemon's own pacing (Daemon._tick_loop): operations run meanwhile
            await asyncio.sleep(max(d.rest_after(took), cfg.probe.interval_s - took))

    def all_recs(pred: Callable[[Any], bool]) -> bool:
        recs = d.book.all()
        return len(recs) == len(topo.shards) and all(pred(r) for r in recs.values())

    try:
        await tick_until("IDC_SAFE everywhere", lambda: all_recs(lambda r: r.sync == SyncState.IDC_SAFE))
        watch_until = time.monotonic() + 1.5
        await tick_until("watched", lambda: time.monotonic() > watch_until)
        steady_decide = list(decides.wall)
        steady_ticks = list(ticks_cpu)
        for n in topo.nodes:
            if topo.idc_of(n.name) == "IDC1":
                fleet.nodes[n.name].dead = True
        killed = time.monotonic()
        await tick_until("every shard promoted", lambda: all_recs(lambda r: r.primary.endswith("-sx") and r.op is None))
        failover_s = time.monotonic() - killed
        for t in list(d.ops.values()):
            await t
    finally:
        daemon_module.decide = real_decide  # type: ignore[assignment]
        d.store.release()
        gc.unfreeze()  # the next size starts from a clean collector
    down = decides.wall[len(steady_decide) :]
    return {
        "shards": shards,
        "nodes": len(topo.nodes),
        "check_ms": check_ms,
        "probe_round_ms": _ms(rounds.wall),
        "decide_ms_p50": _ms(decides.wall),
        "decide_ms_max": round(max(decides.wall) * 1000, 1),
        "decide_ms_p50_idc1_down": _ms(down),
        "tick_cpu_ms": _ms(steady_ticks),
        "tick_cpu_ms_failover": _ms(ticks_cpu[len(steady_ticks) :]),
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_fleet_mb": round(rss_fleet - rss_before, 1),
        "rss_daemon_mb": round(_rss_mb() - rss_fleet, 1),
        "failover_all_s": round(failover_s, 2),
        "ticks": len(decides.wall),
    }


def scale(sizes: list[int], *, latency_s: float = 0.001) -> dict[str, Any]:
    logs.setup(level=logging.ERROR)  # thousands of step lines would be measured too
    out = []
    with tempfile.TemporaryDirectory(prefix="idcha-scale-") as tmp:
        for n in sizes:
            out.append(asyncio.run(_size(n, Path(tmp), latency_s)))
    return {
        "bench": "scale",
        "latency_ms_per_statement": latency_s * 1000,
        "machines_per_idc": MACHINES_PER_IDC,
        "sizes": out,
        "targets": {
            "decide_ms_p50": {"1000": 50, "5000": 250},
            "tick_cpu_ms": {"1000": 300},
            "rss_mb": {"5000": 300},
            "failover_all_s": {"1000": 3, "5000": 10},
        },
    }
