"""The MariaDB 10.11 ack-receiver deadlock, and the step that wakes it.

Measured on 10.11.19 (gdb on a hung primary, after an IDC1-IDC2 partition healed under load, about
1 run in 5): the semi-sync ack receiver thread waits for a first semi-sync client to register,
while the acker's previous binlog dump thread, killed, waits for that same receiver to confirm its
removal ("Waiting to finalize termination"), and the acker's new dump thread waits for the old
one to exit before it registers ("starting"). A client added and removed while the receiver
slept leaves it asleep with the list empty again: nothing moves until some *other* semi-sync
client registers. Commits wait for an ack that cannot come; the acker's IO thread says "Yes".

Seen from outside: a writable primary with master semi-sync on and in force (waiting even with no
replica), no semi-sync client counted, the same dump thread waiting to finalize its termination
for ``rules.wake_after_s`` (tracked by processlist id: its TIME counts from the dump's start),
while the recorded acker's IO thread says it is connected to it with semi-sync on. An acker that
is simply away (reconnecting, stopped, unreachable) is no deadlock: ``commits_stuck`` names that.

The cure that acknowledges nothing: the executor attaches a semi-sync client of its own (a
reserved server id, ``act/wake.py``) that never replies and dumps in GTID mode from what the
acker holds; MariaDB counts a semi-sync replica's start as acknowledged, and starts such a dump
at the beginning of the binlog file holding that position, before every commit the acker lacks.
Its registration wakes the receiver, the old dump thread exits, the acker registers and acks what
it received. Switching semi-sync off and on would also
wake it, but releases every waiting commit without an ack: never.

Pure: one function of the record, the snapshot and the policy.
"""

from __future__ import annotations

from idc_ha.decide.acks import acking
from idc_ha.decide.plan import WakeAckReceiver
from idc_ha.decide.rules.base import shard_alert
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import ShardRecord


def hung_ack_receiver(
    rec: ShardRecord, snap: Snapshot, since: float | None, policy: Policy, *, paused: bool = False
) -> tuple[Alert, WakeAckReceiver | None] | None:
    """The alert (and, unless paused or switched off, the step) for ``rec``'s primary when its
    ack receiver is deadlocked; None when it is not. ``since``: when the dump thread now waiting
    to finalize on the primary was first seen so (``Tracks.finalizing``)."""
    p = snap.nodes.get(rec.primary)
    if p is None or not p.writable or p.semisync_master is None or since is None:
        return None
    m = p.semisync_master
    if not (m.enabled and m.status and m.wait_no_slave) or m.clients > 0:
        return None
    waited = snap.taken_at - since
    if waited < policy.rules.wake_after_s:
        return None
    ackers = [a for a in rec.ackers if acking(snap.nodes.get(a), rec.primary)]
    if not ackers:
        return None  # the acker is away, not held back: commits_stuck names it
    what = (
        f"{rec.primary}'s semi-sync ack receiver is deadlocked (MariaDB 10.11): a binlog dump thread has waited "
        f"{waited:.1f} s to finalize its termination, {ackers[0]} says it is connected but is not registered, and "
        f"{m.wait_sessions} commit(s) wait for an ack"
    )
    if paused or not policy.rules.wake_ack_receiver:
        why = "the controller is paused" if paused else "rules.wake_ack_receiver is off"
        return (
            shard_alert(
                AlertKind.ACK_RECEIVER_HUNG,
                rec,
                f"{what}; not woken: {why}",
                "resume the controller (or switch the rule on): registering any other semi-sync client wakes it. "
                "Never switch semi-sync off there: that acknowledges the waiting commits",
            ),
            None,
        )
    return (
        shard_alert(
            AlertKind.ACK_RECEIVER_HUNG,
            rec,
            f"{what}; waking it with a semi-sync client that never acks",
            "nothing to do unless it repeats; the journal records each wake",
            severity=Severity.WARNING,
        ),
        WakeAckReceiver(node=rec.primary, acker=ackers[0], reason="wake the deadlocked semi-sync ack receiver"),
    )
