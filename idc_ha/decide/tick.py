"""decide(): one tick's verdicts, sync-state records, alerts, plans and reconcile steps.

Pure: no I/O, no clock. In order:

1. verdicts for every node, machine, IDC and city (``verdicts``), an IDC confirmed down staying
   down until one of its nodes answers (``Memory.dead_idcs``);
2. per shard, adoption (``adopt``): a shard whose record reality has not been seen to match gets
   no action at all, only an ``unadopted`` alert; then its sync state (``syncstate``);
3. what this controller watched of each primary (``contact``);
4. the rules (``rules``), first answer wins per shard;
5. the safety invariants, plan by plan (``invariants``): a violating plan is dropped with a
   critical alert, the other shards go on; then the whole decision is checked again;
6. drift (``drift``) for adopted shards with no operation: alerts, fences, and the few
   corrective steps that are always safe; returning nodes (``rejoin``); the acker moved back
   across IDCs (``rearm``); and commits stuck waiting for an ack (``stuck``).
"""

from __future__ import annotations

from collections.abc import Mapping

from idc_ha.decide.acks import watch_for
from idc_ha.decide.adopt import adoption, unadopted_alert
from idc_ha.decide.contact import update_contacts
from idc_ha.decide.drift import drift
from idc_ha.decide.invariants import check, check_plan
from idc_ha.decide.memory import Memory
from idc_ha.decide.plan import AnyStep, Decision, ShardPlan
from idc_ha.decide.rearm import rearm
from idc_ha.decide.rejoin import rejoin
from idc_ha.decide.rules import ShardView, run_rules
from idc_ha.decide.stuck import stuck_commits
from idc_ha.decide.syncstate import next_record, remember_boot
from idc_ha.decide.tracks import fold
from idc_ha.decide.verdicts import Health, assess, latch
from idc_ha.decide.wake import hung_ack_receiver
from idc_ha.errors import InvariantViolation
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import IdcName, ShardName, SyncState
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import Control, ShardRecord, home_record
from idc_ha.model.topology import Topology

SAFE = (SyncState.IDC_SAFE, SyncState.NODE_SAFE)


