"""The last rule: the primary is alive (no action), suspect (confirming), dead while its IDC's
verdict is neither up nor down (alert: the failover rules answer for both), or unreachable from
here only (alert: one vantage point never acts)."""

from __future__ import annotations

from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert
from idc_ha.decide.verdicts import Health
from idc_ha.model.alert import AlertKind, Severity


def rule(v: ShardView) -> Outcome:
    rec = v.rec
    p = rec.primary
    pidc = v.t.idc_of(p)
    pv = v.verdicts.nodes[p]
    if pv.health == Health.ALIVE:
        return Outcome(reason=f"no action: primary {p} alive, sync {rec.sync}")
    if pv.health == Health.DEAD:
        # With the IDC up, node_failover answered; with it down, idc_failover: here it is neither.
        idc_state = v.verdicts.idcs[pidc]
        where = f"IDC {pidc} is {idc_state} (not confirmed down: some of its machines have no witness)"
        alert = shard_alert(
            AlertKind.PRIMARY_UNREACHABLE,
            rec,
            f"primary {p} is dead ({pv.evidence}); {where}",
            f"the controller waits for IDC {pidc}'s verdict; check its machines, or fail over by hand",
            severity=Severity.CRITICAL,
        )
        return Outcome(reason=f"no action: primary {p} dead; {where}; waiting for the IDC's verdict", alerts=(alert,))
    if pv.health == Health.UNREACHABLE:
        alert = shard_alert(
            AlertKind.PRIMARY_UNREACHABLE,
            rec,
            f"primary {p} is unreachable ({pv.evidence}) and no replica confirms it is gone",
            "check the controller's own network; no action is taken on one vantage point",
        )
        return Outcome(reason=f"no action: primary {p} unreachable from here only ({pv.evidence})", alerts=(alert,))
    return Outcome(reason=f"no action: primary {p} suspect ({pv.evidence}); confirming")
