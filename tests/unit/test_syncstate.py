"""The per-shard sync state machine: when a shard is proven synchronous, and when it stops being."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from idc_ha.decide.acks import watch_for
from idc_ha.decide.syncstate import next_record
from idc_ha.model.ids import NodeName, SyncState
from idc_ha.model.observation import NodeObservation, SemiSyncSlave
from idc_ha.model.state import Recovery, ShardRecord

from .builders import (
    TOPO,
    WALL,
    baseline,
    changed,
    failover_op,
    home_nodes,
    lost,
    pos,
    record,
    snapshot,
    with_master,
    with_replica,
)

S = "shard1"
M, MS, SX, CAS, REM = "shard1-m", "shard1-ms", "shard1-sx", "shard1-cas", "shard1-rem"
Nodes = dict[NodeName, NodeObservation]


def step(rec: ShardRecord, nodes: Nodes) -> ShardRecord:
    return next_record(rec, snapshot(nodes), TOPO, wall=WALL)


def waiting(seq: int = 100, *, no_tx: int = 0, **upd: Any) -> ShardRecord:
    """UNKNOWN, with a recovery waiting for the acker to receive the primary's position ``seq``."""
    rec = record(TOPO, S, sync=SyncState.UNKNOWN, **upd)
    return rec.model_copy(
        update={"recovery": Recovery(target=pos(TOPO, S, seq), baseline=baseline(TOPO, M, no_tx=no_tx))}
    )


def acker_at(nodes: Nodes, seq: int, name: NodeName = SX) -> Nodes:
    """The acker has received (and applied) up to ``seq`` only."""
    out = with_replica(nodes, name, gtid_io_pos=pos(TOPO, S, seq))
    return changed(out, name, gtid_current_pos=pos(TOPO, S, seq))


def acking(nodes: Nodes, name: NodeName, on: bool = True) -> Nodes:
    return changed(nodes, name, semisync_slave=SemiSyncSlave(enabled=on, status=on))


H = home_nodes()
# the acker cut off from the primary (a stale dump thread keeps clients=1, as measured)
AWAY = with_replica(acking(H, SX, on=False), SX, io_running="Connecting", last_io_errno=2013)
AWAY = changed(AWAY, SX, semisync_slave=SemiSyncSlave(enabled=True, status=False))
AWAY_MS_UNSEEN = lost(TOPO, AWAY, [MS], witnessed=False)
UNKNOWN = record(TOPO, S, sync=SyncState.UNKNOWN)
ASYNC = record(TOPO, S, sync=SyncState.ASYNC)
IDC_SAFE = record(TOPO, S)


@dataclass(frozen=True)
class Case:
    rec: ShardRecord
    nodes: Nodes
    sync: SyncState
    reason: str = ""  # a fragment the new record's reason must contain
    recovery: bool | None = None  # whether a recovery is in progress afterwards (None: not checked)
    same: bool = False  # nothing changed: the very same record comes back (no write)
    prev: Nodes | None = None  # the round before (who acked in between)