def decide(
    history: tuple[Snapshot, ...],
    topology: Topology,
    policy: Policy,
    records: Mapping[ShardName, ShardRecord],
    control: Control,
    *,
    wall: float,
    memory: Memory | None = None,
    stale: frozenset[ShardName] = frozenset(),
) -> Decision:
    """Decide one tick. ``history`` is oldest first and ends with this tick's snapshot; ``memory``
    is what the previous tick's Decision returned (None for a controller that just started).
    ``stale``: shards whose record was written after the oldest fresh snapshot's round began (an
    operation's step; the daemon passes one snapshot, and the book leaves out writes of only
    ``fence_pending``); no snapshot of the history is evidence about such a record, so these
    shards are left as they are this tick: no sync-state change, no adoption change, no contact
    or ack watch folded, no rule, no drift (a new primary seen before its semi-sync was switched
    on must not be recorded ASYNC, nor its acker re-armed).

    Returns the decision: records to write first, then alerts, plans and reconcile steps, with
    the verdicts it was based on. Raises InvariantViolation if a plan would break a safety
    invariant: a bug, and nothing may be executed.
    """
    mem = memory or Memory()
    snap = history[-1]
    fresh = tuple(s for s in history if mem.at is None or s.taken_at > mem.at) or (snap,)
    # Every snapshot not decided on before moves the watched state exactly as if it had been a
    # tick of its own (streaks, the IDC latch, adoption, sync-state records, ack watches, what
    # was watched of each primary); only the newest one gets rules and plans. So a decision over
    # a history equals the same history fed tick by tick, up to the first plan.
    tracks, dead = mem.tracks, mem.dead_idcs
    adopted = set(mem.adopted)
    acks = dict(mem.acks)
    boots = dict(mem.boots)
    epochs = dict(mem.epochs)
    seen = mem.contacts
    current: dict[ShardName, ShardRecord] = {}
    changed: dict[ShardName, ShardRecord] = {}
    alerts: list[Alert] = []
    unadopted: dict[ShardName, tuple[ShardRecord, str]] = {}
    durable = records  # what the store holds before this snapshot's plans: intermediate changes included
    for k, fs in enumerate(fresh):
        at_wall = wall if k == len(fresh) - 1 else fs.wall
        if k == len(fresh) - 1 and changed:
            durable = {**records, **changed}
        tracks = fold(tracks, fs)
        v = latch(assess((fs,), topology, policy.detection, tracks=tracks), fs, topology, dead, policy.detection)
        dead = frozenset(i for i, h in v.idcs.items() if h == Health.DEAD)
        unadopted = {}
        for shard in topology.shards:
            s = shard.name
            if s in stale:
                continue
            rec = current.get(s) or records.get(s) or home_record(topology, s, wall=at_wall)
            why_not = adoption(rec, (fs,), topology, was_adopted=s in adopted)
            if why_not is not None:
                adopted.discard(s)
                acks.pop(s, None)
                unadopted[s] = (rec, why_not)
                continue
            adopted.add(s)
            w = watch_for(acks.get(s), rec)
            new = next_record(rec, fs, topology, wall=at_wall, acks=w, boots=boots)
            remember_boot(boots, new, fs)
            acks[s] = watch_for(w, new).fold(fs)
            if records.get(s) is None or new is not rec:
                changed[s] = new
            if new.sync != rec.sync:
                alerts.append(sync_alert(new, before=rec.sync))
            current[s] = new
            seen_epoch = epochs.get(s)
            if seen_epoch is None or seen_epoch[0] != new.epoch:
                # A new epoch seen by this process opens the anti-flap window; the one found at start does not.
                moved = seen_epoch is not None and seen_epoch[2] != new.primary
                epochs[s] = (new.epoch, fs.taken_at if moved else (seen_epoch[1] if seen_epoch else None), new.primary)
        carried = {s: seen[s] for s in stale if s in seen}  # kept as they were, unfolded
        watched = {s: current[s] for s in adopted if s not in stale}
        seen = {**update_contacts(seen, (fs,), watched, max_blind_s=policy.proof.max_blind_s), **carried}

    reasons: dict[ShardName, str] = {s: "no decision this tick: its record changed while the probes ran" for s in stale}
    for s, (rec, why_not) in unadopted.items():
        alerts.append(
            unadopted_alert(rec, why_not, home=records.get(s) is None and s not in changed, op=rec.op is not None)
        )
        reasons[s] = f"no action: not adopted ({why_not})"
    recs = {sh.name: current[sh.name] for sh in topology.shards if sh.name in adopted and sh.name not in stale}
    alerts += _idc_alerts(v.idcs)
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

    plans: list[ShardPlan] = []
    plan_cache: dict[str, ShardPlan] = {}
    for s, rec in recs.items():
        view = ShardView(
            rec=rec,
            snap=snap,
            t=topology,
            policy=policy,
            control=control,
            verdicts=v,
            contact=seen.get(s),
            wall=wall,
            main_city=main_city,
            city_failed=city_failed,
            plans=mem.plans,
            moved_at=epochs[s][1],
        )
        out = run_rules(view)
        reasons[s] = out.reason
        alerts += out.alerts
        if out.record is not None:
            changed[s] = out.record
        if out.plan is not None:
            plans.append(out.plan)
            plan_cache[out.plan.op_id] = out.plan

    kept = _checked(plans, changed, durable, snap, topology, alerts, reasons)
    reconcile: dict[ShardName, tuple[AnyStep, ...]] = {}
    planned = {p.shard for p in kept}
    for s, rec in recs.items():
        now_rec = changed.get(s, rec)
        if now_rec.op is not None or s in planned:
            continue
        drift_alerts, steps = drift(now_rec, snap, topology, paused=control.is_paused(s))
        alerts += drift_alerts
        back_alerts, back_steps, back_rec = rejoin(now_rec, snap, paused=control.is_paused(s))
        alerts += back_alerts
        steps += back_steps
        if back_rec is not None:
            changed[s] = back_rec
        steps += rearm(back_rec or now_rec, snap, topology, policy, paused=control.is_paused(s))
        wait = tracks.waiting.get(now_rec.primary)
        if (stuck := stuck_commits(now_rec, snap, wait[0] if wait else None, policy)) is not None:
            alerts.append(stuck)
        since = tracks.finalizing.get(now_rec.primary)
        hung = hung_ack_receiver(now_rec, snap, since[1] if since else None, policy, paused=control.is_paused(s))
        if hung is not None:
            alerts.append(hung[0])
            if hung[1] is not None:
                steps.insert(0, hung[1])  # first: commits are held until it runs
        if steps:
            reconcile[s] = tuple(steps)
    # Built without validation: every part was made by this module from validated values, and at
    # thousands of shards re-validating every record and reason each tick costs more than deciding.
    decision = Decision.model_construct(
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
            tracks=tracks,
            acks=acks,
            boots=boots,
            plans=plan_cache,
            epochs=epochs,
        ),
    )
    check(decision, durable, snap, topology, plans_checked=True)
    return decision


def _checked(
    plans: list[ShardPlan],
    changed: dict[ShardName, ShardRecord],
    records: Mapping[ShardName, ShardRecord],
    snap: Snapshot,
    t: Topology,
    alerts: list[Alert],
    reasons: dict[ShardName, str],
) -> list[ShardPlan]:
    """The plans that keep the invariants. A violation is a bug: that shard's plan (and the
    operation it would have recorded) is dropped with a critical alert, the other shards go on."""
    kept: list[ShardPlan] = []
    for plan in plans:
        try:
            check_plan(plan, changed, records, snap, t)
            kept.append(plan)
        except InvariantViolation as e:
            before = records.get(plan.shard)
            if plan.shard in changed and changed[plan.shard].op is not None and not (before and before.op):
                changed[plan.shard] = changed[plan.shard].model_copy(update={"op": None})
                if before == changed[plan.shard]:
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
    return kept


def _idc_alerts(idcs: Mapping[IdcName, Health]) -> list[Alert]:
    return [
        Alert(
            kind=AlertKind.IDC_DOWN,
            severity=Severity.CRITICAL,
            idc=idc,
            reason=f"IDC {idc} is down: all its machines are dead",
            hint="shards proven RPO=0 move to the standby IDC automatically; check the others' alerts",
        )
        for idc, health in idcs.items()
        if health == Health.DEAD
    ]


def sync_alert(rec: ShardRecord, *, before: SyncState) -> Alert:
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
