"""Layout arithmetic: who acks after a failover, and the record a finished failover commits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idc_ha.decide.layout import layout_after, new_ackers
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import SyncState
from idc_ha.model.state import Baseline, ShardRecord
from idc_ha.model.topology import Topology

from .builders import TOPO, WALL, baseline, failover_op, layout, pos, record, topology

POINT = GtidPos.parse("0-4406-100")


def with_extra(*nodes: tuple[str, str]) -> Topology:
    """The home layout plus extra replicas of shard1-sx, given as (name, machine)."""
    raw = layout()
    for k, (name, machine) in enumerate(nodes):
        raw["nodes"].append(
            {
                "name": name,
                "shard": "shard1",
                "machine": machine,
                "port": 5000 + k,
                "role": "remote",
                "upstream": "shard1-sx",
            }
        )
    return topology(raw)


def after(rec: ShardRecord, **op: object) -> ShardRecord:
    o = failover_op(rec.shard).model_copy(update=op)
    return layout_after(rec, o, TOPO, point=POINT, baseline=baseline(TOPO, o.target), wall=WALL + 5)


# -- new_ackers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upstreams", "target", "expected"),
    [
        ({}, "shard1-sx", ("shard1-cas",)),
        ({"shard1-cas": "shard1-m"}, "shard1-sx", ()),
        ({"shard1-rem": "shard1-sx", "shard1-cas": "shard1-rem"}, "shard1-sx", ()),
        ({"shard1-ms": "shard1-sx"}, "shard1-sx", ("shard1-cas",)),
        ({}, "shard1-ms", ()),
        ({"shard1-sx": "shard1-ms"}, "shard1-ms", ()),
    ],
    ids=[
        "home-cascade",
        "cascade-elsewhere",
        "only-remote-left",
        "replica-in-another-idc-ignored",
        "target-without-replicas",
        "replica-in-another-idc-only",
    ],
)
def test_new_ackers_is_a_replica_of_the_target_in_its_idc(
    upstreams: dict[str, str], target: str, expected: tuple[str, ...]
) -> None:
    """The new acker replicates from the target inside its IDC; a remote or another IDC never acks."""
    rec = record(TOPO, "shard1")
    rec = rec.model_copy(update={"upstreams": {**rec.upstreams, **upstreams}})
    assert new_ackers(rec, TOPO, target) == expected


def test_new_ackers_prefers_the_home_cascade_over_other_roles() -> None:
    """Among several replicas of the target in its IDC the home cascade wins, even against an earlier name."""
    t = with_extra(("shard1-a", "idc2-m1"))
    rec = record(t, "shard1")
    assert new_ackers(rec, t, "shard1-sx") == ("shard1-cas",)
    without = rec.model_copy(update={"upstreams": {k: v for k, v in rec.upstreams.items() if k != "shard1-cas"}})
    assert new_ackers(without, t, "shard1-sx") == ("shard1-a",)


def test_new_ackers_breaks_ties_by_name() -> None:
    """With no cascade, the first replica by name is chosen, so the choice is stable across ticks."""
    t = with_extra(("shard1-b", "idc2-m1"), ("shard1-a", "idc2-m2"))
    rec = record(t, "shard1")
    rec = rec.model_copy(update={"upstreams": {k: v for k, v in rec.upstreams.items() if k != "shard1-cas"}})
    assert new_ackers(rec, t, "shard1-sx") == ("shard1-a",)


# -- layout_after -----------------------------------------------------------------------------------


def test_layout_after_an_idc_failover() -> None:
    """The acker becomes primary at the next epoch, NODE_SAFE with the cascade acking; the old primary and
    its other replica leave the layout and are fenced on return; the rest keep replicating from the target."""
    rec = record(TOPO, "shard1")
    new = after(rec)
    assert new.epoch == rec.epoch + 1
    assert new.primary == "shard1-sx"
    assert new.ackers == ("shard1-cas",)
    assert new.sync == SyncState.NODE_SAFE
    assert new.upstreams == {"shard1-cas": "shard1-sx", "shard1-rem": "shard1-sx"}
    assert new.out == ("shard1-m", "shard1-ms")
    assert new.fence_pending == ("shard1-m", "shard1-ms")
    assert new.promotion_point == POINT
    assert new.baseline == baseline(TOPO, "shard1-sx")
    assert new.recovery is None
    assert new.op == failover_op("shard1")
    assert new.updated_wall == WALL + 5
    assert "shard1-sx is primary" in new.reason


def test_layout_after_keeps_nodes_already_out_and_pending() -> None:
    """Nodes already out of the layout, fence-pending or marked for rebuild stay so."""
    rec = record(TOPO, "shard1").model_copy(
        update={"out": ("shard1-zz",), "fence_pending": ("shard1-zz",), "needs_rebuild": ("shard1-zz",)}
    )
    new = after(rec)
    assert new.out == ("shard1-m", "shard1-ms", "shard1-zz")
    assert new.fence_pending == ("shard1-m", "shard1-ms", "shard1-zz")
    assert new.needs_rebuild == ("shard1-zz",)


def test_layout_after_with_ackers_in_another_idc_is_idc_safe() -> None:
    """If the new ackers sit outside the new primary's IDC, the committed state is IDC_SAFE."""
    assert after(record(TOPO, "shard1"), new_ackers=("shard1-rem",)).sync == SyncState.IDC_SAFE


def test_layout_after_does_not_change_its_input() -> None:
    """Records are values: layout_after returns a new one and leaves the old intact."""
    rec = record(TOPO, "shard1")
    before = rec.model_dump()
    after(rec)
    assert rec.model_dump() == before


@given(st.sampled_from(["meta", "shard1", "shard2"]), st.integers(1, 50), st.integers(0, 200))
def test_layout_after_is_a_consistent_layout(shard: str, epoch: int, seq: int) -> None:
    """After a failover the primary replicates from nobody, every replica's source is in the layout,
    nothing is both in and out, and the ackers replicate from the new primary."""
    rec = record(TOPO, shard).model_copy(update={"epoch": epoch})
    o = failover_op(shard, epoch=epoch)
    new = layout_after(rec, o, TOPO, point=pos(TOPO, shard, seq), baseline=None, wall=WALL)
    assert new.epoch == epoch + 1
    assert new.primary not in new.upstreams
    assert all(new.in_layout(up) for up in new.upstreams.values())
    assert not any(new.in_layout(n) for n in new.out)
    assert all(new.upstreams.get(a) == new.primary for a in new.ackers)
    assert o.old_primary in new.out and o.old_primary in new.fence_pending


def test_layout_after_with_no_ackers_still_claims_node_safe() -> None:
    """Documents current behaviour: with no new acker the record says NODE_SAFE with nobody acking
    (decide() never starts such an operation; see the report)."""
    new = after(record(TOPO, "shard1"), new_ackers=())
    assert new.ackers == ()
    assert new.sync == SyncState.NODE_SAFE


def test_baseline_is_carried_as_given() -> None:
    """The new primary's counters, read by the executor, become the record's baseline."""
    b = Baseline(primary="shard1-sx", server_id=4408, boot_wall=1.0, no_tx=3)
    rec = record(TOPO, "shard1")
    assert layout_after(rec, failover_op("shard1"), TOPO, point=None, baseline=b, wall=WALL).baseline == b