CASES: dict[str, Case] = {
    # climbing back: evidence first, then the state
    "unknown-records-recovery-target": Case(
        UNKNOWN, H, SyncState.UNKNOWN, "waiting for shard1-sx to receive 0-4406-100", recovery=True
    ),
    "target-received-gives-idc-safe": Case(
        waiting(), H, SyncState.IDC_SAFE, "shard1-sx received everything up to", recovery=False
    ),
    "target-overtaken-gives-idc-safe": Case(
        waiting(100), acker_at(with_master(H, M), 103), SyncState.IDC_SAFE, recovery=False
    ),
    "target-not-yet-received": Case(waiting(100), acker_at(H, 99), SyncState.UNKNOWN, same=True),
    "async-climbs-the-same-way": Case(ASYNC, H, SyncState.ASYNC, "waiting for shard1-sx", recovery=True),
    "acker-in-primary-idc-gives-node-safe": Case(
        waiting(ackers=(MS,)),
        acking(acking(H, MS), SX, on=False),
        SyncState.NODE_SAFE,
        "shard1-ms received",
        recovery=False,
    ),
    # falling: a safe shard stops being one
    "semisync-master-off": Case(
        IDC_SAFE,
        with_master(H, M, enabled=False),
        SyncState.ASYNC,
        "semi-sync master is off on the primary shard1-m",
    ),
    "no-semisync-plugin": Case(
        IDC_SAFE, changed(H, M, semisync_master=None), SyncState.ASYNC, "semi-sync master is off"
    ),
    "no-tx-rose": Case(
        IDC_SAFE,
        with_master(H, M, no_tx=2),
        SyncState.ASYNC,
        "2 commit(s) on shard1-m went through without an ack",
    ),
    "finite-timeout": Case(
        IDC_SAFE,
        with_master(H, M, timeout_ms=10_000),
        SyncState.UNKNOWN,
        "rpl_semi_sync_master_timeout on shard1-m is 10000 ms",
    ),
    "wait-point-after-commit": Case(
        IDC_SAFE,
        with_master(H, M, wait_point="AFTER_COMMIT"),
        SyncState.UNKNOWN,
        "is AFTER_COMMIT, not AFTER_SYNC",
    ),
    "non-acker-replica-acking": Case(
        IDC_SAFE,
        acking(H, MS),
        SyncState.UNKNOWN,
        "shard1-ms acks commits of shard1-m but is not the recorded acker",
    ),
    "restart-with-unacked-commits": Case(
        IDC_SAFE, with_master(changed(H, M, booted_at=-30), M, no_tx=1), SyncState.ASYNC, "1 commit(s)"
    ),
    # gap 1/6: semi-sync switched off between probes; counters reset within a boot
    "no-times-rose": Case(
        IDC_SAFE,
        with_master(H, M, no_times=1),
        SyncState.ASYNC,
        "switched off 1 time(s) (Rpl_semi_sync_master_no_times",
    ),
    "no-tx-fell-within-one-boot": Case(
        record(TOPO, S, baseline=baseline(TOPO, M, no_tx=5)),
        H,
        SyncState.UNKNOWN,
        "went back within one boot (no_tx 5 -> 0",
    ),
    "no-times-fell-within-one-boot": Case(
        record(TOPO, S, baseline=baseline(TOPO, M, no_times=2)), H, SyncState.UNKNOWN, "no_times 2 -> 0"
    ),
    "baseline-from-before-no-times-was-watched": Case(
        record(TOPO, S, baseline=baseline(TOPO, M, no_times=None)), H, SyncState.UNKNOWN, "predates watching"
    ),
    # gap 3: another acker that the controller cannot rule out
    "more-semisync-clients-than-ackers": Case(
        IDC_SAFE, with_master(H, M, clients=2), SyncState.UNKNOWN, "counts 2 semi-sync replicas but 1 acker(s)"
    ),
    "acking-replica-with-an-unresolved-source": Case(
        IDC_SAFE,
        with_replica(acking(H, MS), MS, source_host="db-m.example", source=None),
        SyncState.UNKNOWN,
        "shard1-ms acks commits of shard1-m but is not the recorded acker",
    ),
    "acks-while-the-acker-is-away-and-a-replica-unseen": Case(
        IDC_SAFE,
        with_master(AWAY_MS_UNSEEN, M, yes_tx=1048),
        SyncState.UNKNOWN,
        "48 commit(s) on shard1-m were acknowledged while the recorded acker shard1-sx was not acking",
        prev=AWAY_MS_UNSEEN,
    ),
    "a-client-outside-the-topology-acks": Case(
        IDC_SAFE,
        with_master(AWAY, M, yes_tx=1048, gtid_binlog_pos=pos(TOPO, S, 148)),
        SyncState.UNKNOWN,
        "another semi-sync client",
        prev=AWAY,
    ),
    "a-stale-client-count-acks-nothing": Case(
        IDC_SAFE, with_master(AWAY_MS_UNSEEN, M, wait_sessions=3), SyncState.IDC_SAFE, same=True, prev=AWAY_MS_UNSEEN
    ),
    "acks-before-the-acker-went-away-are-its-own": Case(
        IDC_SAFE, with_master(AWAY, M, yes_tx=1048), SyncState.IDC_SAFE, same=True, prev=H
    ),
    "acks-while-the-acker-is-unseen-after-acking": Case(
        IDC_SAFE, with_master(lost(TOPO, H, [SX]), M, yes_tx=1048), SyncState.IDC_SAFE, same=True, prev=H
    ),
    "acks-while-the-acker-is-unseen-in-both-rounds": Case(
        IDC_SAFE,
        with_master(lost(TOPO, H, [SX]), M, yes_tx=1048),
        SyncState.IDC_SAFE,
        same=True,
        prev=lost(TOPO, H, [SX]),
    ),
    "unreachable-replica-while-the-acker-is-the-client": Case(
        IDC_SAFE, lost(TOPO, H, [MS], witnessed=False), SyncState.IDC_SAFE, same=True
    ),
    # gap 8: the position algebra needs gtid_strict_mode
    "strict-mode-off-on-the-primary": Case(
        IDC_SAFE, changed(H, M, gtid_strict_mode=False), SyncState.UNKNOWN, "gtid_strict_mode is OFF on shard1-m"
    ),
    "strict-mode-off-on-a-replica": Case(
        IDC_SAFE,
        changed(H, CAS, gtid_strict_mode=False),
        SyncState.UNKNOWN,
        "SET GLOBAL gtid_strict_mode=ON on shard1-cas",
    ),
    "strict-mode-off-blocks-the-climb": Case(
        waiting(), changed(H, SX, gtid_strict_mode=False), SyncState.UNKNOWN, "gtid_strict_mode", recovery=False
    ),
    "node-safe-falls-too": Case(record(TOPO, S, sync=SyncState.NODE_SAFE), with_master(H, M, no_tx=1), SyncState.ASYNC),
    "recovery-dropped-when-unsafe": Case(
        waiting(), with_master(H, M, timeout_ms=500), SyncState.UNKNOWN, "500 ms", recovery=False
    ),
    # staying put
    "healthy-safe-shard-unchanged": Case(IDC_SAFE, H, SyncState.IDC_SAFE, same=True),
    "wait-point-lower-case-accepted": Case(
        IDC_SAFE, with_master(H, M, wait_point="after_sync"), SyncState.IDC_SAFE, same=True
    ),
    "remote-acking-its-own-source-is-harmless": Case(IDC_SAFE, acking(H, REM), SyncState.IDC_SAFE, same=True),
    "acker-disconnect-keeps-idc-safe": Case(IDC_SAFE, lost(TOPO, H, [SX]), SyncState.IDC_SAFE, same=True),
    "unreachable-primary-changes-nothing": Case(IDC_SAFE, lost(TOPO, H, [M]), SyncState.IDC_SAFE, same=True),
    "unreachable-primary-keeps-unknown": Case(UNKNOWN, lost(TOPO, H, [M]), SyncState.UNKNOWN, same=True),
    "unreachable-primary-keeps-recovery": Case(waiting(), lost(TOPO, H, [M]), SyncState.UNKNOWN, same=True),
    "unprobed-primary-changes-nothing": Case(
        IDC_SAFE, {n: o for n, o in H.items() if n != M}, SyncState.IDC_SAFE, same=True
    ),
    "op-in-flight-freezes-the-record": Case(
        IDC_SAFE.model_copy(update={"op": failover_op(S)}),
        with_master(H, M, enabled=False, no_tx=9),
        SyncState.IDC_SAFE,
        same=True,
    ),
    # not ready to climb: say why, record nothing else
    "acker-unreachable": Case(
        ASYNC,
        lost(TOPO, H, [SX]),
        SyncState.ASYNC,
        "not proven: the acker shard1-sx is unreachable",
        recovery=False,
    ),
    "acker-io-disconnected": Case(
        ASYNC,
        with_replica(H, SX, io_running="Connecting"),
        SyncState.ASYNC,
        "shard1-sx is not connected as a semi-sync replica",
        recovery=False,
    ),
    "acker-not-acking": Case(ASYNC, acking(H, SX, on=False), SyncState.ASYNC, "not connected as a semi-sync replica"),
    "semisync-not-in-force": Case(
        ASYNC, with_master(H, M, status=False), SyncState.ASYNC, "semi-sync is enabled on shard1-m but not in force"
    ),
    "no-semisync-client": Case(ASYNC, with_master(H, M, clients=0), SyncState.ASYNC, "no semi-sync replica connected"),
    "acker-replicates-elsewhere": Case(
        ASYNC,
        with_replica(H, SX, source_host="10.0.3.12", source_port=4410, source=None),
        SyncState.ASYNC,
        "shard1-sx does not replicate from shard1-m",
    ),
    "two-ackers-recorded": Case(
        record(TOPO, S, sync=SyncState.ASYNC, ackers=(SX, CAS)), H, SyncState.ASYNC, "2 ackers are recorded"
    ),
    "recovery-dropped-when-acker-goes": Case(
        waiting(), lost(TOPO, H, [SX]), SyncState.UNKNOWN, "not proven", recovery=False
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_transition(case: Case) -> None:
    """Each row of the sync-state table: from a record and one observation to the next record."""
    acks = watch_for(None, case.rec).fold(snapshot(case.prev, at=-0.2)) if case.prev is not None else None
    new = next_record(case.rec, snapshot(case.nodes), TOPO, wall=WALL, acks=acks)
    if case.same:
        assert new is case.rec
        return
    assert new.sync == case.sync
    assert case.reason in new.reason
    if case.recovery is not None:
        assert (new.recovery is not None) is case.recovery
    assert new.updated_wall == WALL
    assert (new.shard, new.epoch, new.primary, new.ackers) == (
        case.rec.shard,
        case.rec.epoch,
        case.rec.primary,
        case.rec.ackers,
    )
