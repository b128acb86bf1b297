"""A write workload with a ledger of acknowledged writes, following the routing topic.

Several writers per shard (three by default) insert unique ids into ``idcha_wl.ledger`` on the node the retained
routing message names (the highest epoch wins; until a message arrives, the shard's home
primary). Each write is classified:

* acked: the INSERT returned (autocommit): the client was told it is durable;
* in doubt: the connection died or timed out mid-call: it may or may not have committed;
* failed: refused before it could commit (e.g. read_only), so it did not.

``verify()`` reads the final primary of each shard and reports acked ids that are missing
(lost), ids present more than once (duplicated) and ids present that were never acked nor in
doubt (unexpected), plus each shard's write-unavailability window around a fault.

    python -m sim.workload --config DIR/idc-ha.toml --lab DIR/lab.json --duration 10 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import aiomysql
import pymysql

from idc_ha.model.config import Config, load_config
from idc_ha.model.ids import NodeRole

DB = "idcha_wl"
WRITE_TIMEOUT_S = 5.0
ORPHAN_WAIT_S = 60.0  # how long a write left behind by a route move may still be acknowledged


@dataclass
class Route:
    epoch: int
    node: str
    host: str
    port: int


@dataclass
class ShardLedger:
    acked: dict[int, float] = field(default_factory=dict)  # id -> wall time of the ack
    acked_on: dict[int, str] = field(default_factory=dict)  # id -> the node that acknowledged it
    in_doubt: set[int] = field(default_factory=set)
    late: list[int] = field(default_factory=list)  # acknowledged after the route had moved away
    attempted: int = 0
    errors: int = 0
    nodes_written: list[str] = field(default_factory=list)


class Workload:
    def __init__(
        self,
        config: Config,
        *,
        user: str,
        password: str,
        pause_s: float = 0.005,
        writers_per_shard: int = 3,
        mqtt_host: str | None = None,
    ) -> None:
        self.cfg, self.user, self.password = config, user, password
        self.mqtt_host = mqtt_host or config.mqtt.host  # the broker as seen from where the writers run
        self.writers_per_shard = writers_per_shard
        self.t = config.topology
        self.pause_s = pause_s
        self.routes: dict[str, Route] = {}
        for s in self.t.shards:
            n = self.t.home_node(s.name, NodeRole.PRIMARY)
            assert n is not None
            host, port = self.t.address_of(n.name)
            self.routes[s.name] = Route(0, n.name, host, port)
        self.ledgers = {s.name: ShardLedger() for s in self.t.shards}
        self.routing_updates = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._orphans: list[asyncio.Future[None]] = []  # writes left in flight on a node the route left
        self._next_id = {s.name: 1 for s in self.t.shards}
        # Set (and replaced) when a shard's route moves to another node: a write still in flight on
        # the old one is abandoned then, as a client behind a routing proxy sees its connection cut.
        self._moved: dict[str, asyncio.Event] = {s.name: asyncio.Event() for s in self.t.shards}

    # -- routing
    async def _follow_routing(self) -> None:
        m = self.cfg.mqtt
        topic = f"{m.topic_prefix}/{self.t.cluster}/routing/+"
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client(self.mqtt_host, m.port, identifier=f"wl-{time.time_ns()}") as c:
                    await c.subscribe(topic, qos=1)
                    async for msg in c.messages:
                        p = json.loads(bytes(msg.payload))  # type: ignore[arg-type]
                        cur = self.routes.get(p["shard"])
                        if cur is None or p["epoch"] >= cur.epoch:
                            new = Route(p["epoch"], p["node"], p["host"], int(p["port"]))
                            self.routes[p["shard"]] = new
                            self.routing_updates += 1
                            if cur is not None and (cur.host, cur.port) != (new.host, new.port):
                                moved = self._moved.get(p["shard"])
                                self._moved[p["shard"]] = asyncio.Event()
                                if moved is not None:
                                    moved.set()
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    # -- writing
    async def _connect(self, r: Route) -> aiomysql.Connection:
        async with asyncio.timeout(2.0):
            return await aiomysql.connect(
                host=r.host, port=r.port, user=self.user, password=self.password, connect_timeout=0.5, autocommit=True
            )

    async def prepare(self) -> None:
        """Create the ledger table on every shard's current primary (retries while none is writable)."""
        for s in self.routes:
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn = await self._connect(self.routes[s])
                    async with asyncio.timeout(WRITE_TIMEOUT_S), conn.cursor() as cur:
                        await cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB}")
                        await cur.execute(
                            f"CREATE TABLE IF NOT EXISTS {DB}.ledger (seq BIGINT AUTO_INCREMENT PRIMARY KEY, "
                            "id BIGINT NOT NULL, shard VARCHAR(64), ts DOUBLE, KEY (id))"
                        )
                        await cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM {DB}.ledger")
                        self._next_id[s] = int((await cur.fetchone())[0]) + 1
                    conn.close()
                    break
                except (pymysql.MySQLError, OSError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)

    async def _writer(self, shard: str) -> None:
        led = self.ledgers[shard]
        conn: aiomysql.Connection | None = None
        conn_route: Route | None = None
        while not self._stop.is_set():
            route, moved = self.routes[shard], self._moved[shard]
            if (
                conn is not None
                and conn_route is not None
                and (conn_route.host, conn_route.port) != (route.host, route.port)
            ):
                conn.close()
                conn = None
            if conn is None:
                try:
                    # A connect to a frozen node hangs until its timeout: given up when the route moves.
                    conn = await _or_moved(self._connect(route), moved)
                    if conn is None:
                        continue
                    conn_route = route
                except (pymysql.MySQLError, OSError, TimeoutError):
                    led.errors += 1
                    await asyncio.sleep(0.02)
                    continue
            i = self._next_id[shard]
            self._next_id[shard] += 1
            led.attempted += 1
            try:
                w = asyncio.ensure_future(self._insert(conn, i, shard))
                if not await _unless_moved(conn, w, moved):
                    # The route moved: the writer goes on at the new node, the write stays in
                    # flight on its own connection, and an OK that still comes is an ack.
                    led.in_doubt.add(i)
                    self._orphans.append(asyncio.ensure_future(self._orphan(conn, w, i, shard, route.node)))
                    conn = None
                    continue
                led.acked[i] = time.time()
                led.acked_on[i] = route.node
                if not led.nodes_written or led.nodes_written[-1] != route.node:
                    led.nodes_written.append(route.node)
            except pymysql.err.OperationalError as e:
                led.errors += 1
                code = e.args[0] if e.args else 0
                if code not in (1290, 1836):  # read_only refusals never commit; anything else might have
                    led.in_doubt.add(i)
                conn.close()
                conn = None
                await asyncio.sleep(0.02)
            except (pymysql.MySQLError, OSError, TimeoutError):
                led.errors += 1
                led.in_doubt.add(i)
                conn.close()
                conn = None
                await asyncio.sleep(0.02)
            if self.pause_s:
                await asyncio.sleep(self.pause_s)
        if conn is not None:
            conn.close()

    @staticmethod
    async def _insert(conn: aiomysql.Connection, i: int, shard: str) -> None:
        async with conn.cursor() as cur:
            await cur.execute(f"INSERT INTO {DB}.ledger (id, shard, ts) VALUES (%s, %s, %s)", (i, shard, time.time()))

    async def _orphan(self, conn: aiomysql.Connection, w: asyncio.Future[None], i: int, shard: str, node: str) -> None:
        """A write left in flight when its shard's route moved: an OK that arrives later (before
        ``stop``) is recorded as acknowledged, by that node, and marked late; verify() then finds
        it on the final primary or counts it lost, like any other ack."""
        try:
            done, _ = await asyncio.wait({w}, timeout=ORPHAN_WAIT_S)
            if w in done and w.exception() is None:
                led = self.ledgers[shard]
                led.acked[i], led.acked_on[i] = time.time(), node
                led.in_doubt.discard(i)
                led.late.append(i)
        finally:
            conn.close()  # first: a cancelled cursor would wait on a silent node to close
            w.cancel()

    async def start(self) -> None:
        # Routing first: after a failover the retained messages name primaries away from home, and
        # prepare() retries until the route it follows is writable.
        self._tasks.append(asyncio.create_task(self._follow_routing(), name="wl-routing"))
        await self.prepare()
        for s in self.ledgers:
            # Several writers per shard keep commits in flight at every instant, so a fault
            # always lands inside some commit's wait for its ack.
            for k in range(self.writers_per_shard):
                self._tasks.append(asyncio.create_task(self._writer(s), name=f"wl-{s}-{k}"))

    async def stop(self) -> None:
        self._stop.set()
        writers = [t for t in self._tasks if t.get_name() != "wl-routing"]
        await asyncio.wait(writers, timeout=WRITE_TIMEOUT_S + 2)
        for t in [*self._tasks, *self._orphans]:
            t.cancel()
        await asyncio.gather(*self._tasks, *self._orphans, return_exceptions=True)

    def first_ack_after(self, shard: str, t: float, *, not_on: str | None = None) -> float | None:
        """The first ack timestamped after ``t`` (by a node other than ``not_on``). A write the old
        primary acknowledged just before it died can be stamped a little after the fault ended
        (the client's loop was busy), so the write-unavailability window is measured to the first
        ack by another node."""
        led = self.ledgers[shard]
        after = [a for i, a in led.acked.items() if a > t and (not_on is None or led.acked_on.get(i) != not_on)]
        return min(after) if after else None

    def node_before(self, shard: str, t: float) -> str | None:
        """The node that acknowledged the shard's last write before ``t``."""
        led = self.ledgers[shard]
        before = [(a, i) for i, a in led.acked.items() if a <= t]
        return led.acked_on.get(max(before)[1]) if before else None

    async def wait_all_acked_after(self, t: float, *, timeout: float, shards: set[str] | None = None) -> bool:
        """Until every shard (of ``shards``, default all) has an ack later than ``t`` by another
        node than the one before ``t`` (True), or the timeout (False)."""
        deadline = time.monotonic() + timeout
        want = [s for s in self.ledgers if shards is None or s in shards]
        while time.monotonic() < deadline:
            if all(self.first_ack_after(s, t, not_on=self.node_before(s, t)) is not None for s in want):
                return True
            await asyncio.sleep(0.05)
        return False

    async def verify(self, *, fault_at: float | None = None, fault_over: float | None = None) -> dict[str, Any]:
        """Check every shard's ledger on its final primary. With ``fault_at``, ``rto_s`` is the
        time from the fault to the first ack after ``fault_over`` (when the fault was complete;
        default the same instant): the write-unavailability window."""
        out: dict[str, Any] = {}
        for s, led in self.ledgers.items():
            r = self.routes[s]
            present: dict[int, int] = {}
            error = None
            try:
                conn = await self._connect(r)
                async with asyncio.timeout(30), conn.cursor() as cur:
                    await cur.execute(f"SELECT id, COUNT(*) FROM {DB}.ledger GROUP BY id")
                    present = {int(i): int(c) for i, c in await cur.fetchall()}
                conn.close()
            except (pymysql.MySQLError, OSError, TimeoutError) as e:
                error = f"cannot read the ledger on {r.node}: {e}"
            acked = set(led.acked)
            lost = sorted(acked - set(present)) if error is None else None
            times = sorted(led.acked.values())
            gaps = [b - a for a, b in itertools.pairwise(times)]
            rto = None
            if fault_at is not None:
                first = self.first_ack_after(s, fault_over or fault_at, not_on=self.node_before(s, fault_at))
                rto = round(first - fault_at, 3) if first is not None else None
            out[s] = {
                "acked": len(acked),
                "attempted": led.attempted,
                "errors": led.errors,
                "in_doubt": len(led.in_doubt),
                "late_acked": len(led.late),
                "lost": None if lost is None else len(lost),
                "lost_sample": (lost or [])[:10],
                "duplicated": sum(1 for c in present.values() if c > 1),
                "unexpected": len(set(present) - acked - led.in_doubt) if error is None else None,
                "max_gap_s": round(max(gaps), 3) if gaps else None,
                "rto_s": rto,
                "final_node": r.node,
                "final_epoch": r.epoch,
                "nodes_written": led.nodes_written,
                "error": error,
            }
        return out


