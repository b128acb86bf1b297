"""The per-shard sync state machine: when a shard is proven synchronous, and when it stops being.

Transitions (evaluated on every tick from the current primary's observation):

================  =========================================================  ==================
from              when                                                       to
================  =========================================================  ==================
any safe state    semi-sync master off on the primary                        ASYNC
any safe state    Rpl_semi_sync_master_no_tx rose since the baseline          ASYNC
any safe state    Rpl_semi_sync_master_status OFF while enabled               ASYNC
any safe state    timeout can expire, wait point not AFTER_SYNC,             UNKNOWN
                  wait_no_slave OFF, or a node outside the recorded
                  ackers is acking
ASYNC / UNKNOWN   semi-sync on at both ends, acker connected: note the       (same, recovery
                  primary's binlog position as the target                     target recorded)
ASYNC / UNKNOWN   the acker received the target, no un-acked commit since     IDC_SAFE (acker in
                                                                              another IDC) or
                                                                              NODE_SAFE
================  =========================================================  ==================

An unreachable primary changes nothing: the last durable state is what the RPO=0 proof reads.
A restart of the primary resets its counters; the baseline records the boot time to tell.
"""

from __future__ import annotations

from idc_ha.model.ids import NodeName, SyncState
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import Baseline, Recovery, ShardRecord
from idc_ha.model.topology import Topology

BOOT_TOLERANCE_S = 5.0


def baseline_of(node: NodeName, o: NodeObservation, *, wall: float) -> Baseline:
    m = o.semisync_master
    return Baseline(primary=node, server_id=o.server_id, boot_wall=round(wall - o.uptime_s), no_tx=m.no_tx if m else 0)


def _same_boot(b: Baseline, node: NodeName, o: NodeObservation, wall: float) -> bool:
    return (
        b.primary == node and b.server_id == o.server_id and abs((wall - o.uptime_s) - b.boot_wall) <= BOOT_TOLERANCE_S
    )


def _unacked(b: Baseline | None, node: NodeName, o: NodeObservation, wall: float) -> int:
    """Commits that went through without an ack since the baseline (0 when none or no baseline)."""
    m = o.semisync_master
    if b is None or m is None:
        return 0
    if _same_boot(b, node, o, wall):
        return max(0, m.no_tx - b.no_tx)
    return m.no_tx  # restarted: the counter began again at zero


def unsafe_reason(rec: ShardRecord, snap: Snapshot, t: Topology, *, wall: float) -> tuple[SyncState, str] | None:
    """Why the shard cannot be counted synchronous right now, or None. The primary is reachable."""
    o = snap.nodes[rec.primary]
    m = o.semisync_master
    if m is None or not m.enabled:
        return SyncState.ASYNC, f"semi-sync master is off on the primary {rec.primary}"
    n = _unacked(rec.baseline, rec.primary, o, wall)
    if n:
        return (
            SyncState.ASYNC,
            f"{n} commit(s) on {rec.primary} went through without an ack (Rpl_semi_sync_master_no_tx rose)",
        )
    if not m.never_times_out:
        return (
            SyncState.UNKNOWN,
            f"rpl_semi_sync_master_timeout on {rec.primary} is {m.timeout_ms} ms: "
            "semi-sync may fall back to async unseen",
        )
    if not m.wait_no_slave:
        return (
            SyncState.UNKNOWN,
            f"rpl_semi_sync_master_wait_no_slave is OFF on {rec.primary}: "
            "commits go async unseen whenever the acker disconnects",
        )
    if not m.status:
        return (
            SyncState.ASYNC,
            f"semi-sync is enabled on {rec.primary} but not in force (Rpl_semi_sync_master_status OFF)",
        )
    if m.wait_point.upper() != "AFTER_SYNC":
        return SyncState.UNKNOWN, f"rpl_semi_sync_master_wait_point on {rec.primary} is {m.wait_point}, not AFTER_SYNC"
    host, port = t.address_of(rec.primary)
    for name in t.nodes_by_shard[rec.shard]:
        if name.name in rec.ackers or name.name == rec.primary:
            continue
        r = snap.nodes.get(name.name)
        if (
            r is not None
            and r.reachable
            and r.semisync_slave is not None
            and r.semisync_slave.status
            and r.replica is not None
            and (r.replica.source_host, r.replica.source_port) == (host, port)
        ):
            return SyncState.UNKNOWN, f"{name.name} acks commits of {rec.primary} but is not the recorded acker"
    return None


