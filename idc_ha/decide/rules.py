"""decide(): one tick's verdicts, sync-state records, alerts and plans. Pure: no I/O, no clock.

Before the rules, adoption (``adopt``): a shard whose record reality has not been seen to match
gets no action at all (no record written, no fence, no promotion), only an ``unadopted`` alert.

Order of evaluation, first match wins per shard:

1. an operation in flight is resumed (whatever else is true: a half-done failover is finished);
2. every IDC of the main city has failed -> critical alert, no action anywhere (promote-city is
   a human's call);
3. the IDC of the shard's primary is down -> paused or rule off: alert; no RPO=0 proof: alert
   why; else start an IDC failover to the recorded acker;
4. the primary is dead but its IDC is up -> alert (node failover comes in a later version);
5. the primary is unreachable and nobody confirms -> alert, no action;
6. otherwise no action, with the reason logged; drift (``drift``) is reconciled for shards with
   no operation.
"""

from __future__ import annotations

from collections.abc import Mapping

from idc_ha.decide import adopt
from idc_ha.decide.contact import Contact, update_contacts
from idc_ha.decide.drift import drift
from idc_ha.decide.invariants import check, check_plan
from idc_ha.decide.layout import new_ackers
from idc_ha.decide.memory import Memory
from idc_ha.decide.plan import (
    AnyStep,
    ArmAcker,
    CommitLayout,
    Decision,
    Detach,
    EnableMasterSemisync,
    Fence,
    OpenWrites,
    PublishRouting,
    RecordPromotionPoint,
    ShardPlan,
    StopReceiving,
    VerifySemisync,
    WaitRelayApplied,
)
from idc_ha.decide.proof import prove_idc_failover
from idc_ha.decide.syncstate import next_record
from idc_ha.decide.verdicts import Health, Verdicts, assess, latch
from idc_ha.errors import InvariantViolation
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import Control, Operation, OpKind, ShardRecord, home_record
from idc_ha.model.topology import Topology

SAFE = (SyncState.IDC_SAFE, SyncState.NODE_SAFE)


def failover_plan(op: Operation, *, also_fence: tuple[NodeName, ...] = ()) -> ShardPlan:
    """The steps of an IDC failover; the same for a fresh start and for a resume. ``also_fence``
    adds nodes seen writable since the operation started."""
    t, old = op.target, op.old_primary
    fence = tuple(dict.fromkeys((*(op.fence or (old,)), *also_fence)))
    steps = [
        *(Fence(node=n, reason=f"{n} must not take writes once {t} is primary") for n in fence),
        StopReceiving(node=t, reason=f"fix what {t} received from {old} before promoting it"),
        WaitRelayApplied(node=t, reason=f"{t}'s relay log holds the only copy of acknowledged commits"),
        RecordPromotionPoint(node=t, reason="returning nodes are judged against what the new primary holds"),
        Detach(node=t, reason=f"{t} stops being a replica of {old}"),
        EnableMasterSemisync(node=t, reason="commits on the new primary must wait for an ack"),
        *(ArmAcker(node=a, source=t, reason=f"{a} acks for {t} from now on") for a in op.new_ackers),
        VerifySemisync(primary=t, ackers=op.new_ackers, reason="never open writes before semi-sync is in force"),
        CommitLayout(primary=t, ackers=op.new_ackers, reason="the new layout is durable before writes open"),
        OpenWrites(node=t, reason=f"{t} is the shard's only writable node"),
        PublishRouting(node=t, reason="clients follow the routing topic"),
    ]
    return ShardPlan(shard=op.shard, op_id=op.id, steps=tuple(steps), reason=op.reason)