async def _done_before_move(f: asyncio.Future[Any], moved: asyncio.Event, timeout: float | None = None) -> bool:
    """Whether ``f`` ended before the shard's route moved (and within ``timeout``); it is left as it is."""
    m = asyncio.ensure_future(moved.wait())
    try:
        done, _ = await asyncio.wait({f, m}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        m.cancel()
    return f in done


async def _cancel(f: asyncio.Future[Any]) -> None:
    f.cancel()
    with contextlib.suppress(BaseException):
        await f


async def _or_moved(
    connect: Coroutine[Any, Any, aiomysql.Connection], moved: asyncio.Event
) -> aiomysql.Connection | None:
    """The connection; None (the attempt cancelled) if the shard's route moves first."""
    c = asyncio.ensure_future(connect)
    if await _done_before_move(c, moved):
        return c.result()
    await _cancel(c)
    return None


async def _unless_moved(conn: aiomysql.Connection, w: asyncio.Future[None], moved: asyncio.Event) -> bool:
    """Wait for the write ``w``: True once it succeeded (its error is raised); False as soon as
    the shard's route moves to another node, the write left running (a write held by a frozen or
    cut-off old primary would otherwise hold its writer for the whole timeout after writes are
    back elsewhere). Past WRITE_TIMEOUT_S it is abandoned: TimeoutError, in doubt."""
    if await _done_before_move(w, moved, WRITE_TIMEOUT_S):
        w.result()
        return True
    if moved.is_set():
        return False
    conn.close()  # first: a cancelled cursor would otherwise wait on the silent node to close
    await _cancel(w)
    raise TimeoutError("write timed out")


async def _main(a: argparse.Namespace) -> dict[str, Any]:
    cfg = load_config(a.config)
    lab = json.loads(Path(a.lab).read_text())
    wl = Workload(cfg, user=lab["app_user"], password=lab["app_password"])
    await wl.start()
    await asyncio.sleep(a.duration)
    await wl.stop()
    return {"duration_s": a.duration, "shards": await wl.verify()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.workload", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", required=True, type=Path)
    ap.add_argument("--lab", required=True, type=Path, help="the JSON printed by `sim.lab up` (app credentials)")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = asyncio.run(_main(a))
    if a.json:
        print(json.dumps(res))
    else:
        for s, r in res["shards"].items():
            print(
                f"{s}: acked {r['acked']} lost {r['lost']} duplicated {r['duplicated']} unexpected {r['unexpected']} "
                f"in doubt {r['in_doubt']} max gap {r['max_gap_s']} s on {r['final_node']}"
            )
    bad = any(r["lost"] != 0 or r["duplicated"] or r["unexpected"] for r in res["shards"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
