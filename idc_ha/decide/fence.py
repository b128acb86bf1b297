"""Which way through a blocked fence (docs/fencing.md has the measurements behind each choice).

A returning old primary whose ``SET GLOBAL read_only=ON`` has waited ``fencing.blocked_after_s``
queues behind a commit waiting for a semi-sync ack that can never come. What each way through
leaves behind, measured on MariaDB 10.11:

* the machine's fence command (a restart as a replica, ``init_rpl_role=SLAVE``): the waiting
  client gets an error, the never-acknowledged tail is truncated, the node can rejoin: first;
* KILL of the waiting *connections*: the clients get an error, but their rows stay committed in
  the node's binlog, which is then errant and must be rebuilt: only if the policy allows it;
* neither: the fence stays queued (no write completes there) and an operator is told what to run.

Never KILL QUERY and never semi-sync off: both return OK to the waiting client with no replica
holding the row. Both escalations are taken only on a node the current record has put out of the
layout (recorded to fence, neither primary nor replica of it): the old primary of a failover
still in flight, before its new layout is recorded, is never restarted or killed into.

Pure: a function of the record, the config's facts about the node and the policy.
"""

from __future__ import annotations

from enum import StrEnum

from idc_ha.model.ids import NodeName
from idc_ha.model.policy import Fencing
from idc_ha.model.state import ShardRecord


class Way(StrEnum):
    COMMAND = "command"  # run the machine's fence command
    KILL_WAITERS = "kill_waiters"  # KILL CONNECTION of each session waiting for an ack
    WAIT = "wait"  # leave the fence queued and tell a human what to run


def out_of_layout(rec: ShardRecord | None, node: NodeName) -> bool:
    """The record has put ``node`` out: to fence, and neither its primary nor one of its replicas."""
    return rec is not None and node in rec.fence_pending and not rec.in_layout(node)


def way_through(
    rec: ShardRecord | None,
    node: NodeName,
    *,
    has_command: bool,
    command_tried: bool,
    policy: Fencing,
    adopted: bool = True,
    primary_writes: bool = True,
) -> Way:
    """How to get through ``node``'s blocked fence now; asked again every ``blocked_after_s``
    while it stays blocked, and right before each escalation. ``command_tried``: its fence
    command ran within ``policy.command_retry_s``, and yet the fence is blocked (still, or
    again). ``adopted``: the servers were seen to match the shard's record. ``primary_writes``:
    the recorded primary was just seen writable; if not, the failover may have been undone by
    hand and ``node`` be the real primary again: it is only reported."""
    if not out_of_layout(rec, node) or not adopted or not primary_writes:
        return Way.WAIT
    if has_command and not command_tried:
        return Way.COMMAND
    if policy.kill_waiters:
        return Way.KILL_WAITERS
    return Way.WAIT
