"""IDC-safe again: move the acker across IDCs (``decide/rearm.py`` says when and to whom).

``rearm``, in order, each part idempotent (a crash anywhere leaves what drift and the next round
finish: the record already names the new acker, drift arms it and disarms the others, and
``decide/rearm.py`` rewires the followers):

1. the node is checked again: read-only, replicating from the primary, both threads running;
2. the record: epoch+1, ackers = (node), sync UNKNOWN, followers behind the node, written durably
   before anything changes (from here the sync state machine sees any other acker as a node
   outside the recorded ackers, so it cannot prove IDC_SAFE early);
3. the node acks (``arm``) and is seen acking before anything else changes, so commits never
   wait for nobody;
4. the old ackers stop acking (``disarm``), until the primary counts them gone;
5. each follower is rewired behind the node (``rewire``).

Nothing here can acknowledge a commit: acking is only ever switched on for a node that receives
everything the primary sends, and switching a replica's acking off can only make commits wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from idc_ha.coord.book import RecordBook
from idc_ha.decide.plan import Rearm
from idc_ha.decide.rejoin import applied
from idc_ha.errors import NodeError, StepFailed
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import NodeObservation
from idc_ha.ports import Admin

POLL_S = 0.05


async def rearm(
    admin: Admin,
    book: RecordBook,
    shard: ShardName,
    step: Rearm,
    *,
    arm: Callable[[NodeName, NodeName], Awaitable[str]],
    change_master: Callable[[NodeName], str],
    timeout_s: float,
    wall: Callable[[], float] = time.time,
) -> str:
    node, source = step.node, step.source
    o = await admin.observe(node)
    if o.writable or o.replica is None or o.source != source or not (o.replica.io_connected and o.replica.sql_ok):
        raise StepFailed(f"{node} is not a running read-only replica of {source}: not made the acker", node=node)
    rec = book.get(shard)
    if rec is None or rec.op is not None or rec.primary != source:
        raise StepFailed(f"{shard}: the layout changed since the acker move was decided", node=node)
    if rec.ackers != step.old or rec.upstreams.get(node) != source:
        raise StepFailed(f"{shard}: the ackers changed since the acker move was decided", node=node)
    ups = {**rec.upstreams, **{f: node for f in step.follow if rec.upstreams.get(f) == source}}
    if rec.ackers == (node,) and ups != rec.upstreams:
        # The acker stays: only replicas move behind it (no change to who acks, nor to the epoch).
        moved = ", ".join(f for f in step.follow if rec.upstreams.get(f) == source)
        rec = rec.model_copy(
            update={"upstreams": ups, "reason": f"{moved} behind the acker {node}", "updated_wall": wall()}
        )
        await book.commit(rec)
    elif rec.ackers != (node,):
        rec = rec.model_copy(
            update={
                "epoch": rec.epoch + 1,
                "sync": SyncState.UNKNOWN,
                "ackers": (node,),
                "upstreams": ups,
                "baseline": None,
                "recovery": None,
                "reason": f"the acker moves from {', '.join(step.old) or 'none'} to {node}: proving IDC_SAFE",
                "updated_wall": wall(),
            }
        )
        await book.commit(rec)
    done = [await arm(node, source)]
    await _until(admin, node, lambda x: _acks(x, source), f"{node} acking {source}", timeout_s)
    for old in step.old:
        if old != node:
            done.append(await disarm(admin, old))
    await _until(admin, source, _one_client, f"{source} with one semi-sync client", timeout_s)
    for f in step.follow:
        if rec.upstreams.get(f) == node:
            try:
                done.append(await rewire(admin, f, node, change_master(node), timeout_s=timeout_s))
            except (StepFailed, NodeError) as e:
                done.append(f"{f} not rewired yet ({e}); retried")
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


async def rewire(admin: Admin, node: NodeName, source: NodeName, change_master_sql: str, *, timeout_s: float) -> str:
    """``node`` replicates from ``source`` once ``source``'s binlog holds all ``node`` applied.
    If that does not come within ``timeout_s``, it goes back to replicating where it did."""
    o = await admin.observe(node)
    if o.replica is not None and o.source == source and not o.replica.io_stopped:
        return f"{node} already replicates from {source}"
    if o.writable:
        raise StepFailed(f"{node} is writable: not rewired", node=node)
    await admin.run(node, "STOP SLAVE")
    deadline = time.monotonic() + timeout_s
    while True:
        mine = applied(await admin.observe(node))
        theirs = (await admin.observe(source)).gtid_binlog_pos
        if theirs.contains(mine):
            break
        if time.monotonic() > deadline:
            await admin.run(node, "START SLAVE")
            raise StepFailed(f"{source} has not reached {node}'s {mine} (it holds {theirs}): not rewired", node=node)
        await asyncio.sleep(POLL_S)
    await admin.run(node, change_master_sql, "START SLAVE")
    return f"{node} replicates from {source} from {mine}"


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
    admin: Admin, node: NodeName, ok: Callable[[NodeObservation], bool], what: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok(await admin.observe(node)):
        if time.monotonic() > deadline:
            raise StepFailed(f"not seen within {timeout_s:.0f} s: {what}", node=node)
        await asyncio.sleep(POLL_S)
