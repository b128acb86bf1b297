"""IDC-safe again (decide/rearm.py): after an IDC failover and the rejoin, a caught-up node of the
failed IDC becomes the acker (the home primary first), its IDC-mates and the remote follow it;
nothing happens while paused, during an operation, with the primary not writable, or while a
better-ranked node is about to rejoin; a layout already IDC-safe only gets its followers rewired."""

from __future__ import annotations

from idc_ha.decide.plan import Rearm, Rewire
from idc_ha.decide.rearm import rearm
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import NodeObservation, ReplicaStatus
from idc_ha.model.policy import Policy, Rules

from .builders import TOPO, after_failover, changed, failover_op, home_nodes, record, replica_obs, snapshot

S = ShardName("shard1")
M, MS, SX, CAS, REM = (NodeName(f"shard1-{x}") for x in ("m", "ms", "sx", "cas", "rem"))
P = Policy()
# Both IDC1 nodes rejoined behind the new primary shard1-sx; the cascade acks in IDC2.
REJOINED = after_failover(TOPO, S, out=(), fence_pending=(), upstreams={CAS: SX, REM: SX, M: SX, MS: SX})


def nodes(**kw: NodeObservation) -> dict[NodeName, NodeObservation]:
    """shard1-sx the writable primary; every other node a caught-up replica of it (cas acking)."""
    ns = changed(home_nodes(), SX, read_only=False, replica=None)
    for n in (M, MS, REM):
        ns[n] = replica_obs(TOPO, n, source=SX)
    ns[CAS] = replica_obs(TOPO, CAS, source=SX, acking=True)
    return {**ns, **{NodeName(k.replace("_", "-")): v for k, v in kw.items()}}


def lagging(o: NodeObservation, s: int | None) -> NodeObservation:
    r = o.replica
    assert isinstance(r, ReplicaStatus)
    return o.model_copy(update={"replica": r.model_copy(update={"seconds_behind": s})})


def at0(ns: dict[NodeName, NodeObservation]) -> dict[NodeName, NodeObservation]:
    """Seconds_Behind_Master 0 on every replica (the builders leave it NULL)."""
    return {
        n: (lagging(o, 0) if o.replica is not None and o.replica.seconds_behind is None else o) for n, o in ns.items()
    }


def target(steps: list) -> set[NodeName]:  # type: ignore[type-arg]
    """The node each step makes (or prepares to make) the acker."""
    return {s.node if isinstance(s, Rearm) else s.source for s in steps}


def test_the_others_follow_the_home_primary_first_then_it_becomes_the_acker() -> None:
    """The local candidate and the remote move behind the home primary first (so a second
    disaster finds a replica of it in its IDC to ack); then the acker moves."""
    steps = rearm(REJOINED, snapshot(at0(nodes())), TOPO, P)
    assert [(type(s), s.node, getattr(s, "source", None)) for s in steps] == [(Rewire, MS, M), (Rewire, REM, M)]
    behind = REJOINED.model_copy(update={"upstreams": {CAS: SX, M: SX, MS: M, REM: M}})
    [step] = rearm(behind, snapshot(at0(nodes())), TOPO, P)
    assert step == Rearm(node=M, source=SX, old=(CAS,), reason=step.reason)
    assert "IDC1 becomes the standby IDC" in step.reason


def test_an_unreachable_follower_does_not_hold_the_acker_back() -> None:
    from .builders import down

    behind = REJOINED.model_copy(update={"upstreams": {CAS: SX, M: SX, MS: M, REM: SX}})
    [step] = rearm(behind, snapshot({**at0(nodes()), REM: down(REM)}), TOPO, P)
    assert isinstance(step, Rearm) and step.node == M


def test_the_local_candidate_is_chosen_when_the_home_primary_needs_a_rebuild() -> None:
    rec = REJOINED.model_copy(update={"upstreams": {CAS: SX, REM: MS, MS: SX}, "out": (M,), "needs_rebuild": (M,)})
    [step] = rearm(rec, snapshot(at0(nodes())), TOPO, P)
    assert isinstance(step, Rearm) and step.node == MS


