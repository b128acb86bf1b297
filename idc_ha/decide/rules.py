"""decide(): one tick's verdicts, sync-state records, alerts and plans. Pure: no I/O, no clock.

Order of evaluation, first match wins per shard:

1. an operation in flight is resumed (whatever else is true: a half-done failover is finished);
2. every IDC of the main city has failed -> critical alert, no action anywhere (promote-city is
   a human's call);
3. the IDC of the shard's primary is down -> paused or rule off: alert; no RPO=0 proof: alert
   why; else start an IDC failover to the recorded acker;
4. the primary is dead but its IDC is up -> alert (node failover comes in a later version);
5. the primary is unreachable and nobody confirms -> alert, no action;
6. otherwise no action, with the reason logged.
"""

from __future__ import annotations

from collections.abc import Mapping

from idc_ha.decide.contact import Contact, update_contacts
from idc_ha.decide.invariants import check, check_plan
from idc_ha.decide.layout import new_ackers
from idc_ha.decide.plan import (
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
from idc_ha.decide.verdicts import Health, Verdicts, assess
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
    contacts: Mapping[ShardName, Contact] | None = None,
) -> Decision:
    """Decide one tick. ``history`` is oldest first and ends with this tick's snapshot.

    Returns the decision: records to write first, then alerts and plans, with the verdicts it
    was based on. Raises InvariantViolation if a plan would break a safety invariant: a bug,
    and nothing may be executed.
    """
    snap = history[-1]
    v = assess(history, topology, policy.detection)
    alerts: list[Alert] = []
    reasons: dict[ShardName, str] = {}
    changed: dict[ShardName, ShardRecord] = {}
    plans: list[ShardPlan] = []
    recs: dict[ShardName, ShardRecord] = {}

    for shard in topology.shards:
        old = records.get(shard.name)
        rec = old or home_record(topology, shard.name, wall=wall)
        if old is None:
            mismatch = home_mismatch(rec, snap, topology)
            if mismatch is not None:
                # Never adopt the home layout from the config over a reality that differs: after a
                # failover with a lost store, that would route clients back to the old primary
                # and fence the real one.
                alerts.append(
                    Alert(
                        kind=AlertKind.UNADOPTED,
                        severity=Severity.CRITICAL,
                        shard=shard.name,
                        reason=f"the store has no record for {shard.name} and the servers do not match the home "
                        f"layout: {mismatch}; the controller takes no action on this shard",
                        hint="restore state_dir from a backup, or make the servers match the home layout",
                    )
                )
                reasons[shard.name] = f"no action: not adopted ({mismatch})"
                continue
        new = next_record(rec, snap, topology, wall=wall)
        if old is None or new is not rec:
            changed[shard.name] = new
        if new.sync != rec.sync:
            alerts.append(_sync_alert(new, before=rec.sync))
        recs[shard.name] = new

    seen = update_contacts(contacts or {}, history, recs)
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
    decision = Decision(
        records=changed, plans=tuple(kept), alerts=tuple(alerts), reasons=reasons, verdicts=v, contacts=seen
    )
    check(decision, records, snap, topology)
    return decision


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
        proof = prove_idc_failover(rec, snap, t, contact, lookback_s=policy.proof.lookback_s)
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


def home_mismatch(rec: ShardRecord, snap: Snapshot, t: Topology) -> str | None:
    """Why the servers do not look like the home layout ``rec`` describes, or None when they do:
    the home primary answers and is the only writable node, and the acker replicates from it."""
    p = snap.nodes.get(rec.primary)
    if p is None or not p.reachable:
        return f"the home primary {rec.primary} does not answer"
    if p.read_only:
        return f"the home primary {rec.primary} is read-only"
    others = [
        n.name
        for n in t.nodes_by_shard[rec.shard]
        if n.name != rec.primary and (o := snap.nodes.get(n.name)) and o.writable
    ]
    if others:
        return f"{', '.join(others)} writable besides the home primary"
    host, port = t.address_of(rec.primary)
    for a in rec.ackers:
        o = snap.nodes.get(a)
        if (
            o is None
            or not o.reachable
            or o.replica is None
            or (o.replica.source_host, o.replica.source_port)
            != (
                host,
                port,
            )
        ):
            return f"the acker {a} does not replicate from {rec.primary}"
    return None


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