def decide(
    history: tuple[Snapshot, ...],
    topology: Topology,
    policy: Policy,
    records: Mapping[ShardName, ShardRecord],
    control: Control,
    *,
    wall: float,
    memory: Memory | None = None,
) -> Decision:
    """Decide one tick. ``history`` is oldest first and ends with this tick's snapshot; ``memory``
    is what the previous tick's Decision returned (None for a controller that just started).

    Returns the decision: records to write first, then alerts, plans and reconcile steps, with
    the verdicts it was based on. Raises InvariantViolation if a plan would break a safety
    invariant: a bug, and nothing may be executed.
    """
    mem = memory or Memory()
    snap = history[-1]
    fresh = tuple(s for s in history if mem.at is None or s.taken_at > mem.at) or (snap,)
    v = latch(assess(history, topology, policy.detection), snap, topology, mem.dead_idcs, policy.detection)
    alerts: list[Alert] = []
    reasons: dict[ShardName, str] = {}
    changed: dict[ShardName, ShardRecord] = {}
    plans: list[ShardPlan] = []
    recs: dict[ShardName, ShardRecord] = {}
    adopted: set[ShardName] = set()

    for shard in topology.shards:
        old = records.get(shard.name)
        rec = old or home_record(topology, shard.name, wall=wall)
        why_not = _adoption(rec, fresh, topology, was_adopted=shard.name in mem.adopted)
        if why_not is not None:
            alerts.append(_unadopted(rec, why_not, home=old is None, op=rec.op is not None))
            reasons[shard.name] = f"no action: not adopted ({why_not})"
            continue
        adopted.add(shard.name)
        new = next_record(rec, snap, topology, wall=wall, before=_since_last_answer(history, rec.primary))
        if old is None or new is not rec:
            changed[shard.name] = new
        if new.sync != rec.sync:
            alerts.append(_sync_alert(new, before=rec.sync))
        recs[shard.name] = new

    seen = update_contacts(mem.contacts, history, recs, max_blind_s=policy.proof.max_blind_s)
    for idc, health in v.idcs.items():
        if health == Health.DEAD:
            alerts.append(
                Alert(
                    kind=AlertKind.IDC_DOWN,
                    severity=Severity.CRITICAL,
                    idc=idc,
                    reason=f"IDC {idc} is down: all its machines are dead",
                    hint="shards proven RPO=0 move to the standby IDC automatically; check the others' alerts",
                )
            )

    main_city = topology.primary_idc.city
    city_failed = v.cities[main_city] in (Health.DEAD, Health.UNREACHABLE)
    if city_failed:
        alerts.append(
            Alert(
                kind=AlertKind.MAIN_CITY_DOWN,
                severity=Severity.CRITICAL,
                reason=f"every IDC of the main city {main_city} has failed; no automatic action",
                hint="decide on a cross-city promotion: `idc-ha promote-city` states the possible data loss",
            )
        )

    for s, rec in recs.items():
        if rec.op is not None:
            plans.append(failover_plan(rec.op, also_fence=_writable_strays(rec.shard, rec.op.target, snap, topology)))
            reasons[s] = f"resuming {rec.op.kind} {rec.op.id}: {rec.op.reason}"
            continue
        if city_failed:
            reasons[s] = f"no action: main city {main_city} down; waiting for a human (promote-city)"
            continue
        reasons[s] = _shard_rule(
            rec, snap, topology, policy, control, v, alerts, changed, plans, seen.get(s), wall=wall
        )

    # Invariants, plan by plan: a violation is a bug; that shard's plan (and the operation it
    # would have recorded) is dropped with a critical alert, the other shards go on.
    kept: list[ShardPlan] = []
    for plan in plans:
        try:
            check_plan(plan, changed, records, snap, topology)
            kept.append(plan)
        except InvariantViolation as e:
            if (
                plan.shard in changed
                and changed[plan.shard].op is not None
                and not (records.get(plan.shard) and records[plan.shard].op)
            ):
                changed[plan.shard] = changed[plan.shard].model_copy(update={"op": None})
                if records.get(plan.shard) == changed[plan.shard]:
                    del changed[plan.shard]
            alerts.append(
                Alert(
                    kind=AlertKind.FAILOVER_STUCK,
                    severity=Severity.CRITICAL,
                    shard=plan.shard,
                    reason=f"invariant violated, nothing executed: {e.message}",
                    hint="this is a bug in idc-ha: act by hand and report it",
                )
            )
            reasons[plan.shard] = f"no action: invariant violated: {e.message}"

    # Drift, for adopted shards with no operation (in flight, or started this tick).
    reconcile: dict[ShardName, tuple[AnyStep, ...]] = {}
    planned = {p.shard for p in kept}
    for s, rec in recs.items():
        current = changed.get(s, rec)
        if current.op is not None or s in planned:
            continue
        drift_alerts, steps = drift(current, snap, topology, paused=control.is_paused(s))
        alerts += drift_alerts
        if steps:
            reconcile[s] = tuple(steps)
    decision = Decision(
        records=changed,
        plans=tuple(kept),
        alerts=tuple(alerts),
        reasons=reasons,
        verdicts=v,
        reconcile=reconcile,
        memory=Memory(
            contacts=seen,
            adopted=frozenset(adopted),
            at=snap.taken_at,
            dead_idcs=frozenset(i for i, h in v.idcs.items() if h == Health.DEAD),
        ),
    )
    check(decision, records, snap, topology)
    return decision


