"""The per-shard sync state machine: when a shard is proven synchronous, and when it stops being.

Transitions (evaluated on every tick from the current primary's observation):

================  =========================================================  ==================
from              when                                                       to
================  =========================================================  ==================
any safe state    gtid_strict_mode OFF on a reachable node of the layout      UNKNOWN
any safe state    semi-sync master off on the primary                        ASYNC
any safe state    Rpl_semi_sync_master_no_tx or _no_times rose since the      ASYNC
                  baseline (a commit without an ack; semi-sync switched off)
any safe state    either counter fell within one boot (FLUSH STATUS), or      UNKNOWN
                  the primary restarted (unwatched from boot to first answer)
any safe state    Rpl_semi_sync_master_status OFF while enabled               ASYNC
any safe state    timeout can expire, wait point not AFTER_SYNC,             UNKNOWN
                  wait_no_slave OFF
any safe state    a node outside the recorded ackers could ack: it acks,      UNKNOWN
                  the primary counts more semi-sync clients than recorded
                  ackers, or yes_tx rose while the recorded acker could
                  not have acked (a client the controller cannot see)
ASYNC / UNKNOWN   semi-sync on at both ends, acker connected: note the       (same, recovery
                  primary's binlog position as the target                     target recorded)
ASYNC / UNKNOWN   the acker received the target, no un-acked commit since     IDC_SAFE (acker in
                                                                              another IDC) or
                                                                              NODE_SAFE
================  =========================================================  ==================

An unreachable primary changes nothing: the last durable state is what the RPO=0 proof reads.
Sources are compared as topology nodes matched by resolved address (``ReplicaStatus.source``); an
unknown source counts as a possible acker, never as "not the primary's".
"""

from __future__ import annotations

from collections.abc import Mapping

from idc_ha.decide.acks import AckerSeen, AckWatch
from idc_ha.model.ids import NodeName, SyncState
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import Baseline, Recovery, ShardRecord
from idc_ha.model.topology import Topology

BOOT_TOLERANCE_S = 5.0

Unsafe = tuple[SyncState, str]


def boot_wall(o: NodeObservation, snap_wall: float, taken_at: float) -> float:
    """When the server started, on the wall clock (durable baselines outlive this process's clock)."""
    return snap_wall - (taken_at - o.booted_at)


def baseline_of(node: NodeName, o: NodeObservation, *, wall: float, taken_at: float) -> Baseline:
    """The counters now, as the baseline a proven-safe record keeps; ``taken_at`` is the monotonic
    time matching ``wall``."""
    m = o.semisync_master
    return Baseline(
        primary=node,
        server_id=o.server_id,
        boot_wall=round(boot_wall(o, wall, taken_at)),
        no_tx=m.no_tx if m else 0,
        no_times=m.no_times if m else 0,
    )


Boots = Mapping[NodeName, tuple[float, float]]  # node -> (a baseline's boot_wall, booted_at seen with it)


def same_boot(b: Baseline, node: NodeName, o: NodeObservation, snap: Snapshot, boots: Boots | None = None) -> bool:
    """Whether ``o`` is the server boot ``b`` was taken in. The baseline is durable, so its boot is
    on the wall clock, compared within BOOT_TOLERANCE_S; but once this controller has matched it
    (``boots``, remembered by ``remember_boot``), the boot time on the decision clock decides, so
    a step of the wall clock (NTP, a resumed VM) is not taken for a restart."""
    if b.primary != node or b.server_id != o.server_id:
        return False
    known = boots.get(node) if boots else None
    if known is not None and known[0] == b.boot_wall:
        return o.booted_at == known[1]
    return abs(boot_wall(o, snap.wall, snap.taken_at) - b.boot_wall) <= BOOT_TOLERANCE_S


def remember_boot(boots: dict[NodeName, tuple[float, float]], rec: ShardRecord, snap: Snapshot) -> None:
    """Remember the boot of the primary that ``rec``'s baseline was matched with in ``snap``."""
    b = rec.baseline or (rec.recovery.baseline if rec.recovery else None)
    o = snap.nodes.get(rec.primary)
    if b is None or o is None or not o.reachable:
        return
    known = boots.get(rec.primary)
    if known is not None and known[0] == b.boot_wall:
        return
    if same_boot(b, rec.primary, o, snap):
        boots[rec.primary] = (b.boot_wall, o.booted_at)


