"""Adoption: decide() acts on a shard only while the servers look like its record says, so a stale
or lost store, or a promotion made by hand, is never enforced on the real primary."""

from __future__ import annotations

from idc_ha.decide.memory import Memory
from idc_ha.decide.plan import Decision, Fence, StartReplica
from idc_ha.decide.tick import decide
from idc_ha.model.alert import AlertKind
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import NodeObservation
from idc_ha.model.policy import Policy
from idc_ha.model.state import Control, ShardRecord, home_record

from .builders import (
    SHARDS,
    TOPO,
    WALL,
    after_failover,
    changed,
    failover_op,
    home_nodes,
    idc_lost,
    records,
    snapshot,
    steady,
    with_replica,
)
from .test_rules import IDC1_DOWN, K, run

H = home_nodes()
ALL = frozenset(SHARDS)
Nodes = dict[NodeName, NodeObservation]


def tick(
    nodes: Nodes,
    recs: dict[ShardName, ShardRecord] | None = None,
    *,
    adopted: frozenset[ShardName] = frozenset(),
    control: Control | None = None,
) -> Decision:
    """One decide() over a steady history of ``nodes`` by a controller that has adopted ``adopted``."""
    return decide(
        steady(nodes),
        TOPO,
        Policy(),
        records() if recs is None else recs,
        control or Control(),
        wall=WALL,
        memory=Memory(adopted=adopted),
    )


def fenced(d: Decision, shard: str) -> list[str]:
    return [s.node for s in d.reconcile.get(ShardName(shard), ()) if isinstance(s, Fence)]


# shard1 failed over to shard1-sx (epoch 2 in reality); the store restored from before it says epoch 1
AFTER_FAILOVER = changed(changed(H, "shard1-sx", read_only=False, replica=None), "shard1-m", read_only=True)


def test_a_restored_older_store_never_fences_the_real_primary() -> None:
    """Gap 9: a fresh controller with an epoch-1 record for shard1 while shard1-sx is the writable
    primary: shard1 is not adopted, nothing is fenced or written for it, and the alert says so."""
    d = tick(AFTER_FAILOVER)
    assert fenced(d, "shard1") == [] and "shard1" not in d.records and d.plans == ()
    assert "shard1" not in d.memory.adopted and {"meta", "shard2"} <= d.memory.adopted
    [a] = [a for a in d.alerts if a.kind == AlertKind.UNADOPTED]
    assert a.shard == "shard1" and "read-only" in a.reason and "epoch 1" in a.reason
    assert "stale one is refused, never enforced" in a.hint


def test_the_same_store_is_adopted_once_the_servers_match_it() -> None:
    """The record is adopted the first round reality matches it, and only then acted on."""
    d = tick(H)
    assert d.memory.adopted == ALL and not [a for a in d.alerts if a.kind == AlertKind.UNADOPTED]


def test_a_promotion_by_hand_is_not_undone() -> None:
    """IDC1 is dead and shard1 was not proven; a DBA promotes shard1-sx by hand (detached, writable).
    The running controller drops shard1 from its adopted shards instead of fencing shard1-sx."""
    by_hand = changed(idc_lost(TOPO, H, "IDC1"), "shard1-sx", read_only=False, replica=None)
    d = tick(by_hand, adopted=ALL)
    assert fenced(d, "shard1") == [] and "shard1" not in d.memory.adopted
    [a] = [a for a in d.alerts if a.kind == AlertKind.UNADOPTED]
    assert "shard1-sx is writable and replicates from nothing of the shard" in a.reason


def test_a_writable_replica_of_the_primary_is_still_fenced() -> None:
    """A stray: shard1-rem opened by mistake while shard1-m is the writable primary."""
    d = tick(changed(H, "shard1-rem", read_only=False), adopted=ALL)
    assert fenced(d, "shard1") == ["shard1-rem"] and "shard1" in d.memory.adopted


