"""decide() when one primary node dies and its IDC stays up: the local candidate (MS) is promoted
inside the IDC with the acker kept, or the acker with an alert, or nothing and why."""

from __future__ import annotations

from idc_ha.decide.layout import layout_after
from idc_ha.decide.plan import (
    ArmAcker,
    CatchUp,
    CommitLayout,
    Detach,
    EnableMasterSemisync,
    Fence,
    OpenWrites,
    PublishRouting,
    RecordPromotionPoint,
    StopReceiving,
    VerifySemisync,
    WaitRelayApplied,
)
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, SyncState
from idc_ha.model.policy import Policy, Rules
from idc_ha.model.state import Control, OpKind

from .builders import TOPO, changed, down, lost, pos, record, records, with_replica
from .test_rules import H, K, async_on, run

M, MS, SX, CAS, REM = (NodeName(f"shard1-{r}") for r in ("m", "ms", "sx", "cas", "rem"))
M_DEAD = lost(TOPO, H, [M])


def test_primary_dead_promotes_the_local_candidate_keeping_the_acker() -> None:
    d = run(M_DEAD)
    [plan] = d.plans
    op = d.records["shard1"].op
    assert op is not None and op.kind == OpKind.NODE_FAILOVER
    assert (op.old_primary, op.target, op.via, op.new_ackers, op.repoint) == (M, MS, SX, (SX,), (SX,))
    assert [(type(s), getattr(s, "node", None) or getattr(s, "primary", None)) for s in plan.steps] == [
        (Fence, M),
        (StopReceiving, SX),
        (WaitRelayApplied, SX),
        (StopReceiving, MS),
        (WaitRelayApplied, MS),
        (CatchUp, MS),
        (RecordPromotionPoint, MS),
        (Detach, MS),
        (EnableMasterSemisync, MS),
        (ArmAcker, SX),
        (VerifySemisync, MS),
        (CommitLayout, MS),
        (OpenWrites, MS),
        (PublishRouting, MS),
    ]
    catch = plan.steps[5]
    assert isinstance(catch, CatchUp) and catch.source == SX
    assert [p.shard for p in d.plans] == ["shard1"]
    assert {(a.kind, a.shard) for a in d.alerts} == {(K.FAILOVER_STARTED, "shard1")}


def test_the_layout_after_a_node_failover_keeps_the_acker_and_is_idc_safe() -> None:
    d = run(M_DEAD)
    op = d.records["shard1"].op
    assert op is not None
    new = layout_after(record(TOPO, "shard1"), op, TOPO, point=pos(TOPO, "shard1"), baseline=None, wall=1.0)
    assert (new.epoch, new.primary, new.ackers, new.sync) == (2, MS, (SX,), SyncState.IDC_SAFE)
    assert new.upstreams == {SX: MS, CAS: SX, REM: SX}
    assert new.out == (M,) and M in new.fence_pending


def test_a_local_candidate_behind_the_acker_is_still_chosen_and_caught_up() -> None:
    """MS received less than Sx (within the lag limit): MS is the target; CatchUp brings it level."""
    behind = pos(TOPO, "shard1", 90)
    nodes = changed(M_DEAD, MS, gtid_current_pos=behind, gtid_slave_pos=behind)
    nodes = with_replica(nodes, MS, gtid_io_pos=behind)
    d = run(nodes)
    op = d.records["shard1"].op
    assert op is not None and op.target == MS and op.seen_received == pos(TOPO, "shard1")


def test_a_local_candidate_past_the_lag_limit_gives_way_to_the_acker_with_an_alert() -> None:
    behind = pos(TOPO, "shard1", 90)
    nodes = changed(M_DEAD, MS, gtid_current_pos=behind, gtid_slave_pos=behind)
    nodes = with_replica(nodes, MS, gtid_io_pos=behind)
    d = run(nodes, policy=Policy(rules=Rules(node_failover_max_lag_tx=5)))
    op = d.records["shard1"].op
    assert op is not None and (op.kind, op.target, op.via) == (OpKind.NODE_FAILOVER, SX, None)
    assert op.new_ackers == (CAS,)
    [moved] = [a for a in d.alerts if a.kind == K.MOVED_IDC]
    assert "10 transactions to apply" in moved.reason and "node_failover_max_lag_tx" in moved.reason


def test_an_unreachable_local_candidate_gives_way_to_the_acker() -> None:
    nodes = {**M_DEAD, MS: down(MS)}
    d = run(nodes)
    op = d.records["shard1"].op
    assert op is not None and op.target == SX
    [moved] = [a for a in d.alerts if a.kind == K.MOVED_IDC]
    assert "unreachable" in moved.reason


def test_a_local_candidate_with_another_history_gives_way_to_the_acker() -> None:
    other = GtidPos.parse("0-999-100")  # the same sequence number from another server
    nodes = changed(M_DEAD, MS, gtid_current_pos=other, gtid_slave_pos=other)
    nodes = with_replica(nodes, MS, gtid_io_pos=other)
    d = run(nodes)
    op = d.records["shard1"].op
    assert op is not None and op.target == SX
    assert any(a.kind == K.MOVED_IDC and "different histories" in a.reason for a in d.alerts)


def test_no_failover_while_a_replica_still_receives_from_the_primary() -> None:
    """The controller and Sx lost M, but MS still has its IO thread connected: a partition around
    M, not a dead M. No plan; an alert says who still receives."""
    nodes = changed(M_DEAD, MS, replica=H[MS].replica)
    d = run(nodes)
    assert d.plans == ()
    assert "still receives" in d.reasons["shard1"]
    assert any(a.kind == K.PRIMARY_UNREACHABLE and MS in a.reason for a in d.alerts)


