"""decide(): one tick's records, alerts and plans, and the invariants checked before anything runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import pytest

from idc_ha.decide.memory import Memory
from idc_ha.decide.plan import (
    Decision,
)
from idc_ha.decide.tick import decide
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import NodeObservation, SemiSyncSlave, Snapshot
from idc_ha.model.policy import Policy, Rules
from idc_ha.model.state import Control, ShardRecord
from idc_ha.model.topology import Topology

from .builders import (
    SHARDS,
    TOPO,
    WALL,
    changed,
    failover_op,
    home_nodes,
    idc_lost,
    lost,
    pos,
    records,
    snapshot,
    steady,
    topology,
    watched,
    with_master,
    with_replica,
)

Nodes = dict[NodeName, NodeObservation]
Build = Callable[[], tuple[Decision, dict[ShardName, ShardRecord]]]
T = TypeVar("T")
K = AlertKind
H = home_nodes()
IDC1_DOWN = idc_lost(TOPO, H, "IDC1")
CITY1_DOWN = idc_lost(TOPO, H, "IDC1", "IDC2")


def async_on(nodes: Nodes, *primaries: str) -> Nodes:
    """``nodes`` with semi-sync fallen back to async on the primaries (no proof can be made)."""
    for p in primaries:
        nodes = with_master(nodes, NodeName(p), status=False)
    return nodes


def acking(nodes: Nodes, shard: str, acker: str) -> Nodes:
    """``nodes`` with ``acker`` the shard's only semi-sync replica, as a record naming it says."""
    for n in (f"{shard}-sx", f"{shard}-ms", f"{shard}-cas", f"{shard}-rem"):
        on = n == acker
        nodes = changed(nodes, NodeName(n), semisync_slave=SemiSyncSlave(enabled=on, status=on))
    return nodes


RULE_OFF = Policy(rules=Rules(auto_idc_failover=False))


def run(
    nodes: Nodes | tuple[Snapshot, ...],
    recs: Mapping[ShardName, ShardRecord] | None = None,
    *,
    control: Control | None = None,
    policy: Policy | None = None,
    topo: Topology = TOPO,
    before: Nodes | None = None,
) -> Decision:
    """decide() on a confirmed history of ``nodes`` (or the given history) after 3 s of ``before``
    (the healthy home cluster by default), with every shard IDC_SAFE unless ``recs`` says
    otherwise, by a controller that has been running: the stored records are adopted (it saw them
    true before this history). Every snapshot moves the sync state as a tick would, so ``before``
    must agree with ``recs`` (a shard recorded ASYNC over a healthy lead is proven again)."""
    hist = nodes if isinstance(nodes, tuple) else watched(steady(nodes), before or home_nodes(topo))
    recs = records(topo) if recs is None else recs
    memory = Memory(adopted=frozenset(recs))
    return decide(hist, topo, policy or Policy(), recs, control or Control(), wall=WALL, memory=memory)


def kinds(d: Decision) -> set[tuple[AlertKind, str | None]]:
    return {(a.kind, a.shard) for a in d.alerts}


def every(kind: AlertKind, *shards: str) -> set[tuple[AlertKind, str | None]]:
    return {(kind, s) for s in (shards or SHARDS)}


def with_op(recs: dict[ShardName, ShardRecord], shard: ShardName, **kw: object) -> dict[ShardName, ShardRecord]:
    return {**recs, shard: recs[shard].model_copy(update={"op": failover_op(shard, **kw)})}


# -- the scenario table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    nodes: Nodes | tuple[Snapshot, ...]
    promoted: tuple[ShardName, ...] = ()  # shards given a failover plan
    alerts: set[tuple[AlertKind, str | None]] = field(default_factory=set)  # exactly these (kind, shard)
    recs: dict[ShardName, ShardRecord] | None = None
    control: Control | None = None
    policy: Policy | None = None
    topo: Topology = TOPO
    before: Nodes | None = None  # the 3 s watched before ``nodes`` (the healthy home cluster)