def _since_last_answer(history: tuple[Snapshot, ...], node: NodeName) -> tuple[Snapshot, ...]:
    """The rounds before the newest one back to (and with) the last in which ``node`` answered;
    empty when it never did."""
    out: list[Snapshot] = []
    for snap in reversed(history[:-1]):
        out.append(snap)
        o = snap.nodes.get(node)
        if o is not None and o.reachable:
            return tuple(reversed(out))
    return ()


def _adoption(rec: ShardRecord, history: tuple[Snapshot, ...], t: Topology, *, was_adopted: bool) -> str | None:
    """None when the controller may act on this shard now; else why not (see ``adopt``).
    ``history`` holds the snapshots not decided on before."""
    bad = adopt.record_problem(rec, t)
    if bad is not None:
        return bad
    if rec.op is not None:
        if was_adopted:
            return None  # this controller's own operation: resumed as written
        why_op = "no snapshot"
        for snap in history:
            m = adopt.op_mismatch(rec, snap, t)
            if m is None:
                return None
            why_op = m
        return f"operation {rec.op.id} in the store no longer fits: {why_op}"
    if was_adopted:
        rival = adopt.outside_promotion(rec, history[-1], t)
        if rival is None:
            return None
        return (
            f"{rival} is writable and replicates from nothing of the shard while {rec.primary} is not: "
            "promoted by hand?"
        )
    why = "no snapshot"
    adopted_at: int | None = None
    for k, snap in enumerate(history):
        if adopted_at is None:
            why_k = adopt.mismatch(rec, snap, t)
            if why_k is None:
                adopted_at = k
            else:
                why = why_k
        elif adopt.outside_promotion(rec, snap, t) is not None:
            adopted_at, why = None, "the layout changed outside the controller at a later round"
    return None if adopted_at is not None else why


def _unadopted(rec: ShardRecord, why: str, *, home: bool, op: bool = False) -> Alert:
    what = (
        "the store has no record for it and the servers do not match the home layout"
        if home
        else f"the servers do not match its record (epoch {rec.epoch}, primary {rec.primary})"
    )
    hint = (
        "compare `idc-ha status` with the servers. Restoring a state_dir backup is safe: a record is acted "
        "on only once the servers match it, so a stale one is refused, never enforced. After a promotion by "
        "hand, keep the promoted node the only writable one; the controller stays hands-off meanwhile"
    )
    if op and rec.op is not None:
        hint = (
            f"to let the failover finish, make {rec.op.old_primary} read-only (SET GLOBAL read_only=ON) and keep "
            f"{rec.op.target} replicating from it or detached: the controller resumes it then. To keep "
            f"{rec.op.old_primary} primary instead, act by hand; the controller stays hands-off on this shard"
        )
    return Alert(
        kind=AlertKind.UNADOPTED,
        severity=Severity.CRITICAL,
        shard=rec.shard,
        epoch=rec.epoch,
        reason=f"{rec.shard}: {what}: {why}; the controller takes no action on this shard (no fence, no failover)",
        hint=hint,
    )


