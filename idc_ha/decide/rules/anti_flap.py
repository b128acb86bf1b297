"""Anti-flap: no second automatic failover of a shard within ``rules.anti_flap_s`` of the one this
controller saw it through, unless fresh evidence proves the new primary dead.

A DEAD verdict (confirmed failed and witnessed) goes ahead at once when the primary is proven
dead: refused (its machine answers, the server is gone) or its whole IDC confirmed down. One that
rests on timeouts alone must be re-verified: a failure streak that began after the first
failover and has lasted ``REVERIFY`` times ``detection.confirm_other_s``. Until then (a flapping
link, a load spike that stalls each new primary in turn) it waits, with a ``flap_guard`` alert;
a machine that truly died is failed over one confirmation window later than usual.

The window lives in memory only: a restarted controller has none, so it never blocks the first
failover after a restart (the bug of orchestrator #1296 held a needed recovery back because an
old failover was remembered). An operation already in flight is resumed by ``resume``, before this.
"""

from __future__ import annotations

from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert
from idc_ha.decide.verdicts import Health
from idc_ha.model.alert import AlertKind, Severity

REVERIFY = 2  # a timeout-only DEAD inside the window must hold this many confirmation windows


def rule(v: ShardView) -> Outcome | None:
    if v.moved_at is None:
        return None
    since = v.snap.taken_at - v.moved_at
    window = v.policy.rules.anti_flap_s
    p = v.rec.primary
    pv = v.verdicts.nodes[p]
    if since > window or pv.health != Health.DEAD:
        return None
    if pv.refused or v.verdicts.idcs[v.t.idc_of(p)] == Health.DEAD:
        return None  # proven dead: the server is gone (its machine answers), or its whole IDC is
    fresh = pv.failing_s <= since
    need = REVERIFY * v.policy.detection.confirm_other_s
    if fresh and pv.failing_s >= need:
        return None  # re-verified: fresh evidence, held for twice the confirmation window
    why = (
        "its failure began before that failover"
        if not fresh
        else f"it went silent {pv.failing_s:.1f} s ago; a second failover this soon needs {need:.1f} s"
    )
    alert = shard_alert(
        AlertKind.FLAP_GUARD,
        v.rec,
        f"{v.rec.shard} failed over {since:.0f} s ago and its primary {p} now looks dead ({pv.evidence}); "
        f"not failing over again within rules.anti_flap_s ({window:.0f} s) yet: {why}",
        "find why primaries keep failing; fail over by hand if this one is truly gone",
        severity=Severity.CRITICAL,
    )
    return Outcome(reason=f"no action yet: anti-flap, failed over {since:.0f} s ago; {why}", alerts=(alert,))
