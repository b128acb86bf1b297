"""The IDC of the shard's primary is down: move the shard to its recorded acker in the standby
IDC, only with the RPO=0 proof (``proof``), with a cascade there to ack once it is primary.

Paused, or the rule off in the policy: alert, no action. No proof: alert saying which condition
failed. Otherwise: the operation goes into the record (written before any step) and the plan of
``plans.idc_failover`` runs."""

from __future__ import annotations

from idc_ha.decide.layout import new_ackers
from idc_ha.decide.plans import failover_plan
from idc_ha.decide.proof import prove_idc_failover
from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert, writable_strays
from idc_ha.decide.verdicts import Health
from idc_ha.model.alert import AlertKind, Severity
from idc_ha.model.state import Operation, OpKind


def rule(v: ShardView) -> Outcome | None:
    rec, t, snap = v.rec, v.t, v.snap
    s, p = rec.shard, rec.primary
    pidc = t.idc_of(p)
    pv = v.verdicts.nodes[p]
    if v.verdicts.idcs[pidc] != Health.DEAD or pv.health == Health.ALIVE:
        return None
    if pv.health == Health.SUSPECT:
        return Outcome(reason=f"no action yet: IDC {pidc} is down, confirming that primary {p} failed ({pv.evidence})")
    if v.control.is_paused(s):
        alert = shard_alert(
            AlertKind.PAUSED,
            rec,
            f"IDC {pidc} is down but automatic actions are paused",
            "run `idc-ha resume` to let the controller act, or fail over by hand",
        )
        return Outcome(reason=f"no action: paused; IDC {pidc} of primary {p} is down", alerts=(alert,))
    if not v.policy.rules.auto_idc_failover:
        alert = shard_alert(
            AlertKind.RULE_DISABLED,
            rec,
            f"IDC {pidc} is down; auto_idc_failover is off in the policy",
            "fail over by hand, or turn the rule on",
        )
        return Outcome(reason=f"no action: auto_idc_failover off; IDC {pidc} of primary {p} is down", alerts=(alert,))
    proof = prove_idc_failover(rec, snap, t, v.contact, policy=v.policy.proof)
    ackers = new_ackers(rec, t, proof.candidate) if proof.candidate else ()
    if proof.ok and proof.candidate and not ackers:
        why = f"no replica of {proof.candidate} in its IDC can ack: writes could not reopen with semi-sync"
        proof = proof.model_copy(update={"ok": False, "reason": why})
    if proof.ok and proof.candidate:
        a = snap.nodes.get(ackers[0])
        if a is None or not a.reachable:
            proof = proof.model_copy(update={"ok": False, "reason": f"the new acker {ackers[0]} is unreachable"})
    if not proof.ok or proof.candidate is None:
        alert = shard_alert(
            AlertKind.NOT_PROVEN_SAFE,
            rec,
            f"IDC {pidc} is down but {s} is not promoted: {proof.reason}",
            "restore the IDC, or promote by hand accepting the stated risk",
        )
        return Outcome(reason=f"no action: cannot prove RPO=0: {proof.reason}", alerts=(alert,))
    strays = writable_strays(s, proof.candidate, snap, t, besides=p)
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
        started_wall=v.wall,
    )
    started = shard_alert(
        AlertKind.FAILOVER_STARTED,
        rec,
        f"moving {s} from {p} to {proof.candidate}: {op.reason}",
        "",
        severity=Severity.WARNING,
    )
    return Outcome(
        reason=f"IDC failover: {p} -> {proof.candidate} ({op.reason})",
        alerts=(started,),
        plan=failover_plan(op),
        record=rec.model_copy(update={"op": op, "updated_wall": v.wall}),
    )
