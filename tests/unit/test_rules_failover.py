"""decide() on an IDC failure in detail: the plan, its record, refusals and what else may hold."""

from __future__ import annotations

import pytest

from idc_ha.decide.plan import (
    ArmAcker,
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
from idc_ha.decide.plans import failover_plan
from idc_ha.decide.verdicts import Health
from idc_ha.model.alert import Severity
from idc_ha.model.ids import SyncState
from idc_ha.model.state import Control, Recovery

from .builders import (
    SHARDS,
    TOPO,
    baseline,
    changed,
    failover_op,
    lost,
    pos,
    record,
    records,
    with_master,
    with_replica,
)
from .test_rules import (
    CITY1_DOWN,
    IDC1_DOWN,
    IDC1_DOWN3,
    RULE_OFF,
    TOPO3,
    H,
    K,
    Nodes,
    acking,
    async_on,
    run,
    with_op,
)

# -- the IDC failover in detail ---------------------------------------------------------------------


def test_failover_plan_is_the_documented_step_sequence() -> None:
    """An IDC failover fences, freezes and drains the acker, promotes it, arms the cascade, then opens."""
    plan = failover_plan(failover_op("shard1"))
    assert [(type(s), getattr(s, "node", None) or getattr(s, "primary", None)) for s in plan.steps] == [
        (Fence, "shard1-m"),
        (StopReceiving, "shard1-sx"),
        (WaitRelayApplied, "shard1-sx"),
        (RecordPromotionPoint, "shard1-sx"),
        (Detach, "shard1-sx"),
        (EnableMasterSemisync, "shard1-sx"),
        (ArmAcker, "shard1-cas"),
        (VerifySemisync, "shard1-sx"),
        (CommitLayout, "shard1-sx"),
        (OpenWrites, "shard1-sx"),
        (PublishRouting, "shard1-sx"),
    ]
    arm = plan.steps[6]
    assert isinstance(arm, ArmAcker) and arm.source == "shard1-sx"
    assert plan.steps[7] == VerifySemisync(primary="shard1-sx", ackers=("shard1-cas",), reason=plan.steps[7].reason)
    assert (plan.shard, plan.op_id) == ("shard1", "shard1/e1/idc_failover")
    assert all(s.reason for s in plan.steps)


def test_idc1_dead_gives_one_exact_plan_per_shard_meta_included() -> None:
    """IDC1 dead with every shard IDC_SAFE: the failover plan of each shard, to its acker, in shard order."""
    d = run(IDC1_DOWN)
    ops = {s: d.records[s].op for s in SHARDS}
    assert all(op is not None for op in ops.values())
    # the dead old primaries are handed to the Fencer without a dial
    expected = tuple(
        failover_plan(failover_op(s, reason=ops[s].reason), unreachable=frozenset({f"{s}-m"})) for s in SHARDS
    )
    assert d.plans == expected
    assert [p.shard for p in d.plans] == ["meta", "shard1", "shard2"]


def test_a_started_failover_is_recorded_before_it_runs() -> None:
    """The records to write carry the operation, its target the acker and its new acker the cascade."""
    d = run(IDC1_DOWN)
    rec = d.records["shard1"]
    assert rec.op is not None
    assert rec.op.model_copy(update={"reason": "test", "seen_received": None}) == failover_op("shard1")
    assert rec.op.seen_received is not None
    assert "IDC IDC1 down" in rec.op.reason
    assert (rec.sync, rec.primary, rec.epoch) == (SyncState.IDC_SAFE, "shard1-m", 1)


def test_main_city_down_is_a_critical_alert_for_a_human() -> None:
    """With the whole main city failed nothing moves, and the alert points at promote-city."""
    d = run(CITY1_DOWN)
    [alert] = [a for a in d.alerts if a.kind == K.MAIN_CITY_DOWN]
    assert alert.severity == Severity.CRITICAL
    assert "promote-city" in alert.hint
    assert all("main city CITY1 down" in r for r in d.reasons.values())


def test_not_proven_safe_says_why() -> None:
    """A shard left behind because it was ASYNC gets an alert whose reason says ASYNC."""
    d = run(IDC1_DOWN, records(shard1=SyncState.ASYNC), before=async_on(H, "shard1-m"))
    [alert] = [a for a in d.alerts if a.kind == K.NOT_PROVEN_SAFE]
    assert alert.shard == "shard1" and alert.node == "shard1-m" and alert.epoch == 1
    assert "ASYNC" in alert.reason
    assert "cannot prove RPO=0" in d.reasons["shard1"]


@pytest.mark.parametrize(
    ("nodes", "why"),
    [
        (lost(TOPO3, IDC1_DOWN3, ["shard1-sx"]), "the acker shard1-sx is unreachable"),
        (lost(TOPO3, IDC1_DOWN3, ["shard1-cas"]), "the new acker shard1-cas is unreachable"),
        (with_replica(IDC1_DOWN3, "shard1-sx", last_sql_errno=1062), "SQL thread stopped with error 1062"),
        (
            changed(IDC1_DOWN3, "shard1-cas", gtid_current_pos=pos(TOPO3, "shard1", 101)),
            "errant transactions",
        ),
        (
            with_replica(IDC1_DOWN3, "shard1-sx", source_host="10.0.3.11", source_port=4999, source=None),
            "does not replicate from the recorded primary shard1-m",
        ),
    ],
    ids=[
        "acker-unreachable",
        "new-acker-unreachable",
        "acker-sql-error",
        "errant-cascade",
        "acker-elsewhere",
    ],
)
def test_refusal_reason_names_the_failed_condition(nodes: Nodes, why: str) -> None:
    """The NOT_PROVEN_SAFE alert of a shard left behind names the condition of the proof that failed."""
    [alert] = [a for a in run(nodes, topo=TOPO3).alerts if a.kind == K.NOT_PROVEN_SAFE]
    assert why in alert.reason


def test_acker_recorded_in_the_primary_idc_is_not_an_idc_failover_target() -> None:
    """An IDC_SAFE record whose acker sits in the dead IDC cannot be moved: the proof says so."""
    recs = {**records(), "shard1": record(TOPO, "shard1", ackers=("shard1-ms",))}
    d = run(IDC1_DOWN, recs, before=acking(H, "shard1", "shard1-ms"))
    [alert] = [a for a in d.alerts if a.kind == K.NOT_PROVEN_SAFE]
    assert "in the primary's own IDC" in alert.reason


def test_acker_recorded_in_another_city_is_never_promoted_automatically() -> None:
    """An IDC_SAFE record whose acker is in the backup city is refused: cross-city promotion is manual."""
    recs = {**records(), "shard1": record(TOPO, "shard1", ackers=("shard1-rem",))}
    d = run(IDC1_DOWN, recs, before=acking(H, "shard1", "shard1-rem"))
    assert "shard1" not in {p.shard for p in d.plans}
    [alert] = [a for a in d.alerts if a.kind == K.NOT_PROVEN_SAFE]
    assert "cross-city promotion is manual" in alert.reason


def test_a_dead_primary_in_an_unconfirmed_idc_is_not_reported_with_its_idc_up() -> None:
    """When IDC1 has failed but is not confirmed dead, the alert must not claim IDC1 is up."""
    d = run(lost(TOPO, IDC1_DOWN, ["shard1-sx"]))
    assert d.verdicts.idcs["IDC1"] == Health.UNREACHABLE
    meta = next(a for a in d.alerts if a.shard == "meta")
    assert "IDC1 is up" not in meta.reason


def test_an_op_in_flight_is_resumed_even_when_paused() -> None:
    """A half-done failover is finished whatever the switches say, and its record is not rewritten."""
    recs = with_op(records(), "shard1", steps_done=("fence",))
    d = run(IDC1_DOWN, recs, control=Control(paused=True))
    assert d.plans == (failover_plan(recs["shard1"].op),)
    assert "shard1" not in d.records
    assert d.reasons["shard1"].startswith("resuming idc_failover shard1/e1/idc_failover")


@pytest.mark.parametrize("nodes", [CITY1_DOWN, H], ids=["main-city-down", "healthy"])
def test_an_op_in_flight_is_resumed_whatever_else_is_true(nodes: Nodes) -> None:
    """The operation recorded for a shard is resumed even if the city is down or the cluster looks healthy."""
    recs = with_op(records(), "shard2")
    d = run(nodes, recs, policy=RULE_OFF)
    assert d.plans == (failover_plan(recs["shard2"].op),)


def test_a_healthy_cluster_changes_nothing() -> None:
    """Healthy and proven safe: no record to write, no alert, no plan, one reason per shard."""
    d = run(H)
    assert (d.records, d.plans, d.alerts) == ({}, (), ())
    assert d.reasons["shard1"] == "no action: primary shard1-m alive, sync IDC_SAFE"


def test_sync_restored_is_an_info_alert() -> None:
    """A shard proven safe again raises an INFO alert, and its new record is written."""
    rec = record(TOPO, "shard1", sync=SyncState.UNKNOWN).model_copy(
        update={"recovery": Recovery(target=pos(TOPO, "shard1"), baseline=baseline(TOPO, "shard1-m"))}
    )
    d = run(H, {**records(), "shard1": rec})
    [alert] = d.alerts
    assert (alert.kind, alert.severity, alert.shard) == (K.SYNC_RESTORED, Severity.INFO, "shard1")
    assert d.records["shard1"].sync == SyncState.IDC_SAFE


def test_sync_degraded_from_safe_is_critical() -> None:
    """Losing a proven-safe state is critical: the shard can no longer be moved automatically."""
    [alert] = run(with_master(H, "shard1-m", enabled=False)).alerts
    assert (alert.kind, alert.severity) == (K.SYNC_DEGRADED, Severity.CRITICAL)
    assert "ASYNC" in alert.reason


def test_a_writable_stray_replica_does_not_block_other_shards() -> None:
    """A writable remote in one shard must not stop decide() from moving the other shards."""
    d = run(changed(IDC1_DOWN, "shard1-rem", read_only=False))
    assert {p.shard for p in d.plans} == {"meta", "shard1", "shard2"}


def test_a_writable_stray_replica_is_fenced_before_writes_open() -> None:
    """The shard with the stray writable node fences it (after the old primary) before opening the acker."""
    d = run(changed(IDC1_DOWN, "shard1-rem", read_only=False))
    [plan] = [p for p in d.plans if p.shard == "shard1"]
    kinds = [(s.kind, getattr(s, "node", None)) for s in plan.steps]
    assert kinds[:2] == [("fence", "shard1-m"), ("fence", "shard1-rem")]
    assert kinds.index(("fence", "shard1-rem")) < kinds.index(("open_writes", "shard1-sx"))