def _acker_ready(rec: ShardRecord, snap: Snapshot, t: Topology) -> str | None:
    """None when the recorded acker is connected to the primary as a semi-sync replica."""
    p = snap.nodes[rec.primary]
    if p.semisync_master is None or not p.semisync_master.status or p.semisync_master.clients < 1:
        return f"semi-sync is not in force on {rec.primary} (no semi-sync replica connected)"
    if len(rec.ackers) != 1:
        return f"{len(rec.ackers)} ackers are recorded; exactly one is proven safe"
    a = snap.nodes.get(rec.ackers[0])
    host, port = t.address_of(rec.primary)
    if a is None or not a.reachable:
        return f"the acker {rec.ackers[0]} is unreachable"
    if a.replica is None or (a.replica.source_host, a.replica.source_port) != (host, port):
        return f"the acker {rec.ackers[0]} does not replicate from {rec.primary}"
    if not a.replica.io_connected or a.semisync_slave is None or not a.semisync_slave.status:
        return f"the acker {rec.ackers[0]} is not connected as a semi-sync replica"
    return None


def safe_state(rec: ShardRecord, t: Topology) -> SyncState:
    """IDC_SAFE when every acker is outside the primary's IDC, else NODE_SAFE."""
    pidc = t.idc_of(rec.primary)
    return SyncState.IDC_SAFE if all(t.idc_of(a) != pidc for a in rec.ackers) else SyncState.NODE_SAFE


def next_record(rec: ShardRecord, snap: Snapshot, t: Topology, *, wall: float) -> ShardRecord:
    """The record after this observation; the same object when nothing changed (no write)."""
    if rec.op is not None:
        return rec  # an operation in flight owns the record
    o = snap.nodes.get(rec.primary)
    if o is None or not o.reachable:
        return rec
    bad = unsafe_reason(rec, snap, t, wall=wall)
    if bad is not None:
        state, why = bad
        if rec.sync == state and rec.recovery is None and rec.reason == why:
            return rec
        return rec.model_copy(
            update={"sync": state, "reason": why, "recovery": None, "baseline": None, "updated_wall": wall}
        )
    if rec.sync in (SyncState.IDC_SAFE, SyncState.NODE_SAFE):
        if rec.baseline is None or not _same_boot(rec.baseline, rec.primary, o, wall):
            # A clean restart (no un-acked commit since): keep the state, follow the new boot.
            return rec.model_copy(update={"baseline": baseline_of(rec.primary, o, wall=wall), "updated_wall": wall})
        return rec
    # ASYNC or UNKNOWN: climb back only on evidence, never on settings alone.
    not_ready = _acker_ready(rec, snap, t)
    if not_ready is not None:
        if rec.recovery is None and rec.reason.endswith(not_ready):
            return rec
        return rec.model_copy(update={"recovery": None, "reason": f"not proven: {not_ready}", "updated_wall": wall})
    if rec.recovery is None or _unacked(rec.recovery.baseline, rec.primary, o, wall):
        target = o.gtid_binlog_pos
        return rec.model_copy(
            update={
                "recovery": Recovery(target=target, baseline=baseline_of(rec.primary, o, wall=wall)),
                "reason": f"semi-sync on at both ends; waiting for {rec.ackers[0]} to receive {target or 'nothing'}",
                "updated_wall": wall,
            }
        )
    acker = snap.nodes[rec.ackers[0]]
    if not acker.received().contains(rec.recovery.target):
        return rec
    state = safe_state(rec, t)
    return rec.model_copy(
        update={
            "sync": state,
            "baseline": rec.recovery.baseline,
            "recovery": None,
            "reason": f"{rec.ackers[0]} received everything up to {rec.recovery.target or 'the start'} "
            f"with semi-sync in force and no un-acked commit since",
            "updated_wall": wall,
        }
    )
