"""Rejoin a returning node as a replica of the primary (``decide/rejoin.py`` says when).

In order, each idempotent, so a crash anywhere leaves something the next round finishes:

1. The node is read-only and no commit waits for an ack there (else the fence goes first).
2. Its replication stops (a replica of the old primary may still be applying what it sent), and
   its position is checked against the point again: nothing is changed on a node that holds
   anything past it (the next round marks it for a rebuild), unless it was judged to have
   replicated past it through a node of the layout (``Rejoin.via``) and the primary holds all it
   holds.
3. Master semi-sync off (nothing waits: checked in 1, and a read-only node takes no new commit;
   a replica with it on hangs its applier on the first replicated event), acking off,
   ``gtid_slave_pos`` set to everything it holds, and CHANGE MASTER to the primary (which drops
   its relay log: anything unapplied in it came from the old primary, and is fetched again).
4. The record puts it in the layout, durably, *before* it starts replicating: once it applies
   the new primary's commits its position lies past the point, and a round that still found it
   ``out`` would take it for errant.
5. START SLAVE.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from idc_ha.act.admin import change_master_sql
from idc_ha.coord.book import RecordBook
from idc_ha.decide.plan import Rejoin
from idc_ha.decide.rejoin import applied, errant, wrote_own
from idc_ha.errors import StepFailed
from idc_ha.model.ids import ShardName
from idc_ha.model.observation import NodeObservation
from idc_ha.model.state import ShardRecord
from idc_ha.ports import Admin


async def rejoin(
    admin: Admin, book: RecordBook, shard: ShardName, step: Rejoin, *, wall: Callable[[], float] = time.time
) -> str:
    node, source, point = step.node, step.source, step.point
    o = await admin.observe(node)
    m = o.semisync_master
    if o.writable:
        raise StepFailed(f"{node} is writable: it is fenced before it rejoins", node=node)
    if m is not None and m.wait_sessions:
        raise StepFailed(f"{node}: {m.wait_sessions} commit(s) wait for an ack there; its fence goes first", node=node)
    if o.replica is not None and not (o.replica.io_stopped and o.replica.sql_running == "No"):
        await admin.run(node, "STOP SLAVE")
        o = await admin.observe(node)
    pos = applied(o)
    if (why := errant(pos, point)) and not await _within_primary(admin, step, o):
        raise StepFailed(f"{node} holds {'; '.join(why)}: not rejoined, it needs a rebuild", node=node)
    _unchanged(book, shard, step)
    stmts = []
    if m is not None and m.enabled:
        stmts.append("SET GLOBAL rpl_semi_sync_master_enabled=OFF")
    host, port = admin.address(source)
    stmts += [
        "SET GLOBAL rpl_semi_sync_slave_enabled=OFF",
        f"SET GLOBAL gtid_slave_pos='{pos}'",
        change_master_sql(host, port, user=admin.repl_user, password=admin.repl_password),
    ]
    await admin.run(node, *stmts)
    # Read again after the last await, and commit from that: a record the daemon wrote meanwhile
    # (the shard proven ASYNC, an operation started) must not be overwritten by an older copy.
    rec = _unchanged(book, shard, step)
    await book.commit(
        rec.model_copy(
            update={
                "out": tuple(n for n in rec.out if n != node),
                "upstreams": {**rec.upstreams, node: source},
                "left_at": {n: p for n, p in rec.left_at.items() if n != node},
                "reason": f"{node} rejoined as a replica of {source}",
                "updated_wall": wall(),
            }
        )
    )
    await admin.run(node, "START SLAVE")
    return f"{node} replicates from {source} from {pos} (its point {point})"


async def _within_primary(admin: Admin, step: Rejoin, o: NodeObservation) -> bool:
    """Past its point through a node of the layout (``step.via``): judged again now that its
    replication is stopped (an IO error that came after the decision, a source changed, strict
    mode, its own writes), and the primary must hold all it holds."""
    if step.via is None or o.replica is None or o.source != step.via:
        return False
    if o.replica.last_io_errno or o.replica.last_sql_errno or not o.gtid_strict_mode:
        return False
    if wrote_own(o, step.point):
        return False
    return (await admin.observe(step.source)).gtid_binlog_pos.contains(applied(o))


def _unchanged(book: RecordBook, shard: ShardName, step: Rejoin) -> ShardRecord:
    """The shard's record, if the rejoin still fits it: no operation, the same primary, the node
    out of the layout and fenced. Else StepFailed: the next round decides again."""
    rec = book.get(shard)
    if (
        rec is None
        or rec.op is not None
        or rec.primary != step.source
        or step.node not in rec.out
        or rec.in_layout(step.node)
        or step.node in rec.fence_pending
        or step.node in rec.needs_rebuild
    ):
        raise StepFailed(f"{shard}: the layout changed since {step.node}'s rejoin was decided", node=step.node)
    return rec
