"""The routing table in the meta shard: ``idc_ha.routing``, one row per shard, the same facts as
the retained MQTT routing message (``act/routing.py`` hands every message here too).

``idc_ha.routing(shard PRIMARY KEY, epoch, node, host, port, idc, updated_at)``. Compute nodes
that read their routing from the meta shard see what MQTT subscribers see.

Rows are written only to the meta shard's recorded primary, with no operation in flight on the
meta shard, only while that node is seen writable with no commit waiting for an ack there, and
only while the statement finds it writable: the controller's user may hold READ ONLY ADMIN
(it fences), which lets it write through ``read_only``, so the statement itself carries the check
(``WHERE @@global.read_only = 0``): on a fenced node it inserts nothing. A row never goes back to a
lower epoch. The write is a commit like any other: it waits for the meta shard's acker, on a
connection of its own, bounded by a timeout (never killed: lab-facts.md); what did not land is
written again on a later round, and what did is read back before it counts as written.
"""

from __future__ import annotations

from typing import Any

import structlog

from idc_ha.coord.book import RecordBook
from idc_ha.errors import NodeError
from idc_ha.model.ids import ShardName
from idc_ha.model.topology import Topology
from idc_ha.ports import Admin, Store

log = structlog.get_logger("idc_ha.routing_table")

DDL = (
    "CREATE DATABASE IF NOT EXISTS idc_ha",
    "CREATE TABLE IF NOT EXISTS idc_ha.routing (shard VARCHAR(64) NOT NULL PRIMARY KEY, epoch BIGINT NOT NULL, "
    "node VARCHAR(128) NOT NULL, host VARCHAR(255) NOT NULL, port INT NOT NULL, idc VARCHAR(64) NOT NULL, "
    "updated_at DATETIME(6) NOT NULL)",
)
READ_BACK = "SELECT shard, epoch, node, host, port, idc FROM idc_ha.routing"
FIELDS = ("epoch", "node", "host", "port", "idc")
WRITE_TIMEOUT_S = 5.0

Row = tuple[Any, ...]  # (epoch, node, host, port, idc)


def _q(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def upsert_sql(payloads: list[dict[str, Any]]) -> str:
    """One statement for every row; it inserts nothing on a read-only server, and an existing row
    changes only for a higher or equal epoch (``epoch`` is assigned last: MariaDB evaluates the
    assignments in order, so the others still compare with the old one)."""
    rows = " UNION ALL ".join(
        f"SELECT {_q(p['shard'])} AS n_shard, {int(p['epoch'])} AS n_epoch, {_q(p['node'])} AS n_node, "
        f"{_q(p['host'])} AS n_host, {int(p['port'])} AS n_port, {_q(p['idc'])} AS n_idc, "
        f"FROM_UNIXTIME({float(p['ts']):.6f}) AS n_updated_at"
        for p in payloads
    )
    cur = "idc_ha.routing"
    sets = ", ".join(
        f"{c}=IF(VALUES(epoch) >= {cur}.epoch, VALUES({c}), {cur}.{c})"
        for c in ("node", "host", "port", "idc", "updated_at")
    )
    return (
        f"INSERT INTO {cur} (shard, epoch, node, host, port, idc, updated_at) "
        f"SELECT * FROM ({rows}) AS v WHERE @@global.read_only = 0 "
        f"ON DUPLICATE KEY UPDATE {sets}, epoch=GREATEST({cur}.epoch, VALUES(epoch))"
    )


class RoutingTable:
    """Rows to write, and what the meta shard was seen to hold. The daemon calls ``flush`` every
    half second (one at a time); it does nothing when no row is pending."""

    def __init__(self, admin: Admin, book: RecordBook, t: Topology, store: Store) -> None:
        self.admin, self.book, self.store = admin, book, store
        self.meta: ShardName | None = next((s.name for s in t.shards if s.meta), None)
        self.want: dict[ShardName, dict[str, Any]] = {}
        self.written: dict[ShardName, Row] = {}
        self._ddl_done_on: str | None = None

    def put(self, payload: dict[str, Any]) -> None:
        """The routing message just published for a shard: its row is written on a later flush."""
        self.want[ShardName(payload["shard"])] = payload

    def pending(self) -> list[dict[str, Any]]:
        return [p for s, p in self.want.items() if self.written.get(s) != tuple(p[f] for f in FIELDS)]

    async def flush(self) -> None:
        rows = self.pending()
        rec = self.book.get(self.meta) if self.meta is not None and rows else None
        if rec is None or rec.op is not None or not rows:
            return  # the meta shard is moving: its rows wait until it is writable in its new place
        node = rec.primary
        stmts = [*(DDL if self._ddl_done_on != node else ()), upsert_sql(rows), READ_BACK]
        try:
            o = await self.admin.observe(node)
            m = o.semisync_master
            if not o.writable or (m is not None and m.wait_sessions):
                # Not writable (the DDL carries no guard of its own), or commits already wait
                # for an ack there: one more would only add a session that blocks a later fence.
                return
            out = await self.admin.run(node, *stmts, fetch=True, fresh=True, timeout=WRITE_TIMEOUT_S)
        except NodeError as e:
            self.store.append("routing_table_failed", node=node, rows=len(rows), error=str(e)[:200])
            log.warning("routing table not written; retried", node=node, error=str(e)[:200])
            return
        self._ddl_done_on = node
        have = {ShardName(r["shard"]): tuple(r[f] for f in FIELDS) for r in out[-1]}
        done = [p["shard"] for p in rows if have.get(p["shard"]) == tuple(p[f] for f in FIELDS)]
        for s in done:
            self.written[s] = have[s]
        if done:
            self.store.append("routing_table", node=node, shards=done)
        if len(done) < len(rows):
            log.info("routing rows not written yet (meta primary read-only?)", node=node, left=len(rows) - len(done))
