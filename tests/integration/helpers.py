"""Small clients for integration tests: app and admin connections with client-side timeouts,
and an MQTT listener that collects messages."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from typing import Any

import aiomqtt
import pymysql

from sim.harness import ROOT, Lab


def app_conn(lab: Lab, node: str, *, read_timeout: float = 10) -> pymysql.connections.Connection:
    n = lab.node(node)
    return pymysql.connect(
        host=n["host"],
        port=n["port"],
        user=lab.info["app_user"],
        password=lab.info["app_password"],
        connect_timeout=2,
        read_timeout=read_timeout,
        write_timeout=read_timeout,
        autocommit=True,
    )


def ctl_conn(
    lab: Lab, node: str, *, connect_timeout: float = 2, read_timeout: float = 10
) -> pymysql.connections.Connection:
    cfg = lab.config()
    n = lab.node(node)
    pw = cfg.credentials.password.get_secret_value() if cfg.credentials.password else ""
    return pymysql.connect(
        host=n["host"],
        port=n["port"],
        user=cfg.credentials.user,
        password=pw,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        write_timeout=read_timeout,
        autocommit=True,
    )


def sql(conn: pymysql.connections.Connection, *stmts: str) -> list[Any]:
    out: list[Any] = []
    with conn.cursor(pymysql.cursors.DictCursor) as cur:
        for s in stmts:
            cur.execute(s)
            out.append(cur.fetchall())
    return out


def writable(lab: Lab, node: str) -> bool | None:
    """True/False for read_only=0/1; None when unreachable."""
    try:
        c = app_conn(lab, node, read_timeout=3)
    except pymysql.MySQLError:
        return None
    try:
        return int(sql(c, "SELECT @@read_only AS ro")[0][0]["ro"]) == 0
    finally:
        c.close()


class MqttCollector:
    """Subscribes to a topic filter in a background thread and keeps every message."""

    def __init__(self, host: str, port: int, topic: str) -> None:
        self.host, self.port, self.topic = host, port, topic
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._t = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with aiomqtt.Client(self.host, self.port, identifier=f"test-{time.time_ns()}") as c:
            await c.subscribe(self.topic, qos=1)
            self._ready.set()
            while not self._stop.is_set():
                try:
                    async with asyncio.timeout(0.2):
                        msg = await anext(c.messages)
                except TimeoutError:
                    continue
                self.messages.append((str(msg.topic), json.loads(bytes(msg.payload))))  # type: ignore[arg-type]

    def __enter__(self) -> MqttCollector:
        self._t.start()
        if not self._ready.wait(10):
            raise TimeoutError("MQTT subscription not ready in 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(timeout=5)

    def wait_for(self, pred: Any, timeout: float) -> tuple[str, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in list(self.messages):
                if pred(m):
                    return m
            time.sleep(0.05)
        return None


def root_conn(lab: Lab, node: str, *, read_timeout: float = 10) -> pymysql.connections.Connection:
    """root over the node's unix socket: works while the controller's site is cut off from it."""
    from sim.lab import control, mysqld

    shape = control.load(lab.workdir)
    return pymysql.connect(
        unix_socket=str(mysqld.socket_path(shape, shape.node(node))),
        user="root",
        connect_timeout=2,
        read_timeout=read_timeout,
        write_timeout=read_timeout,
        autocommit=True,
    )


def root_sql(lab: Lab, node: str, *stmts: str) -> list[Any]:
    c = root_conn(lab, node)
    try:
        return sql(c, *stmts)
    finally:
        c.close()


def idc_ha_cli(lab: Lab, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idc_ha.cli", *args, "--config", str(lab.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


def retained_routing(lab: Any, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The retained routing message of every shard, as a new subscriber gets them."""
    shards = [s.name for s in lab.config().topology.shards]
    with MqttCollector("127.0.0.1", lab.info["mqtt"]["port"], f"idc-ha/{lab.config().cluster}/routing/+") as c:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and {p["shard"] for _, p in c.messages} < set(shards):
            time.sleep(0.05)
        return {p["shard"]: p for _, p in c.messages}


def assert_routing_table_agrees(lab: Any, meta_primary: str, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """Until the meta shard's idc_ha.routing (read on its primary) holds, for every shard, the
    epoch, node, host, port and idc of the retained routing message; returns the rows."""
    keys = ("epoch", "node", "host", "port", "idc")
    deadline = time.monotonic() + timeout
    while True:
        mqtt = retained_routing(lab)
        try:
            rows = {r["shard"]: r for r in sql(root_conn(lab, meta_primary), "SELECT * FROM idc_ha.routing")[0]}
        except pymysql.err.ProgrammingError:  # 1146: not created yet
            rows = {}
        want = {s: tuple(p[k] for k in keys) for s, p in mqtt.items()}
        have = {s: tuple(r[k] for k in keys) for s, r in rows.items()}
        if want and want == have:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"routing table {have} != retained MQTT {want}")
        time.sleep(0.2)
