"""Fence on return: keep re-dialling fenced-out nodes and make them read-only the moment they
answer.

A returning ex-primary may still have read_only=0 (it never heard it was replaced). Every
``fence_redial_s`` the scheduler calls ``Fencer.sweep()``; each pending node without a fence in
flight gets a *fresh* connection whose first statement is ``SET GLOBAL read_only=ON``.

If a session on that node still waits for a semi-sync ack (a commit from before the partition),
``SET GLOBAL read_only=ON`` waits for it too ("Waiting for backup lock"), and that commit can
never be acked: its acker was detached. We never KILL it (that would commit it without an ack)
and never switch semi-sync off there (same effect). Instead the fence statement is left pending,
with a long timeout: while it waits, MariaDB queues every new write behind it, so the node takes
no new commits; an alert tells the operator to restart it as a replica (``init_rpl_role=SLAVE``
discards the never-acknowledged tail). Once the statement completes the node leaves
``fence_pending`` and stays ``out`` of the layout until it is rejoined or rebuilt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

import structlog

from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import Store
from idc_ha.errors import NodeError, NodeUnreachable
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import NodeName, ShardName
from idc_ha.notify.alerts import AlertSink
from idc_ha.ports import Admin

log = structlog.get_logger("idc_ha.fence")

PENDING_FENCE_TIMEOUT_S = 120.0  # how long one fence statement may stay queued before it is re-issued
BLOCKED_AFTER_S = 1.0  # a fence still pending after this long is reported as blocked


def pending(book: RecordBook, adopted: Collection[ShardName] | None = None) -> dict[NodeName, ShardName]:
    """Node -> shard for every node to fence: recorded as pending, or one an operation in flight
    fences (its old primary and any stray writable node). With ``adopted``, only shards in it: a
    record (or an operation) reality has not been seen to match may be stale, and fencing from it
    could fence the real primary. A running controller's own operations are always adopted."""
    out: dict[NodeName, ShardName] = {}
    for rec in book.all().values():
        if adopted is not None and rec.shard not in adopted:
            continue
        for n in rec.fence_pending:
            out[n] = rec.shard
        if rec.op is not None:
            for n in (rec.op.old_primary, *rec.op.fence):
                if n != rec.op.target:
                    out[n] = rec.shard
    return out


class Fencer:
    def __init__(
        self,
        admin: Admin,
        book: RecordBook,
        store: Store,
        alerts: AlertSink,
        *,
        adopted: Callable[[], Collection[ShardName]] | None = None,
    ) -> None:
        self.admin, self.book, self.store, self.alerts = admin, book, store, alerts
        self._adopted = adopted
        self._inflight: dict[NodeName, asyncio.Task[None]] = {}

    async def sweep(self) -> None:
        """Start a fence attempt for every pending node (of an adopted shard) that has none in flight."""
        for node, shard in pending(self.book, self._adopted() if self._adopted else None).items():
            t = self._inflight.get(node)
            if t is None or t.done():
                self._inflight[node] = asyncio.create_task(self._fence(node, shard), name=f"fence:{node}")

    async def _fence(self, node: NodeName, shard: ShardName) -> None:
        task = asyncio.create_task(
            self.admin.run(
                node, "SET GLOBAL read_only=ON", fresh=True, connect_timeout=0.25, timeout=PENDING_FENCE_TIMEOUT_S
            ),
            name=f"fence-stmt:{node}",
        )
        t0 = time.monotonic()
        try:
            done, _ = await asyncio.wait({task}, timeout=BLOCKED_AFTER_S)
            if not done:
                await self._report_blocked(node, shard)
            await task
        except NodeUnreachable:
            return  # still away: the next sweep dials again
        except NodeError as e:
            log.warning("fence failed; retrying", node=node, shard=shard, error=str(e))
            return
        await self._fenced(node, shard, waited=time.monotonic() - t0)

    async def _report_blocked(self, node: NodeName, shard: ShardName) -> None:
        try:
            rows = await self.admin.run(
                node,
                "SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_wait_sessions'",
                fetch=True,
                fresh=True,
                timeout=2.0,
            )
            waiting = int(rows[0][0]["Value"]) if rows and rows[0] else 0
        except NodeError:
            waiting = -1
        self.store.append("fence_blocked", shard=shard, node=node, waiting_sessions=waiting)
        self.alerts.emit(
            Alert(
                kind=AlertKind.FENCE_BLOCKED,
                severity=Severity.CRITICAL,
                shard=shard,
                node=node,
                reason=f"{node} is back and still writable; its fence waits behind {waiting} commit(s) waiting for a "
                "semi-sync ack that can never come (its acker was detached). New writes there queue behind the "
                "fence and are never acknowledged",
                hint=f"restart {node} as a replica (init_rpl_role=SLAVE) to discard its never-acknowledged tail; "
                "never KILL those sessions or switch semi-sync off there: that would commit them without an ack",
            )
        )

    async def _fenced(self, node: NodeName, shard: ShardName, *, waited: float) -> None:
        rec = self.book.get(shard)
        if rec is None or node not in rec.fence_pending:
            return
        await self.book.commit(
            rec.model_copy(
                update={"fence_pending": tuple(n for n in rec.fence_pending if n != node), "updated_wall": time.time()}
            )
        )
        self.store.append("fenced", shard=shard, node=node, waited_s=round(waited, 3))
        log.warning("fenced a returning node", shard=shard, node=node, waited_s=round(waited, 3))
        self.alerts.emit(
            Alert(
                kind=AlertKind.FENCED,
                severity=Severity.WARNING,
                shard=shard,
                node=node,
                reason=f"{node} answered again and was made read-only (it is out of the layout)",
                hint="it rejoins as a replica after its GTIDs are checked, or is rebuilt",
            )
        )

    async def close(self) -> None:
        for t in self._inflight.values():
            t.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