def test_a_writable_replica_is_not_fenced_while_the_primary_is_away() -> None:
    """With shard1-m unreachable, a writable shard1-sx that still names it as source may be a
    promotion by hand: alerted, not fenced."""
    nodes = changed(idc_lost(TOPO, H, "IDC1", witnessed=False), "shard1-sx", read_only=False)
    d = tick(nodes, adopted=ALL)
    assert fenced(d, "shard1") == []
    assert [a for a in d.alerts if a.kind == AlertKind.DRIFT and "may have been promoted by hand" in a.reason]


def test_pause_never_stops_fencing() -> None:
    """Gap 7: paused, a writable stray is still fenced (pause stops promotions, not fences)."""
    d = tick(changed(H, "shard1-rem", read_only=False), adopted=ALL, control=Control(paused=True))
    assert fenced(d, "shard1") == ["shard1-rem"]


def test_a_restarted_replica_is_started_relay_log_first() -> None:
    """Gap 10: the cascade came back from a restart with skip-slave-start: both threads stopped and
    nothing received this boot. The reconcile starts it (the step applies its relay log first)."""
    nodes = with_replica(H, "shard1-cas", io_running="No", sql_running="No", gtid_io_pos=GtidPos())
    d = tick(nodes, adopted=ALL)
    assert d.reconcile["shard1"] == (
        StartReplica(node="shard1-cas", source="shard1-sx", reason=d.reconcile["shard1"][0].reason),
    )


def test_a_replica_stopped_by_hand_is_left_alone() -> None:
    """STOP SLAVE by a DBA keeps Gtid_IO_Pos: not a restart, nothing is started."""
    d = tick(with_replica(H, "shard1-cas", io_running="No", sql_running="No"), adopted=ALL)
    assert "shard1" not in d.reconcile


def test_paused_restarted_replicas_are_only_alerted() -> None:
    nodes = with_replica(H, "shard1-cas", io_running="No", sql_running="No", gtid_io_pos=GtidPos())
    d = tick(nodes, adopted=ALL, control=Control(paused=True))
    assert "shard1" not in d.reconcile
    assert [a for a in d.alerts if a.kind == AlertKind.DRIFT and "the controller is paused" in a.reason]


def test_a_stale_operation_in_the_store_is_not_resumed_over_a_promotion_by_hand() -> None:
    """A fresh controller finds an IDC failover of shard1 in the store, but a DBA has meanwhile
    promoted shard1-ms by hand (detached and writable) and repointed shard1-sx to it: the operation
    no longer fits reality, so nothing is fenced or promoted and the alert says why."""
    recs = records()
    recs["shard1"] = recs["shard1"].model_copy(update={"op": failover_op("shard1")})
    hand = changed(idc_lost(TOPO, H, "IDC1"), "shard1-ms", reachable=True, read_only=False, replica=None)
    hand = with_replica(hand, "shard1-sx", source="shard1-ms", io_running="Yes")
    d = tick(hand, recs)
    assert "shard1" not in {p.shard for p in d.plans} and "shard1" not in d.memory.adopted
    [a] = [a for a in d.alerts if a.kind == AlertKind.UNADOPTED and a.shard == "shard1"]
    assert "no longer fits" in a.reason


def test_the_controllers_own_operation_is_resumed_as_written() -> None:
    """A running controller (shard adopted) resumes its operation whatever it sees."""
    recs = records()
    recs["shard1"] = recs["shard1"].model_copy(update={"op": failover_op("shard1")})
    d = tick(idc_lost(TOPO, H, "IDC1"), recs, adopted=ALL)
    assert "shard1" in {p.shard for p in d.plans}


def test_a_record_naming_a_node_the_config_lacks_is_not_acted_on() -> None:
    """A stored record names a node removed from the config: no crash, no action, an alert."""
    recs = records()
    recs["shard1"] = recs["shard1"].model_copy(update={"fence_pending": ("shard1-old",)})
    d = tick(H, recs, adopted=ALL)
    assert "shard1" not in d.memory.adopted and {"meta", "shard2"} <= d.memory.adopted
    [a] = [a for a in d.alerts if a.kind == AlertKind.UNADOPTED]
    assert "shard1-old, which the config does not have" in a.reason


