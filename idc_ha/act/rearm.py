"""IDC-safe again: move the acker across IDCs (``decide/rearm.py`` says when and to whom).

``rewire`` moves a replica of the primary behind the acker-to-be (or the acker): it stops, waits
(briefly: an operation of the shard goes first) until that node's binlog holds all it applied,
CHANGE MASTER, the record says so, and it starts again, whatever happened (it is a replica of a
node that holds all it has).

``rearm``, in order, each part idempotent (a crash anywhere leaves what drift and the next round
finish: the record already names the new acker, drift arms it, then disarms the others):

1. the node is checked again: read-only, replicating from the primary, both threads running, and
   the primary is seen writable;
2. the record: epoch+1, ackers = (node), sync UNKNOWN, written durably before anything changes
   (from here the sync state machine sees any other acker as a node outside the recorded ackers,
   so it cannot prove IDC_SAFE early);
3. the node acks (``arm``) and is seen acking before anything else changes, so commits never
   wait for nobody;
4. the old ackers stop acking (``disarm``), until the primary counts them gone.

Nothing here can acknowledge a commit: acking is only ever switched on for a node that receives
everything the primary sends, and switching a replica's acking off can only make commits wait.
Every wait gives up at once when an operation of the shard is recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from idc_ha.coord.book import RecordBook
from idc_ha.decide.plan import Rearm, Rewire
from idc_ha.decide.rejoin import applied
from idc_ha.errors import StepFailed
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import NodeObservation
from idc_ha.model.state import ShardRecord
from idc_ha.ports import Admin

POLL_S = 0.05
REWIRE_WAIT_S = 3.0  # how long a replica waits, stopped, for the acker to hold all it applied


async def rearm(
    admin: Admin,
    book: RecordBook,
    shard: ShardName,
    step: Rearm,
    *,
    arm: Callable[[NodeName, NodeName], Awaitable[str]],
    timeout_s: float,
    wall: Callable[[], float] = time.time,
) -> str:
    node, source = step.node, step.source
    o = await admin.observe(node)
    if o.writable or o.replica is None or o.source != source or not (o.replica.io_connected and o.replica.sql_ok):
        raise StepFailed(f"{node} is not a running read-only replica of {source}: not made the acker", node=node)
    if not (await admin.observe(source)).writable:
        raise StepFailed(f"the primary {source} is not seen writable: the acker stays", node=node)
    rec = book.get(shard)
    if rec is None or rec.op is not None or rec.primary != source:
        raise StepFailed(f"{shard}: the layout changed since the acker move was decided", node=node)
    if rec.ackers != (node,):
        if rec.ackers != step.old or rec.upstreams.get(node) != source:
            raise StepFailed(f"{shard}: the ackers changed since the acker move was decided", node=node)
        rec = rec.model_copy(
            update={
                "epoch": rec.epoch + 1,
                "sync": SyncState.UNKNOWN,
                "ackers": (node,),
                "baseline": None,
                "recovery": None,
                "reason": f"the acker moves from {', '.join(step.old) or 'none'} to {node}: proving IDC_SAFE",
                "updated_wall": wall(),
            }
        )
        await book.commit(rec)
    done = [await arm(node, source)]
    idle = _no_op(book, shard)
    await _until(admin, node, lambda x: _acks(x, source), f"{node} acking {source}", timeout_s, idle)
    for old in step.old:
        if old != node:
            done.append(await disarm(admin, old))
    await _until(admin, source, _one_client, f"{source} with one semi-sync client", timeout_s, idle)
    return f"epoch {rec.epoch}: {node} acks for {source}; " + "; ".join(done)


async def disarm(admin: Admin, node: NodeName) -> str:
    """Acking off on a replica: the setting, then an IO reconnect (the role is negotiated then)."""
    o = await admin.observe(node)
    s = o.semisync_slave
    if s is None or not (s.enabled or s.status):
        return f"{node} does not ack"
    stmts = ["SET GLOBAL rpl_semi_sync_slave_enabled=OFF"]
    if s.status and o.replica is not None and not o.replica.io_stopped:
        stmts += ["STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"]
    await admin.run(node, *stmts)
    return f"{node} acking off"


async def rewire(
    admin: Admin,
    book: RecordBook,
    shard: ShardName,
    step: Rewire,
    change_master_sql: str,
    *,
    wait_s: float = REWIRE_WAIT_S,
    wall: Callable[[], float] = time.time,
) -> str:
    node, source = step.node, step.source
    rec = _fits(book, shard, step)
    o = await admin.observe(node)
    if o.writable:
        raise StepFailed(f"{node} is writable: not rewired", node=node)
    detail = f"{node} already replicates from {source}"
    if o.replica is None or o.source != source:
        await admin.run(node, "STOP SLAVE")
        try:
            deadline = time.monotonic() + wait_s
            while True:
                mine = applied(await admin.observe(node))
                theirs = (await admin.observe(source)).gtid_binlog_pos
                if theirs.contains(mine):
                    break
                if time.monotonic() > deadline or _no_op(book, shard)() is False:
                    raise StepFailed(
                        f"{source} has not reached {node}'s {mine} (it holds {theirs}): not rewired", node=node
                    )
                await asyncio.sleep(POLL_S)
            _fits(book, shard, step)
            await admin.run(node, change_master_sql)
            detail = f"{node} replicates from {source} from {mine}"
        finally:
            await admin.run(node, "START SLAVE")  # from where it is now: the old source, or the new
    rec = _fits(book, shard, step)
    if rec.upstreams.get(node) != source:
        ups = {**rec.upstreams, node: source}
        await book.commit(rec.model_copy(update={"upstreams": ups, "reason": detail, "updated_wall": wall()}))
    return detail


def _fits(book: RecordBook, shard: ShardName, step: Rewire) -> ShardRecord:
    """The record, if the rewire still fits it: no operation, both nodes in the layout, the node
    on the primary or already behind ``source``, ``source`` a replica of the primary."""
    rec = book.get(shard)
    if (
        rec is None
        or rec.op is not None
        or rec.upstreams.get(step.source) != rec.primary
        or rec.upstreams.get(step.node) not in (rec.primary, step.source)
    ):
        raise StepFailed(f"{shard}: the layout changed since {step.node}'s rewire was decided", node=step.node)
    return rec


def _no_op(book: RecordBook, shard: ShardName) -> Callable[[], bool]:
    """True while no operation of the shard is recorded."""
    return lambda: (rec := book.get(shard)) is not None and rec.op is None


def _acks(o: NodeObservation, source: NodeName) -> bool:
    return (
        o.replica is not None
        and o.source == source
        and o.replica.io_connected
        and o.semisync_slave is not None
        and o.semisync_slave.status
    )


def _one_client(o: NodeObservation) -> bool:
    m = o.semisync_master
    return m is not None and m.status and m.clients == 1


async def _until(
    admin: Admin,
    node: NodeName,
    ok: Callable[[NodeObservation], bool],
    what: str,
    timeout_s: float,
    idle: Callable[[], bool],
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok(await admin.observe(node)):
        if not idle():
            raise StepFailed(f"an operation of the shard started: no longer waiting for {what}", node=node)
        if time.monotonic() > deadline:
            raise StepFailed(f"not seen within {timeout_s:.0f} s: {what}", node=node)
        await asyncio.sleep(POLL_S)