def test_it_waits_for_a_better_ranked_node_about_to_rejoin() -> None:
    rec = REJOINED.model_copy(update={"upstreams": {CAS: SX, REM: SX, MS: SX}, "out": (M,)})
    assert rearm(rec, snapshot(at0(nodes())), TOPO, P) == []
    # ... but not for one that is still writable (its fence comes first, and may take long).
    ns = at0(nodes())
    ns[M] = changed(ns, M, read_only=False)[M]
    assert target(rearm(rec, snapshot(ns), TOPO, P)) == {MS}


def test_a_lagging_or_broken_candidate_is_not_chosen() -> None:
    ns = at0(nodes())
    for bad in (
        lagging(ns[M], 6),  # past rearm_max_lag_s (5)
        lagging(ns[M], None),  # a thread not running: NULL
        ns[M].model_copy(update={"read_only": False}),
        ns[M].model_copy(update={"replica": ns[M].replica.model_copy(update={"last_sql_errno": 1062})}),  # type: ignore[union-attr]
    ):
        assert target(rearm(REJOINED, snapshot({**ns, M: bad}), TOPO, P)) == {MS}, bad
    assert rearm(REJOINED, snapshot({**ns, M: lagging(ns[M], 6), MS: lagging(ns[MS], 9)}), TOPO, P) == []


def test_nothing_while_paused_in_an_operation_off_in_the_policy_or_the_primary_not_writable() -> None:
    ns = at0(nodes())
    snap = snapshot(ns)
    assert rearm(REJOINED, snap, TOPO, P, paused=True) == []
    assert rearm(REJOINED.model_copy(update={"op": failover_op(S)}), snap, TOPO, P) == []
    assert rearm(REJOINED, snap, TOPO, Policy(rules=Rules(rearm_acker=False))) == []
    assert rearm(REJOINED, snapshot(changed(ns, SX, read_only=True)), TOPO, P) == []


def test_a_node_in_the_primarys_idc_or_another_city_never_becomes_the_acker() -> None:
    """Only the IDC1 nodes are candidates: the cascade shares the primary's IDC, the remote is in
    the backup city."""
    rec = REJOINED.model_copy(update={"upstreams": {CAS: SX, REM: SX}, "out": (M, MS), "needs_rebuild": (M, MS)})
    assert rearm(rec, snapshot(at0(nodes())), TOPO, P) == []


def test_an_idc_safe_layout_only_rewires_followers_still_on_the_primary() -> None:
    moved = REJOINED.model_copy(
        update={"epoch": 3, "sync": SyncState.UNKNOWN, "ackers": (M,), "upstreams": {CAS: SX, M: SX, MS: M, REM: SX}}
    )
    ns = at0(nodes())
    ns[M] = replica_obs(TOPO, M, source=SX, acking=True)
    ns[MS] = replica_obs(TOPO, MS, source=M)
    [step] = rearm(moved, snapshot(ns), TOPO, P)
    assert (type(step), step.node, step.source) == (Rewire, REM, M)
    done = moved.model_copy(update={"upstreams": {CAS: SX, M: SX, MS: M, REM: M}})
    ns[REM] = replica_obs(TOPO, REM, source=M)
    assert rearm(done, snapshot(ns), TOPO, P) == []


def test_the_home_layout_is_left_alone() -> None:
    home = changed(home_nodes(), SX, replica=replica_obs(TOPO, SX, source=M, acking=True).replica)
    assert rearm(record(TOPO, S), snapshot(home), TOPO, P) == []


def test_a_node_that_rejoined_after_the_move_is_put_behind_the_acker() -> None:
    """shard1-ms rejoined (behind the primary) after shard1-m became the acker: it is rewired
    behind shard1-m (no change of who acks)."""
    moved = REJOINED.model_copy(update={"epoch": 3, "ackers": (M,), "upstreams": {CAS: SX, M: SX, MS: SX, REM: M}})
    ns = at0(nodes())
    ns[M] = replica_obs(TOPO, M, source=SX, acking=True)
    ns[REM] = replica_obs(TOPO, REM, source=M)
    [step] = rearm(moved, snapshot(ns), TOPO, P)
    assert (type(step), step.node, step.source) == (Rewire, MS, M)
    # The acker not connected: nothing yet.
    ns[M] = replica_obs(TOPO, M, source=SX, io="Connecting", acking=True)
    assert rearm(moved, snapshot(ns), TOPO, P) == []
