"""The IDC of the shard's primary is down: move the shard to its recorded acker in the standby
IDC, only with the RPO=0 proof (``proof``), with a cascade there to ack once it is primary.

Paused, or the rule off in the policy: alert, no action. No proof: alert saying which condition
failed. Otherwise: the operation goes into the record (written before any step) and the plan of
``plans.idc_failover`` runs."""

from __future__ import annotations

from idc_ha.decide.rules.base import Outcome, ShardView
from idc_ha.decide.rules.promote import gate, to_acker
from idc_ha.decide.verdicts import Health
from idc_ha.model.state import OpKind


def rule(v: ShardView) -> Outcome | None:
    p = v.rec.primary
    pidc = v.t.idc_of(p)
    pv = v.verdicts.nodes[p]
    if v.verdicts.idcs[pidc] != Health.DEAD or pv.health == Health.ALIVE:
        return None
    if pv.health == Health.SUSPECT:
        return Outcome(reason=f"no action yet: IDC {pidc} is down, confirming that primary {p} failed ({pv.evidence})")
    what = f"IDC {pidc} is down"
    proof = gate(v, what, switch="auto_idc_failover", on=v.policy.rules.auto_idc_failover)
    if isinstance(proof, Outcome):
        return proof
    return to_acker(v, OpKind.IDC_FAILOVER, what, f"IDC {pidc} down ({pv.evidence})", proof)
