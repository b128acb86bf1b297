"""Commits stuck waiting for a semi-sync ack on a shard's primary: an alert that names the shard and
how long the wait has lasted, in two cases.

* No acker is connected (``Rpl_semi_sync_master_clients`` is 0, or no recorded acker shows its
  IO thread connected with semi-sync on): clients hang until one comes back. Alerted once the
  wait has been seen in two rounds.
* An acker is connected and has received all the primary's binlog, yet commits have waited
  longer than ``alerts.stuck_commit_s``: the MariaDB 10.11 ack-receiver hang (lab-facts.md). The
  action on it comes with degrade; here it is only named.

Never a cure: KILL QUERY of a waiter or semi-sync OFF under it acknowledges it without an ack.
Pure; ``since`` comes from ``Tracks.waiting``.
"""

from __future__ import annotations

from idc_ha.decide.acks import acking
from idc_ha.decide.rules.base import shard_alert
from idc_ha.model.alert import Alert, AlertKind
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import ShardRecord

NEVER = (
    "never KILL QUERY a waiting session nor switch semi-sync off under it: both acknowledge the commit without an ack"
)


def stuck_commits(rec: ShardRecord, snap: Snapshot, since: float | None, policy: Policy) -> Alert | None:
    """The alert for ``rec``'s primary, whose commits have waited since ``since``, or None."""
    p = snap.nodes.get(rec.primary)
    if p is None or not p.reachable or p.semisync_master is None or since is None:
        return None
    m = p.semisync_master
    if m.wait_sessions <= 0:
        return None
    waited = snap.taken_at - since
    ackers = [a for a in rec.ackers if acking(snap.nodes.get(a), rec.primary)]

    def alert(reason: str, hint: str) -> Alert:
        return shard_alert(AlertKind.COMMITS_STUCK, rec, reason, f"{hint}; {NEVER}")

    if m.clients == 0 or not ackers:
        if waited <= 0:  # seen in one round only
            return None
        return alert(
            f"{m.wait_sessions} commit(s) on {rec.primary} have waited {waited:.1f} s for a semi-sync ack "
            f"with no acker connected (recorded ackers: {', '.join(rec.ackers) or 'none'})",
            "bring the acker back or repair its link; the commits complete once it acks",
        )
    caught_up = all(snap.nodes[a].received().contains(p.gtid_binlog_pos) for a in ackers)
    if caught_up and waited > policy.alerts.stuck_commit_s:
        return alert(
            f"{m.wait_sessions} commit(s) on {rec.primary} have waited {waited:.1f} s for a semi-sync ack although "
            f"{', '.join(ackers)} is connected and has received all of it ({p.gtid_binlog_pos}): the ack "
            "receiver looks hung (MariaDB 10.11, lab-facts.md)",
            f"restart the IO thread of {ackers[0]} by hand, or wait for the degrade action",
        )
    return None
