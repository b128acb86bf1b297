"""invariants.check and check_plan on hand-built decisions: every violation is refused, named, and stops the plan."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from idc_ha.decide.invariants import check
from idc_ha.decide.plan import (
    Decision,
    Fence,
    OpenWrites,
    ShardPlan,
)
from idc_ha.decide.plans import failover_plan
from idc_ha.decide.verdicts import Verdicts
from idc_ha.errors import InvariantViolation
from idc_ha.model.ids import ShardName, SyncState
from idc_ha.model.state import ShardRecord

from .builders import (
    TOPO,
    failover_op,
    record,
    records,
    snapshot,
)
from .test_rules import (
    IDC1_DOWN,
    Build,
    H,
    with_op,
)

# -- invariants.check on hand-built decisions -------------------------------------------------------

NO_VERDICTS = Verdicts(nodes={}, machines={}, idcs={}, cities={})
SNAP = snapshot(IDC1_DOWN)


def decision(plans: tuple[ShardPlan, ...], recs: Mapping[ShardName, ShardRecord]) -> Decision:
    return Decision(records=dict(recs), plans=plans, alerts=(), reasons={}, verdicts=NO_VERDICTS)


def started(shard: ShardName = "shard1", **op: object) -> tuple[ShardPlan, dict[ShardName, ShardRecord]]:
    """A plan and the records decide() would write for a new failover of ``shard``."""
    o = failover_op(shard).model_copy(update=op)
    return failover_plan(o), {shard: record(TOPO, shard).model_copy(update={"op": o})}


def test_check_accepts_a_sound_decision() -> None:
    """A fresh failover from an IDC_SAFE record, fencing the old primary first, passes."""
    plan, recs = started()
    check(decision((plan,), recs), records(), SNAP, TOPO)


def _two_plans() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    return decision((plan, plan), recs), records()


def _no_op_recorded() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, _ = started()
    return decision((plan,), {}), records()


def _op_id_mismatch() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    return decision((plan.model_copy(update={"op_id": "shard1/e9/idc_failover"}),), recs), records()


def _opens_another_node() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    steps = tuple(OpenWrites(node="shard1-cas", reason="x") if isinstance(s, OpenWrites) else s for s in plan.steps)
    return decision((plan.model_copy(update={"steps": steps}),), recs), records()


def _opens_twice() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    return decision(
        (plan.model_copy(update={"steps": (*plan.steps, OpenWrites(node="shard1-sx", reason="x"))}),), recs
    ), records()


def _crosses_cities() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started(target="shard1-rem", new_ackers=())
    return decision((plan,), recs), records()


def _from_async() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    return decision((plan,), recs), records(shard1=SyncState.ASYNC)


def _from_node_safe() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    return decision((plan,), recs), records(shard1=SyncState.NODE_SAFE)


def _from_no_record() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    return decision((plan,), recs), {}


def _no_fence_before_open() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    steps = tuple(s for s in plan.steps if not isinstance(s, Fence))
    return decision((plan.model_copy(update={"steps": steps}),), recs), records()


def _fence_after_open() -> tuple[Decision, dict[ShardName, ShardRecord]]:
    plan, recs = started()
    steps = (*(s for s in plan.steps if not isinstance(s, Fence)), plan.steps[0])
    return decision((plan.model_copy(update={"steps": steps}),), recs), records()


BAD = {
    "two-plans-for-one-shard": (_two_plans, "2 plans for shard shard1"),
    "no-operation-recorded": (_no_op_recorded, "no operation recorded"),
    "op-id-mismatch": (_op_id_mismatch, "no operation recorded"),
    "opens-another-node": (_opens_another_node, "opens writes on ['shard1-cas']"),
    "opens-twice": (_opens_twice, "opens writes on"),
    "crosses-cities": (_crosses_cities, "promotes across cities"),
    "new-op-from-async": (_from_async, "from sync state ASYNC"),
    "new-op-from-node-safe": (_from_node_safe, "from sync state NODE_SAFE"),
    "new-op-without-prior-record": (_from_no_record, "from sync state none"),
}


@pytest.mark.parametrize(("build", "message"), BAD.values(), ids=BAD.keys())
def test_check_refuses_a_bad_decision(build: Build, message: str) -> None:
    """Each broken decision raises InvariantViolation naming the shard and what is wrong."""
    d, before = build()
    with pytest.raises(InvariantViolation) as e:
        check(d, before, SNAP, TOPO)
    assert message in str(e.value)
    assert e.value.shard == "shard1"


@pytest.mark.parametrize("build", [_no_fence_before_open, _fence_after_open], ids=["no-fence", "fence-after-open"])
def test_check_refuses_opening_beside_a_writable_node(build: Build) -> None:
    """Opening the target while the old primary is seen writable requires fencing it first."""
    d, before = build()
    writable = snapshot(H)  # shard1-m answers and is writable
    with pytest.raises(InvariantViolation, match="shard1-m is writable and not fenced first"):
        check(d, before, writable, TOPO)
    check(d, before, SNAP, TOPO)  # with shard1-m unreachable the same plan is fine


def test_check_lets_a_resumed_op_through_whatever_the_sync_state() -> None:
    """Resuming an operation already recorded is not a new promotion: the sync state no longer matters."""
    recs = with_op(records(shard1=SyncState.NODE_SAFE), "shard1")
    check(decision((failover_plan(recs["shard1"].op),), {}), recs, SNAP, TOPO)