# With three data shards, each machine of IDC1 carries two primaries, so losing one acker still
# leaves a witness for every machine and IDC1 is still seen dead.
TOPO3 = topology(data_shards=3)
IDC1_DOWN3 = idc_lost(TOPO3, home_nodes(TOPO3), "IDC1")
SHARDS3 = ("meta", "shard1", "shard2", "shard3")
IDC_DOWN = {(K.IDC_DOWN, None)}
ALL = SHARDS
SCENARIOS: dict[str, Scenario] = {
    "healthy-cluster": Scenario(H),
    "idc1-dead-all-idc-safe": Scenario(IDC1_DOWN, ALL, IDC_DOWN | every(K.FAILOVER_STARTED)),
    "main-city-dead": Scenario(CITY1_DOWN, (), {(K.MAIN_CITY_DOWN, None)} | IDC_DOWN),
    "idc1-and-idc3-dead-is-not-the-city": Scenario(
        idc_lost(TOPO, H, "IDC1", "IDC3"), ALL, IDC_DOWN | every(K.FAILOVER_STARTED)
    ),
    "paused": Scenario(IDC1_DOWN, (), IDC_DOWN | every(K.PAUSED), control=Control(paused=True)),
    "one-shard-paused": Scenario(
        IDC1_DOWN,
        ("meta", "shard2"),
        IDC_DOWN | every(K.PAUSED, "shard1") | every(K.FAILOVER_STARTED, "meta", "shard2"),
        control=Control(paused_shards=("shard1",)),
    ),
    "rule-disabled": Scenario(IDC1_DOWN, (), IDC_DOWN | every(K.RULE_DISABLED), policy=RULE_OFF),
    "one-shard-async": Scenario(
        IDC1_DOWN,
        ("meta", "shard2"),
        IDC_DOWN | every(K.NOT_PROVEN_SAFE, "shard1") | every(K.FAILOVER_STARTED, "meta", "shard2"),
        recs=records(shard1=SyncState.ASYNC),
        before=async_on(H, "shard1-m"),
    ),
    "meta-unknown": Scenario(
        IDC1_DOWN,
        ("shard1", "shard2"),
        IDC_DOWN
        | every(K.SYNC_DEGRADED, "meta")  # watched: UNKNOWN -> ASYNC
        | every(K.NOT_PROVEN_SAFE, "meta")
        | every(K.FAILOVER_STARTED, "shard1", "shard2"),
        recs=records(meta=SyncState.UNKNOWN),
        before=async_on(H, "meta-m"),
    ),
    "node-safe-is-not-enough-for-idc-failover": Scenario(
        IDC1_DOWN, (), IDC_DOWN | every(K.NOT_PROVEN_SAFE), recs=records(sync=SyncState.NODE_SAFE)
    ),
    "acker-unreachable": Scenario(
        lost(TOPO3, IDC1_DOWN3, ["shard1-sx"]),
        ("meta", "shard2", "shard3"),
        IDC_DOWN | every(K.NOT_PROVEN_SAFE, "shard1") | every(K.FAILOVER_STARTED, "meta", "shard2", "shard3"),
        topo=TOPO3,
    ),
    "one-acker-down-leaves-idc1-unconfirmed": Scenario(
        lost(TOPO, IDC1_DOWN, ["shard1-sx"]), (), every(K.PRIMARY_UNREACHABLE)
    ),
    "new-acker-unreachable": Scenario(
        lost(TOPO, IDC1_DOWN, ["shard1-cas"]),
        ("meta", "shard2"),
        IDC_DOWN | every(K.NOT_PROVEN_SAFE, "shard1") | every(K.FAILOVER_STARTED, "meta", "shard2"),
    ),
    "acker-sql-thread-broken": Scenario(
        with_replica(IDC1_DOWN, "shard1-sx", last_sql_errno=1062),
        ("meta", "shard2"),
        IDC_DOWN | every(K.NOT_PROVEN_SAFE, "shard1") | every(K.FAILOVER_STARTED, "meta", "shard2"),
    ),
    "cascade-holds-errant-transactions": Scenario(
        changed(IDC1_DOWN, "shard1-cas", gtid_current_pos=pos(TOPO, "shard1", 101)),
        ("meta", "shard2"),
        IDC_DOWN | every(K.NOT_PROVEN_SAFE, "shard1") | every(K.FAILOVER_STARTED, "meta", "shard2"),
    ),
    "acker-replicates-from-elsewhere": Scenario(
        with_replica(IDC1_DOWN3, "shard1-sx", source_host="10.0.3.11", source_port=4999, source=None),
        ("meta", "shard2", "shard3"),
        IDC_DOWN
        | every(K.NOT_PROVEN_SAFE, "shard1")
        | every(K.FAILOVER_STARTED, "meta", "shard2", "shard3")
        | every(K.DRIFT, "shard1"),
        topo=TOPO3,
    ),
    "idc1-cut-off-from-controller-only": Scenario(
        idc_lost(TOPO, H, "IDC1", witnessed=False), (), every(K.PRIMARY_UNREACHABLE)
    ),
    "primary-unreachable-without-witness": Scenario(
        lost(TOPO, H, ["shard1-m"], witnessed=False), (), every(K.PRIMARY_UNREACHABLE, "shard1")
    ),
    "primary-dead-idc-up": Scenario(lost(TOPO, H, ["shard1-m"]), ("shard1",), every(K.FAILOVER_STARTED, "shard1")),
    "primary-suspect": Scenario(steady(IDC1_DOWN, seconds=1.0, rounds=3), (), set()),
    "empty-store-idc1-dead": Scenario(steady(IDC1_DOWN), (), IDC_DOWN | every(K.UNADOPTED), recs={}),
    # A fresh controller adopts the home layout as UNKNOWN and proves it from what it watches.
    "empty-store-proven-then-idc1-dead": Scenario(
        IDC1_DOWN, ALL, IDC_DOWN | every(K.SYNC_RESTORED) | every(K.FAILOVER_STARTED), recs={}
    ),
    "empty-store-unproven-then-idc1-dead": Scenario(
        IDC1_DOWN,
        (),
        IDC_DOWN | every(K.SYNC_DEGRADED) | every(K.NOT_PROVEN_SAFE),  # watched: UNKNOWN -> ASYNC
        recs={},
        before=async_on(H, "meta-m", "shard1-m", "shard2-m"),
    ),
    "empty-store-healthy": Scenario(H, (), every(K.SYNC_RESTORED), recs={}),
    "sync-degrades": Scenario(
        watched((snapshot(with_master(H, "shard1-m", no_tx=1), at=0.0),)), (), every(K.SYNC_DEGRADED, "shard1")
    ),
}


@pytest.mark.parametrize("sc", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(sc: Scenario) -> None:
    """Each scenario gives failover plans for exactly the expected shards, and exactly the expected alerts."""
    d = run(sc.nodes, sc.recs, control=sc.control, policy=sc.policy, topo=sc.topo, before=sc.before)
    assert tuple(p.shard for p in d.plans) == sc.promoted
    assert kinds(d) == sc.alerts
    assert set(d.reasons) == {s.name for s in sc.topo.shards}
    assert all(d.reasons.values())
