"""Fence on return: keep re-dialling fenced-out nodes and make them read-only the moment they
answer.

A returning ex-primary may still have read_only=0 (it never heard it was replaced). Every few
hundred ms this job dials each pending node with a *fresh* connection and makes the first
statement ``SET GLOBAL read_only=ON``. Once that succeeds the node leaves ``fence_pending`` (it
stays ``out`` of the layout until it is rejoined or rebuilt). It cannot acknowledge anything
meanwhile: its acker was detached before the new primary opened.
"""

from __future__ import annotations

import asyncio

import structlog

from idc_ha.act.admin import Admin
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import Store
from idc_ha.errors import NodeError
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import NodeName
from idc_ha.notify.alerts import AlertSink

log = structlog.get_logger("idc_ha.fence")


def pending(book: RecordBook) -> dict[NodeName, str]:
    """Node -> shard for every node to fence: recorded as pending, or the old primary of an
    operation in flight."""
    out: dict[NodeName, str] = {}
    for rec in book.all().values():
        for n in rec.fence_pending:
            out[n] = rec.shard
        if rec.op is not None:
            out[rec.op.old_primary] = rec.shard
    return out


async def fence_once(admin: Admin, book: RecordBook, store: Store, alerts: AlertSink, *, wall: float) -> list[NodeName]:
    """One pass over pending nodes; returns those fenced now."""
    todo = pending(book)

    async def one(node: NodeName) -> NodeName | None:
        try:
            await admin.run(node, "SET GLOBAL read_only=ON", fresh=True, connect_timeout=0.25, timeout=2.0)
        except NodeError:
            return None
        return node

    done = [n for n in await asyncio.gather(*(one(n) for n in todo)) if n is not None]
    for node in done:
        shard = todo[node]
        rec = book.get(shard)  # type: ignore[arg-type]
        if rec is None:
            continue
        if node in rec.fence_pending:
            book.put(rec.model_copy(update={"fence_pending": tuple(n for n in rec.fence_pending if n != node),
                                            "updated_wall": wall}))
            store.append("fenced", shard=shard, node=node)
            log.warning("fenced a returning node", shard=shard, node=node)
            alerts.emit(Alert(kind=AlertKind.FENCED, severity=Severity.WARNING, shard=shard, node=node,
                              reason=f"{node} answered again and was made read-only (it is out of the layout)",
                              hint="it rejoins as a replica after its GTIDs are checked, or is rebuilt"))
    return done
