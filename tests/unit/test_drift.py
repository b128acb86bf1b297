"""drift(): what nodes are, against what the current layout says they must be."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idc_ha.decide.drift import drift
from idc_ha.decide.plan import AnyStep, ArmAcker, Disarm, Fence
from idc_ha.model.alert import AlertKind, Severity
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, SemiSyncSlave
from idc_ha.model.state import ShardRecord

from .builders import TOPO, changed, failover_op, home_nodes, lost, record, snapshot, with_replica
from .builders import after_failover as record_after_failover

Nodes = dict[NodeName, NodeObservation]
H = home_nodes()
REC = record(TOPO, "shard1")


def semisync(nodes: Nodes, name: NodeName, enabled: bool) -> Nodes:
    return changed(nodes, name, semisync_slave=SemiSyncSlave(enabled=enabled, status=enabled))


def after_failover() -> ShardRecord:
    """shard1 after an IDC failover: shard1-sx primary, cascade acking, old primary and MS out."""
    return record_after_failover(TOPO, "shard1")


def after_failover_nodes() -> Nodes:
    """What shard1's nodes look like after that failover: sx writable primary, the cascade acking for
    it, the old primary back but fenced (read-only) and the MS still pointing at it."""
    nodes = changed(H, "shard1-sx", read_only=False, replica=None, semisync_slave=None)
    nodes = semisync(nodes, "shard1-cas", True)
    return changed(nodes, "shard1-m", read_only=True)


AFTER = after_failover_nodes()


@dataclass(frozen=True)
class Case:
    nodes: Nodes
    alerts: tuple[tuple[NodeName, Severity, str], ...] = ()  # (node, severity, reason fragment), in order
    steps: tuple[AnyStep, ...] = ()
    rec: ShardRecord = REC


def fence(node: NodeName) -> Fence:
    return Fence(node=node, reason="only the primary may take writes")


def arm(node: NodeName, source: NodeName) -> ArmAcker:
    return ArmAcker(node=node, source=source, reason="the recorded acker must ack")


W, C = Severity.WARNING, Severity.CRITICAL
CASES: dict[str, Case] = {
    "home-layout-as-recorded": Case(H),
    "unreachable-nodes-are-skipped": Case(lost(TOPO, H, ["shard1-ms", "shard1-rem"], witnessed=False)),
    "primary-read-only": Case(
        changed(H, "shard1-m", read_only=True), (("shard1-m", W, "the primary shard1-m is read-only"),)
    ),
    "replica-writable-is-fenced": Case(
        changed(H, "shard1-rem", read_only=False),
        (("shard1-rem", C, "shard1-rem is writable but is not the primary (epoch 1)"),),
        (fence("shard1-rem"),),
    ),
    "replica-from-wrong-source": Case(
        with_replica(H, "shard1-rem", source_host="10.0.1.12", source_port=4406, source="shard1-m"),
        (("shard1-rem", W, "replicates from 10.0.1.12:4406, the layout says shard1-sx"),),
    ),
    "replica-not-replicating": Case(
        changed(H, "shard1-cas", replica=None), (("shard1-cas", W, "shard1-cas replicates from nothing"),)
    ),
    "acker-semisync-off-is-rearmed": Case(
        semisync(H, "shard1-sx", False),
        (("shard1-sx", W, "the acker shard1-sx has semi-sync slave off"),),
        (arm("shard1-sx", "shard1-m"),),
    ),
    "acker-without-plugin-is-rearmed": Case(
        changed(H, "shard1-sx", semisync_slave=None),
        (("shard1-sx", W, "semi-sync slave off"),),
        (arm("shard1-sx", "shard1-m"),),
    ),
    "acker-off-with-primary-down-only-alerts": Case(
        semisync(lost(TOPO, H, ["shard1-m"]), "shard1-sx", False), (("shard1-sx", W, "semi-sync slave off"),)
    ),
    "non-acker-semisync-on-is-disarmed": Case(
        semisync(H, "shard1-ms", True),
        (("shard1-ms", W, "shard1-ms has semi-sync slave on but is not an acker"),),
        (Disarm(node="shard1-ms", reason="only the recorded ackers (shard1-sx) may ack"),),
    ),
    "non-acker-acking-with-setting-off-is-disarmed": Case(
        changed(H, "shard1-ms", semisync_slave=SemiSyncSlave(enabled=False, status=True)),
        (("shard1-ms", W, "shard1-ms has semi-sync slave on but is not an acker"),),
        (Disarm(node="shard1-ms", reason="only the recorded ackers (shard1-sx) may ack"),),
    ),
    "non-acker-kept-while-the-acker-does-not-ack": Case(
        semisync(semisync(H, "shard1-sx", False), "shard1-ms", True),
        (("shard1-ms", W, "shard1-ms has semi-sync slave on"), ("shard1-sx", W, "semi-sync slave off")),
        (arm("shard1-sx", "shard1-m"),),
    ),
    "after-failover-as-recorded": Case(AFTER, rec=after_failover()),
    "fence-pending-old-primary-is-left-to-the-fencer": Case(
        changed(AFTER, "shard1-m", read_only=False), rec=after_failover()
    ),
    "writable-out-node-not-pending-is-fenced": Case(
        changed(AFTER, "shard1-m", read_only=False),
        (("shard1-m", C, "shard1-m is writable but is not the primary (epoch 2)"),),
        (fence("shard1-m"),),
        rec=after_failover().model_copy(update={"fence_pending": ()}),
    ),
    "new-acker-not-acking-is-rearmed-from-new-primary": Case(
        semisync(AFTER, "shard1-cas", False),
        (("shard1-cas", W, "commits on shard1-sx wait for nobody"),),
        (arm("shard1-cas", "shard1-sx"),),
        rec=after_failover(),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_drift(case: Case) -> None:
    """Every difference from the recorded layout is alerted; only fencing and re-arming the acker act."""
    alerts, steps = drift(case.rec, snapshot(case.nodes), TOPO)
    assert [(a.node, a.severity) for a in alerts] == [(n, s) for n, s, _ in case.alerts]
    for a, (_, _, fragment) in zip(alerts, case.alerts, strict=True):
        assert fragment in a.reason
        assert a.kind == AlertKind.DRIFT and a.shard == "shard1" and a.epoch == case.rec.epoch and a.hint
    assert tuple(steps) == case.steps


def test_wrong_source_hint_is_the_command_to_run() -> None:
    """The hint for a replica on the wrong source is the CHANGE MASTER statement that fixes it."""
    [alert], _ = drift(REC, snapshot(with_replica(H, "shard1-rem", source_port=1, source=None)), TOPO)
    assert alert.hint == "CHANGE MASTER TO MASTER_HOST='10.0.2.12', MASTER_PORT=4408 on shard1-rem"


def test_an_operation_in_flight_silences_drift() -> None:
    """While a failover runs, nodes are expected to differ from the record: nothing is reported or done."""
    rec = REC.model_copy(update={"op": failover_op("shard1")})
    assert drift(rec, snapshot(changed(H, "shard1-rem", read_only=False)), TOPO) == ([], [])


def test_drift_only_looks_at_its_shard() -> None:
    """A writable node of another shard is that shard's drift, not this one's."""
    assert drift(REC, snapshot(changed(H, "shard2-rem", read_only=False)), TOPO) == ([], [])


@given(
    st.dictionaries(
        st.sampled_from([n.name for n in TOPO.nodes_by_shard["shard1"]]),
        st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
        max_size=5,
    )
)
def test_drift_never_opens_and_never_touches_the_primary(
    knobs: dict[str, tuple[bool, bool, bool, bool]],
) -> None:
    """Whatever the nodes look like, drift only fences non-primaries, arms the recorded acker from
    the primary, and disarms a non-acker only while the recorded acker acks; it never fences the
    primary."""
    nodes = dict(H)
    for name, (reachable, read_only, semi, io) in knobs.items():
        nodes = changed(nodes, name, read_only=read_only)
        nodes = semisync(nodes, name, semi)
        if nodes[name].replica is not None and not io:
            nodes = with_replica(nodes, name, io_running="No")
        if not reachable:
            nodes = lost(TOPO, nodes, [name], witnessed=False)
    _, steps = drift(REC, snapshot(nodes), TOPO)
    for s in steps:
        assert isinstance(s, Fence | ArmAcker | Disarm)
        if isinstance(s, Fence):
            assert s.node != REC.primary and nodes[s.node].writable
        elif isinstance(s, Disarm):
            acker = nodes[REC.ackers[0]]
            assert s.node not in REC.ackers and s.node != REC.primary
            assert acker.reachable and acker.semisync_slave is not None and acker.semisync_slave.status
            assert acker.replica is not None and acker.replica.io_connected
        else:
            assert s.node in REC.ackers and s.source == REC.primary and nodes[REC.primary].reachable


def test_a_replica_of_the_layout_stopped_on_an_error_is_alerted() -> None:
    """A rejoined node whose source lacks its position (purged binlogs: 1236) is in the layout but
    replicates nothing: a critical drift alert says to rebuild it (found by review: drift was silent)."""
    from idc_ha.model.ids import NodeName, ShardName

    from .builders import after_failover, changed, home_nodes, replica_obs, snapshot, with_replica

    s, m, sx = ShardName("shard1"), NodeName("shard1-m"), NodeName("shard1-sx")
    rec = after_failover(TOPO, s, fence_pending=(), out=(NodeName("shard1-ms"),))
    rec = rec.model_copy(update={"upstreams": {**rec.upstreams, m: sx}})
    nodes = changed(home_nodes(), sx, read_only=False, replica=None)
    nodes = changed(nodes, m, read_only=True, semisync_master=None, replica=replica_obs(TOPO, m, source=sx).replica)
    nodes = with_replica(nodes, m, io_running="No", last_io_errno=1236, last_io_error="Could not find GTID state")
    alerts, steps = drift(rec, snapshot(nodes), TOPO)
    [a] = [a for a in alerts if a.node == m]
    assert "cannot replicate from shard1-sx: IO 1236" in a.reason and "rebuild shard1-m" in a.hint
    assert not [x for x in steps if x.node == m]  # alerted, never restarted