def test_paused_rule_off_and_unproven_shards_are_not_touched() -> None:
    assert run(M_DEAD, control=Control(paused=True)).plans == ()
    off = run(M_DEAD, policy=Policy(rules=Rules(auto_node_failover=False)))
    assert off.plans == () and any(a.kind == K.RULE_DISABLED for a in off.alerts)
    unproven = run(M_DEAD, records(TOPO, shard1=SyncState.ASYNC), before=async_on(H, M))
    assert unproven.plans == ()
    assert any(a.kind == K.NOT_PROVEN_SAFE and a.shard == "shard1" for a in unproven.alerts)


def test_an_unwitnessed_primary_loss_is_only_an_alert() -> None:
    d = run(lost(TOPO, H, [M], witnessed=False))
    assert d.plans == ()
    assert any(a.kind == K.PRIMARY_UNREACHABLE for a in d.alerts)


# -- review findings: a node failover in flight ---------------------------------------------------


def _in_flight(nodes: dict, **rec_kw: object):  # type: ignore[no-untyped-def,type-arg]
    """decide() on a record holding the node failover decide() started on M_DEAD."""
    op = run(M_DEAD).records["shard1"].op
    assert op is not None
    recs = {**records(TOPO), "shard1": record(TOPO, "shard1", op=op, **rec_kw)}
    return op, recs


def test_a_restarted_controller_adopts_a_node_failover_catching_up_from_the_acker() -> None:
    """MS was repointed to Sx by CatchUp when the daemon died: a new controller (empty memory)
    still adopts the shard and resumes the operation."""
    from idc_ha.decide.memory import Memory
    from idc_ha.decide.tick import decide

    from .builders import WALL, replica_obs, steady

    op, recs = _in_flight(M_DEAD)
    nodes = {**M_DEAD, MS: replica_obs(TOPO, MS, source=SX)}
    d = decide(steady(nodes), TOPO, Policy(), recs, Control(), wall=WALL, memory=Memory())
    assert [p.op_id for p in d.plans] == [op.id], d.reasons["shard1"]
    assert not any(a.kind == K.UNADOPTED and a.shard == "shard1" for a in d.alerts)


def test_a_node_failover_whose_target_died_is_handed_to_the_acker() -> None:
    op, recs = _in_flight(M_DEAD)
    nodes = {**M_DEAD, MS: down(MS)}
    d = run(nodes, recs)
    new = d.records["shard1"].op
    assert new is not None and new.id != op.id
    assert (new.target, new.via, new.new_ackers) == (SX, None, (CAS,))
    assert MS in new.fence and M in new.fence
    [plan] = d.plans
    assert plan.op_id == new.id
    assert any(a.kind == K.MOVED_IDC and "failed before it was promoted" in a.reason for a in d.alerts)


def test_a_node_failover_is_handed_over_when_its_idc_dies_meanwhile() -> None:
    from .builders import idc_lost

    op, recs = _in_flight(M_DEAD)
    d = run(idc_lost(TOPO, H, "IDC1"), recs)
    new = d.records["shard1"].op
    assert new is not None and new.target == SX and new.id != op.id


def test_a_node_failover_already_committed_is_resumed_not_handed_over() -> None:
    """Once the layout names MS primary, MS opened (or may have): never moved away by resume."""
    op, recs = _in_flight(M_DEAD, primary=MS, epoch=2)
    d = run({**M_DEAD, MS: down(MS)}, recs)
    assert all(p.op_id == op.id for p in d.plans)


def test_a_local_candidate_with_its_own_writes_gives_way_to_the_acker() -> None:
    from idc_ha.model.gtid import Gtid

    sid = H[MS].server_id
    mine = GtidPos.of(Gtid(0, sid, 101))
    nodes = changed(M_DEAD, MS, gtid_binlog_pos=mine, gtid_current_pos=mine)
    d = run(nodes)
    op = d.records["shard1"].op
    assert op is not None and op.target == SX
    assert any(a.kind == K.MOVED_IDC and "errant" in a.reason for a in d.alerts)


def test_a_hand_over_after_the_acker_was_repointed_to_the_dead_target() -> None:
    """Review 8 F1: ArmAcker had repointed Sx to MS when MS died: the IDC failover's proof no longer
    fits (Sx replicates from MS), but Sx still holds all it had received from M: promote it."""
    from .builders import replica_obs

    _op, recs = _in_flight(M_DEAD)
    for io in ("Connecting", "No"):  # reconnecting to the dead MS, or stopped by the plan
        nodes = {**M_DEAD, MS: down(MS), SX: replica_obs(TOPO, SX, source=MS, io=io, acking=True)}
        d = run(nodes, recs)
        new = d.records["shard1"].op
        assert new is not None and new.target == SX and new.id.endswith("-to-acker"), d.reasons["shard1"]


def test_no_hand_over_to_an_acker_missing_what_it_had_received() -> None:
    op, recs = _in_flight(M_DEAD)
    less = pos(TOPO, "shard1", 90)
    sx = changed(M_DEAD, SX, gtid_current_pos=less, gtid_slave_pos=less)
    sx = with_replica(sx, SX, gtid_io_pos=less)
    d = run({**sx, MS: down(MS)}, recs)
    assert d.plans == () or all(p.op_id == op.id for p in d.plans)
    assert any(a.kind == K.NOT_PROVEN_SAFE and "not all it had received" in a.reason for a in d.alerts)