def _shard_rule(
    rec: ShardRecord,
    snap: Snapshot,
    t: Topology,
    policy: Policy,
    control: Control,
    v: Verdicts,
    alerts: list[Alert],
    changed: dict[ShardName, ShardRecord],
    plans: list[ShardPlan],
    contact: Contact | None,
    *,
    wall: float,
) -> str:
    s, p = rec.shard, rec.primary
    pidc = t.idc_of(p)
    pv = v.nodes[p]
    if pv.health == Health.ALIVE:
        return f"no action: primary {p} alive, sync {rec.sync}"
    if v.idcs[pidc] == Health.DEAD and pv.health == Health.SUSPECT:
        return f"no action yet: IDC {pidc} is down, confirming that primary {p} failed ({pv.evidence})"
    if v.idcs[pidc] == Health.DEAD:
        if control.is_paused(s):
            alerts.append(
                _alert(
                    AlertKind.PAUSED,
                    rec,
                    f"IDC {pidc} is down but automatic actions are paused",
                    "run `idc-ha resume` to let the controller act, or fail over by hand",
                )
            )
            return f"no action: paused; IDC {pidc} of primary {p} is down"
        if not policy.rules.auto_idc_failover:
            alerts.append(
                _alert(
                    AlertKind.RULE_DISABLED,
                    rec,
                    f"IDC {pidc} is down; auto_idc_failover is off in the policy",
                    "fail over by hand, or turn the rule on",
                )
            )
            return f"no action: auto_idc_failover off; IDC {pidc} of primary {p} is down"
        proof = prove_idc_failover(rec, snap, t, contact, policy=policy.proof)
        ackers = new_ackers(rec, t, proof.candidate) if proof.candidate else ()
        if proof.ok and proof.candidate and not ackers:
            proof = proof.model_copy(
                update={
                    "ok": False,
                    "reason": f"no replica of {proof.candidate} in its IDC "
                    "can ack: writes could not reopen with semi-sync",
                }
            )
        if proof.ok and proof.candidate:
            a = snap.nodes.get(ackers[0])
            if a is None or not a.reachable:
                proof = proof.model_copy(update={"ok": False, "reason": f"the new acker {ackers[0]} is unreachable"})
        if not proof.ok or proof.candidate is None:
            alerts.append(
                _alert(
                    AlertKind.NOT_PROVEN_SAFE,
                    rec,
                    f"IDC {pidc} is down but {s} is not promoted: {proof.reason}",
                    "restore the IDC, or promote by hand accepting the stated risk",
                )
            )
            return f"no action: cannot prove RPO=0: {proof.reason}"
        strays = _writable_strays(s, proof.candidate, snap, t, besides=p)
        op = Operation(
            id=f"{s}/e{rec.epoch}/{OpKind.IDC_FAILOVER}",
            kind=OpKind.IDC_FAILOVER,
            shard=s,
            old_primary=p,
            target=proof.candidate,
            new_ackers=ackers,
            fence=(p, *strays),
            seen_received=snap.nodes[proof.candidate].received(),
            reason=f"IDC {pidc} down ({pv.evidence}); {proof.reason}",
            started_wall=wall,
        )
        changed[s] = rec.model_copy(update={"op": op, "updated_wall": wall})
        plans.append(failover_plan(op))
        alerts.append(
            _alert(
                AlertKind.FAILOVER_STARTED,
                rec,
                f"moving {s} from {p} to {proof.candidate}: {op.reason}",
                "",
                severity=Severity.WARNING,
            )
        )
        return f"IDC failover: {p} -> {proof.candidate} ({op.reason})"
    if pv.health == Health.DEAD:
        idc_state = v.idcs[pidc]
        where = (
            f"IDC {pidc} is up"
            if idc_state == Health.ALIVE
            else f"IDC {pidc} is {idc_state} (not confirmed down: some of its machines have no witness)"
        )
        alerts.append(
            _alert(
                AlertKind.PRIMARY_UNREACHABLE,
                rec,
                f"primary {p} is dead ({pv.evidence}); {where}",
                "node-level failover is manual in this version",
                severity=Severity.CRITICAL,
            )
        )
        return f"no action: primary {p} dead; {where}; node failover is not automated yet"
    if pv.health == Health.UNREACHABLE:
        alerts.append(
            _alert(
                AlertKind.PRIMARY_UNREACHABLE,
                rec,
                f"primary {p} is unreachable ({pv.evidence}) and no replica confirms it is gone",
                "check the controller's own network; no action is taken on one vantage point",
            )
        )
        return f"no action: primary {p} unreachable from here only ({pv.evidence})"
    return f"no action: primary {p} suspect ({pv.evidence}); confirming"


def _writable_strays(
    shard: ShardName, target: NodeName, snap: Snapshot, t: Topology, *, besides: NodeName | None = None
) -> tuple[NodeName, ...]:
    """Nodes of the shard seen writable, other than the target (and ``besides``): fenced before writes open."""
    return tuple(
        n.name
        for n in t.nodes_by_shard[shard]
        if n.name not in (target, besides) and (o := snap.nodes.get(n.name)) is not None and o.writable
    )


def _alert(
    kind: AlertKind, rec: ShardRecord, reason: str, hint: str, *, severity: Severity = Severity.CRITICAL
) -> Alert:
    return Alert(
        kind=kind, severity=severity, shard=rec.shard, node=rec.primary, reason=reason, hint=hint, epoch=rec.epoch
    )


def _sync_alert(rec: ShardRecord, *, before: SyncState) -> Alert:
    if rec.sync in SAFE:
        return Alert(
            kind=AlertKind.SYNC_RESTORED,
            severity=Severity.INFO,
            shard=rec.shard,
            node=rec.primary,
            epoch=rec.epoch,
            reason=f"{rec.shard} is {rec.sync} (was {before}): {rec.reason}",
        )
    return Alert(
        kind=AlertKind.SYNC_DEGRADED,
        severity=Severity.WARNING if before not in SAFE else Severity.CRITICAL,
        shard=rec.shard,
        node=rec.primary,
        epoch=rec.epoch,
        reason=f"{rec.shard} is {rec.sync} (was {before}): {rec.reason}",
        hint="no automatic promotion until the shard is proven synchronous again",
    )
