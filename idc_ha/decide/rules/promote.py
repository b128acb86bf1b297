"""Starting a promotion: the parts the IDC and node failover rules share.

``gate`` answers for a shard that may not be touched (paused, or the rule off in the policy) or
whose acker cannot be proven complete, else gives the proof;
``to_acker`` proves the recorded acker complete and moves the shard to it (an IDC failover, or a
node failover that cannot use the local candidate); ``started`` turns an operation into the
Outcome that records it and runs its plan.
"""

from __future__ import annotations

from idc_ha.decide.layout import new_ackers
from idc_ha.decide.plans import plan_for
from idc_ha.decide.proof import Proof, prove_idc_failover
from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert, writable_strays
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import NodeName
from idc_ha.model.state import Operation, OpKind


def refused(v: ShardView, what: str, *, switch: str, on: bool) -> Outcome | None:
    """An Outcome with an alert when the shard is paused or the policy switch is off; else None."""
    rec = v.rec
    if v.control.is_paused(rec.shard):
        alert = shard_alert(
            AlertKind.PAUSED,
            rec,
            f"{what} but automatic actions are paused",
            "run `idc-ha resume` to let the controller act, or fail over by hand",
        )
        return Outcome(reason=f"no action: paused; {what}", alerts=(alert,))
    if not on:
        hint = "fail over by hand, or turn the rule on"
        alert = shard_alert(AlertKind.RULE_DISABLED, rec, f"{what}; {switch} is off in the policy", hint)
        return Outcome(reason=f"no action: {switch} off; {what}", alerts=(alert,))
    return None


def prove_acker(v: ShardView) -> Proof:
    """The RPO=0 proof that the recorded acker holds every acknowledged commit (``proof``)."""
    return prove_idc_failover(v.rec, v.snap, v.t, v.contact, policy=v.policy.proof)


def gate(v: ShardView, what: str, *, switch: str, on: bool) -> Outcome | Proof:
    """What a failover rule meets first: an Outcome when it may not act (``refused``) or the acker
    cannot be proven complete (``not_proven``); else the proof, with its candidate."""
    no = refused(v, what, switch=switch, on=on)
    if no is not None:
        return no
    proof = prove_acker(v)
    if not proof.ok or proof.candidate is None:
        return not_proven(v, what, proof.reason)
    return proof


def cannot_lead(v: ShardView, cand: NodeName) -> str | None:
    """Why writes could not reopen on ``cand`` with semi-sync (no reachable replica of it in its
    IDC to ack), or None."""
    ackers = new_ackers(v.rec, v.t, cand)
    if not ackers:
        return f"no replica of {cand} in its IDC can ack: writes could not reopen with semi-sync"
    a = v.snap.nodes.get(ackers[0])
    if a is None or not a.reachable:
        return f"the new acker {ackers[0]} is unreachable"
    return None


def not_proven(v: ShardView, what: str, why: str) -> Outcome:
    alert = shard_alert(
        AlertKind.NOT_PROVEN_SAFE,
        v.rec,
        f"{what} but {v.rec.shard} is not promoted: {why}",
        "restore the failed primary, or promote by hand accepting the stated risk",
    )
    return Outcome(reason=f"no action: cannot prove RPO=0: {why}", alerts=(alert,))


def to_acker(
    v: ShardView,
    kind: OpKind,
    what: str,
    why: str,
    proof: Proof,
    *,
    moved: Alert | None = None,
    also_fence: tuple[NodeName, ...] = (),
    id_suffix: str = "",
) -> Outcome:
    """Move the shard to its proven acker, or alert why not; ``what`` failed, ``why`` the acker
    is the choice, ``moved`` an extra alert, ``also_fence`` nodes fenced besides the old primary
    and writable strays, ``id_suffix`` tells the operation from one it replaces."""
    rec, snap = v.rec, v.snap
    assert proof.ok and proof.candidate is not None
    no = cannot_lead(v, proof.candidate)
    if no is not None:
        return not_proven(v, what, no)
    s, p, cand = rec.shard, rec.primary, proof.candidate
    op = Operation(
        id=f"{s}/e{rec.epoch}/{kind}{id_suffix}",
        kind=kind,
        shard=s,
        old_primary=p,
        target=cand,
        new_ackers=new_ackers(rec, v.t, cand),
        fence=tuple(dict.fromkeys((p, *also_fence, *writable_strays(s, cand, snap, v.t, besides=p)))),
        seen_received=snap.nodes[cand].received(),
        reason=f"{why}; {proof.reason}",
        started_wall=v.wall,
    )
    return started(v, op, extra=(moved,) if moved else ())


def started(v: ShardView, op: Operation, *, extra: tuple[Alert, ...] = ()) -> Outcome:
    alert = shard_alert(
        AlertKind.FAILOVER_STARTED,
        v.rec,
        f"moving {op.shard} from {op.old_primary} to {op.target}: {op.reason}",
        "",
        severity=Severity.WARNING,
    )
    return Outcome(
        reason=f"{op.kind.replace('_', ' ').replace('idc', 'IDC')}: {op.old_primary} -> {op.target} ({op.reason})",
        alerts=(alert, *extra),
        plan=plan_for(op, unreachable=_unreachable(v, op.fence)),
        record=v.rec.model_copy(update={"op": op, "updated_wall": v.wall}),
    )


def _unreachable(v: ShardView, nodes: tuple[NodeName, ...]) -> frozenset[NodeName]:
    """The nodes to fence that the verdicts hold failed (dead or unreachable from here)."""
    return frozenset(n for n in nodes if v.verdicts.failed(n))