def test_an_unreachable_acker_does_not_stop_fencing_after_a_restart() -> None:
    """After a failover (primary shard1-sx, old primaries to fence), a controller restarts while
    the new acker shard1-cas does not answer: the record is still adopted, so returning old
    primaries are fenced."""
    from idc_ha.act.fence import pending

    after = changed(changed(H, "shard1-sx", read_only=False, replica=None), "shard1-m", read_only=False, replica=None)
    after = {n: o for n, o in after.items() if n != "shard1-cas"}
    recs = records()
    recs["shard1"] = after_failover(TOPO, "shard1")
    d = tick(after, recs)
    assert "shard1" in d.memory.adopted

    class Book:
        def all(self) -> dict[ShardName, ShardRecord]:
            return recs

    assert pending(Book(), d.memory.adopted) == {"shard1-m": "shard1", "shard1-ms": "shard1"}  # type: ignore[arg-type]


def test_a_failover_undone_by_hand_is_not_resumed_and_its_old_primary_not_fenced() -> None:
    """The daemon crashed mid-failover; a DBA rolled back by hand: shard1-m writable again, shard1-sx
    replicating from it. A fresh controller finds the operation in the store: it does not resume it
    (that would fence the real primary and promote a lagging acker), and fences nothing for it."""
    from idc_ha.act.fence import pending

    recs = records()
    recs["shard1"] = recs["shard1"].model_copy(update={"op": failover_op("shard1")})
    d = tick(H, recs)
    assert "shard1" not in {p.shard for p in d.plans} and "shard1" not in d.memory.adopted
    [a] = [a for a in d.alerts if a.kind == AlertKind.UNADOPTED and a.shard == "shard1"]
    assert "undone by hand" in a.reason

    class Book:
        def all(self) -> dict[ShardName, ShardRecord]:
            return recs

    assert "shard1-m" not in pending(Book(), d.memory.adopted)  # type: ignore[arg-type]


def test_a_genuine_crash_mid_failover_is_resumed_by_a_fresh_controller() -> None:
    """The same operation with IDC1 still dead: reality fits it, so a fresh controller resumes it."""
    recs = records()
    recs["shard1"] = recs["shard1"].model_copy(update={"op": failover_op("shard1")})
    detached = changed(idc_lost(TOPO, H, "IDC1"), "shard1-sx", replica=None)
    d = tick(detached, recs)
    assert "shard1" in {p.shard for p in d.plans}


# -- an empty store: the config's home layout, adopted only when the servers match it ------------


def test_empty_store_adopts_a_healthy_home_layout_as_unknown() -> None:
    """With no records and servers as the config says, every shard is written as home, UNKNOWN, at
    the first round (the scenario table shows the climb to IDC_SAFE that follows)."""
    d = run((snapshot(H),), {})
    assert d.plans == ()
    assert set(d.records) == set(SHARDS)
    for s, r in d.records.items():
        home = home_record(TOPO, s, wall=WALL)
        assert (r.sync, r.epoch, r.primary, r.ackers, r.upstreams) == (
            SyncState.UNKNOWN,
            1,
            home.primary,
            home.ackers,
            home.upstreams,
        )
        assert r.recovery is not None  # the climb to IDC_SAFE starts on evidence, not settings


def test_empty_store_never_adopts_a_reality_that_differs_from_home() -> None:
    """No records, and IDC1 already dead when the controller starts: nothing is written, nothing
    promoted, and an alert says why."""
    d = run(steady(IDC1_DOWN), {})
    assert d.plans == () and d.records == {}
    assert {a.shard for a in d.alerts if a.kind == K.UNADOPTED} == set(SHARDS)
    assert all(r.startswith("no action: not adopted") for r in d.reasons.values())


def test_empty_store_after_a_failover_does_not_undo_it() -> None:
    """The store was lost after shard1 moved to IDC2: the config's home layout is not adopted."""
    moved = changed(H, "shard1-sx", read_only=False, replica=None)
    moved = changed(moved, "shard1-m", read_only=True)
    d = run(steady(moved), {s: r for s, r in records().items() if s != "shard1"})
    assert "shard1" not in d.records and d.plans == ()
    [a] = [a for a in d.alerts if a.kind == K.UNADOPTED]
    assert a.shard == "shard1" and "read-only" in a.reason
