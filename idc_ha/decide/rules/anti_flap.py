"""Anti-flap: no second automatic failover of a shard within ``rules.anti_flap_s`` of the one this
controller saw it through, unless fresh evidence proves the new primary dead.

Proven dead means: confirmed failed and witnessed (the verdict is DEAD) by a failure streak that
began after the first failover, and either refused (its machine answers, the server is gone) or
with its whole IDC confirmed down. A primary that only went silent in the window (a load spike
that kills each new primary in turn, a flapping link) waits, with a ``flap_guard`` alert, until
it is proven dead or the window ends.

The window lives in memory only: a restarted controller has none, so it never blocks the first
failover after a restart (the bug of orchestrator #1296 held a needed recovery back because an
old failover was remembered). An operation already in flight is resumed by ``resume``, before this.
"""

from __future__ import annotations

from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert
from idc_ha.decide.verdicts import Health
from idc_ha.model.alert import AlertKind, Severity


def rule(v: ShardView) -> Outcome | None:
    if v.moved_at is None:
        return None
    since = v.snap.taken_at - v.moved_at
    window = v.policy.rules.anti_flap_s
    p = v.rec.primary
    pv = v.verdicts.nodes[p]
    if since > window or pv.health != Health.DEAD:
        return None
    fresh = pv.failing_s < since
    idc_down = v.verdicts.idcs[v.t.idc_of(p)] == Health.DEAD
    if fresh and (pv.refused or idc_down):
        return None
    why = "its failure began before that failover" if not fresh else "it only went silent (no refusal, its IDC up)"
    alert = shard_alert(
        AlertKind.FLAP_GUARD,
        v.rec,
        f"{v.rec.shard} failed over {since:.0f} s ago and its primary {p} now looks dead ({pv.evidence}); "
        f"not failing over again within rules.anti_flap_s ({window:.0f} s): {why}",
        "find why primaries keep failing; fail over by hand if this one is truly gone",
        severity=Severity.CRITICAL,
    )
    return Outcome(reason=f"no action: anti-flap, failed over {since:.0f} s ago; {why}", alerts=(alert,))