def counters_moved(
    b: Baseline | None, node: NodeName, o: NodeObservation, snap: Snapshot, boots: Boots | None = None
) -> Unsafe | None:
    """Why the semi-sync counters no longer prove every commit was acked since ``b``, or None."""
    m = o.semisync_master
    if b is None or m is None:
        return None
    if not same_boot(b, node, o, snap, boots):
        if m.no_tx or m.no_times:
            return SyncState.ASYNC, (
                f"{node} restarted and since then {m.no_tx} commit(s) went through without an ack and semi-sync "
                f"was switched off {m.no_times} time(s)"
            )
        return SyncState.UNKNOWN, (
            f"{node} restarted: its semi-sync state was unwatched from its start until it answered; proving again"
        )
    if b.no_times is None:
        return SyncState.UNKNOWN, (
            f"the baseline of {node} predates watching Rpl_semi_sync_master_no_times; proving again"
        )
    if m.no_tx < b.no_tx or m.no_times < b.no_times:
        return SyncState.UNKNOWN, (
            f"the semi-sync counters of {node} went back within one boot (no_tx {b.no_tx} -> {m.no_tx}, "
            f"no_times {b.no_times} -> {m.no_times}; FLUSH STATUS?): a commit without an ack may be hidden"
        )
    if m.no_tx > b.no_tx:
        return SyncState.ASYNC, (
            f"{m.no_tx - b.no_tx} commit(s) on {node} went through without an ack (Rpl_semi_sync_master_no_tx rose)"
        )
    if m.no_times > b.no_times:
        return SyncState.ASYNC, (
            f"semi-sync on {node} was switched off {m.no_times - b.no_times} time(s) "
            "(Rpl_semi_sync_master_no_times rose): commits may have gone through without an ack"
        )
    return None


def _strict_mode(rec: ShardRecord, snap: Snapshot) -> Unsafe | None:
    for name in (rec.primary, *rec.replicas()):
        o = snap.nodes.get(name)
        if o is not None and o.reachable and not o.gtid_strict_mode:
            return SyncState.UNKNOWN, (
                f"gtid_strict_mode is OFF on {name}: GTID positions cannot be compared safely; "
                f"SET GLOBAL gtid_strict_mode=ON on {name} and set it in its config file"
            )
    return None


def _other_ackers(rec: ShardRecord, snap: Snapshot, t: Topology, watch: AckWatch | None) -> Unsafe | None:
    """Whether a node other than the recorded acker could be acking the primary's commits:

    * the primary counts more semi-sync clients than there are recorded ackers;
    * a node of the shard outside the recorded ackers acks (its source being the primary, or an
      address that matches no node: unknown counts as possible);
    * ``Rpl_semi_sync_master_yes_tx`` rose since the primary's previous answer (``watch``) while
      the recorded acker cannot have acked: seen in some round since, acking in none, and holding
      the same in all it was seen (``acks``). That is a client the controller cannot see (a
      replica it cannot reach, or one outside the topology). A stale client count (a dump thread
      left over from a cut link, measured) acks nothing and is no evidence.
    """
    p = snap.nodes[rec.primary]
    m = p.semisync_master
    clients = m.clients if m else 0
    if clients > len(rec.ackers):
        return SyncState.UNKNOWN, (
            f"{rec.primary} counts {clients} semi-sync replicas but {len(rec.ackers)} acker(s) are recorded: "
            "another replica may ack commits the acker never received"
        )
    for n in t.nodes_by_shard[rec.shard]:
        name = n.name
        if name == rec.primary or name in rec.ackers:
            continue
        o = snap.nodes.get(name)
        if o is None or not o.reachable or o.semisync_slave is None or not o.semisync_slave.status:
            continue
        if o.source is None or o.source == rec.primary:
            return SyncState.UNKNOWN, f"{name} acks commits of {rec.primary} but is not the recorded acker"
    p0 = watch.last if watch is not None and watch.primary == rec.primary else None
    m0 = p0.semisync_master if p0 is not None else None
    if m is None or m0 is None or p0 is None or p0.server_id != p.server_id:
        return None
    if m.yes_tx < m0.yes_tx:
        return SyncState.UNKNOWN, (
            f"Rpl_semi_sync_master_yes_tx on {rec.primary} went back ({m0.yes_tx} -> {m.yes_tx}): a restart "
            "too quick for its boot time to show, or FLUSH STATUS; proving again"
        )
    if m.yes_tx == m0.yes_tx:
        return None
    assert watch is not None
    for a in rec.ackers:
        if watch.seen.get(a, AckerSeen()).add(snap.nodes.get(a), rec.primary).could_have_acked():
            return None
    return SyncState.UNKNOWN, (
        f"{m.yes_tx - m0.yes_tx} commit(s) on {rec.primary} were acknowledged while the recorded acker "
        f"{', '.join(rec.ackers)} was not acking: another semi-sync client (unseen, or outside the topology) acks"
    )


