"""The primary node is dead and its IDC is alive: promote the local candidate (MS) inside the
primary's IDC, with the recorded acker (Sx) staying the acker.

The RPO=0 argument is the IDC failover's: the proof shows Sx holds every acknowledged commit.
MS is promoted only once it holds everything Sx received; the plan catches it up from Sx when
it is behind (``plans.node_failover``). Both received prefixes of one primary's binlog, so one
contains the other unless something wrote elsewhere. Sx is promoted instead (the shard moves
IDC, with an alert) when MS is unreachable, stopped on an SQL error, holds transactions it wrote
itself, diverged from Sx, or is more than ``rules.node_failover_max_lag_tx`` transactions behind.
(A restarted MS needs no check of its own: whatever it lost, it catches up from Sx, and the
promotion point is checked against what Sx had received.)

The witness of a silent primary (``tracks``) may be a replica whose IO thread still says "Yes";
the rule waits until no replica still shows its IO thread connected to the primary, so a frozen
primary machine fails over once ``slave_net_timeout`` has passed on its replicas.

No action while a replica still receives from the primary: it is alive to somebody, and the
controller's and the witness's lost links may be a partition (alert). Paused, rule off, no
proof: alert, no action.
"""

from __future__ import annotations

from idc_ha.decide.rules.base import Outcome, ShardView, shard_alert, writable_strays
from idc_ha.decide.rules.promote import gate, started, to_acker
from idc_ha.decide.verdicts import Health
from idc_ha.model.alert import AlertKind, Severity
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, NodeRole
from idc_ha.model.observation import NodeObservation
from idc_ha.model.state import Operation, OpKind


def rule(v: ShardView) -> Outcome | None:
    rec, t, snap = v.rec, v.t, v.snap
    p = rec.primary
    pidc = t.idc_of(p)
    pv = v.verdicts.nodes[p]
    if pv.health != Health.DEAD or v.verdicts.idcs[pidc] != Health.ALIVE:
        return None
    what = f"primary {p} is dead ({pv.evidence}) and IDC {pidc} is up"
    still = [r for r, up in rec.upstreams.items() if up == p and _receives(snap.nodes.get(r), p)]
    if still:
        alert = shard_alert(
            AlertKind.PRIMARY_UNREACHABLE,
            rec,
            f"{what}, yet {', '.join(sorted(still))} still replicate(s) from it",
            "a partition around the primary; no failover while a replica still receives from it",
        )
        why = f"no action: {p} dead to the controller but {still[0]} still receives from it"
        return Outcome(reason=why, alerts=(alert,))
    proof = gate(v, what, switch="auto_node_failover", on=v.policy.rules.auto_node_failover)
    if isinstance(proof, Outcome):
        return proof
    sx = proof.candidate
    assert sx is not None  # gate gives only a proof with a candidate
    ms, why_not = _local_candidate(v, sx)
    if ms is None:
        moved = shard_alert(
            AlertKind.MOVED_IDC,
            rec,
            f"{rec.shard} moves to IDC {t.idc_of(sx)}: the local candidate cannot be promoted ({why_not})",
            f"the shard now writes in IDC {t.idc_of(sx)}; `idc-ha switch --to {pidc}` moves it back once "
            "its nodes rejoin",
            severity=Severity.CRITICAL,
        )
        return to_acker(v, OpKind.NODE_FAILOVER, what, f"{what}; {why_not}", proof, moved=moved)
    repoint = tuple(sorted(r for r, up in rec.upstreams.items() if up == p and r != ms))
    op = Operation(
        id=f"{rec.shard}/e{rec.epoch}/{OpKind.NODE_FAILOVER}",
        kind=OpKind.NODE_FAILOVER,
        shard=rec.shard,
        old_primary=p,
        target=ms,
        new_ackers=rec.ackers,
        fence=(p, *writable_strays(rec.shard, ms, snap, t, besides=p)),
        seen_received=snap.nodes[sx].received(),
        via=sx,
        repoint=repoint,
        reason=f"{what}; {proof.reason}",
        started_wall=v.wall,
    )
    return started(v, op)


def _local_candidate(v: ShardView, sx: NodeName) -> tuple[NodeName | None, str]:
    """The local candidate to promote, or None and why not."""
    rec, t, snap = v.rec, v.t, v.snap
    p = rec.primary
    pidc = t.idc_of(p)
    machine = t.node_by_name[p].machine
    cands = sorted(
        (
            r
            for r, up in rec.upstreams.items()
            if up == p and t.idc_of(r) == pidc and t.node_by_name[r].machine != machine
        ),
        key=lambda n: (t.node_by_name[n].role != NodeRole.LOCAL_CANDIDATE, n),
    )
    if not cands:
        return None, f"no replica of {p} on another machine of IDC {pidc}"
    ms = cands[0]
    o = snap.nodes.get(ms)
    if o is None or not o.reachable:
        return None, f"the local candidate {ms} is unreachable ({o.error if o else 'not probed'})"
    if o.replica is None or o.source != p:
        return None, f"the local candidate {ms} does not replicate from {p}"
    if o.replica.last_sql_errno:
        return None, f"the local candidate {ms}'s SQL thread stopped with error {o.replica.last_sql_errno}"
    own = [
        g
        for g in o.gtid_binlog_pos.by_domain
        if g.server == o.server_id and not o.gtid_slave_pos.contains(GtidPos.of(g))
    ]
    if own:
        return None, f"the local candidate {ms} wrote {GtidPos.of(*own)} itself: errant transactions"
    got, acked = o.received(), snap.nodes[sx].received()
    if not got.contains(acked) and not acked.contains(got):
        return None, f"the local candidate {ms} ({got}) and the acker {sx} ({acked}) hold different histories"
    lag = o.gtid_slave_pos.lacks(got.merge(acked))
    limit = v.policy.rules.node_failover_max_lag_tx
    if lag > limit:
        return None, f"the local candidate {ms} has {lag} transactions to apply (node_failover_max_lag_tx: {limit})"
    return ms, ""


def _receives(o: NodeObservation | None, p: NodeName) -> bool:
    """``o`` is a replica whose IO thread is still connected to ``p``."""
    return o is not None and o.replica is not None and o.source == p and o.replica.io_connected