def unsafe_reason(
    rec: ShardRecord,
    snap: Snapshot,
    t: Topology,
    *,
    wall: float,
    acks: AckWatch | None = None,
    boots: Boots | None = None,
) -> Unsafe | None:
    """Why the shard cannot be counted synchronous right now, or None. The primary is reachable;
    ``acks`` is what was seen since its previous answer, to tell who acked in between."""
    o = snap.nodes[rec.primary]
    m = o.semisync_master
    strict = _strict_mode(rec, snap)
    if strict is not None:
        return strict
    if m is None or not m.enabled:
        return SyncState.ASYNC, f"semi-sync master is off on the primary {rec.primary}"
    if rec.sync in (SyncState.IDC_SAFE, SyncState.NODE_SAFE) and rec.baseline is None:
        return SyncState.UNKNOWN, f"no semi-sync counter baseline is recorded for {rec.primary}; proving again"
    moved = counters_moved(rec.baseline, rec.primary, o, snap, boots)
    if moved is not None:
        return moved
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
    return _other_ackers(rec, snap, t, acks)


def _acker_ready(rec: ShardRecord, snap: Snapshot) -> str | None:
    """None when the recorded acker is connected to the primary as a semi-sync replica."""
    p = snap.nodes[rec.primary]
    if p.semisync_master is None or not p.semisync_master.status or p.semisync_master.clients < 1:
        return f"semi-sync is not in force on {rec.primary} (no semi-sync replica connected)"
    if len(rec.ackers) != 1:
        return f"{len(rec.ackers)} ackers are recorded; exactly one is proven safe"
    a = snap.nodes.get(rec.ackers[0])
    if a is None or not a.reachable:
        return f"the acker {rec.ackers[0]} is unreachable"
    if a.replica is None or a.source != rec.primary:
        return f"the acker {rec.ackers[0]} does not replicate from {rec.primary}"
    if not a.replica.io_connected or a.semisync_slave is None or not a.semisync_slave.status:
        return f"the acker {rec.ackers[0]} is not connected as a semi-sync replica"
    return None


def safe_state(rec: ShardRecord, t: Topology) -> SyncState:
    """IDC_SAFE when every acker is outside the primary's IDC, else NODE_SAFE."""
    pidc = t.idc_of(rec.primary)
    return SyncState.IDC_SAFE if all(t.idc_of(a) != pidc for a in rec.ackers) else SyncState.NODE_SAFE


def next_record(
    rec: ShardRecord,
    snap: Snapshot,
    t: Topology,
    *,
    wall: float,
    acks: AckWatch | None = None,
    boots: Boots | None = None,
) -> ShardRecord:
    """The record after this observation; the same object when nothing changed (no write).
    Boot times come from the snapshot's own wall clock (uptime was read then); ``wall`` only
    stamps the record."""
    if rec.op is not None:
        return rec  # an operation in flight owns the record
    o = snap.nodes.get(rec.primary)
    if o is None or not o.reachable:
        return rec
    bad = unsafe_reason(rec, snap, t, wall=wall, acks=acks, boots=boots)
    if bad is not None:
        state, why = bad
        if rec.sync == state and rec.recovery is None and rec.reason == why:
            return rec
        return rec.model_copy(
            update={"sync": state, "reason": why, "recovery": None, "baseline": None, "updated_wall": wall}
        )
    if rec.sync in (SyncState.IDC_SAFE, SyncState.NODE_SAFE):
        return rec
    # ASYNC or UNKNOWN: climb back only on evidence, never on settings alone.
    not_ready = _acker_ready(rec, snap)
    if not_ready is not None:
        if rec.recovery is None and rec.reason.endswith(not_ready):
            return rec
        return rec.model_copy(update={"recovery": None, "reason": f"not proven: {not_ready}", "updated_wall": wall})
    if rec.recovery is None or counters_moved(rec.recovery.baseline, rec.primary, o, snap, boots) is not None:
        target = o.gtid_binlog_pos
        return rec.model_copy(
            update={
                "recovery": Recovery(
                    target=target, baseline=baseline_of(rec.primary, o, wall=snap.wall, taken_at=snap.taken_at)
                ),
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
