"""What a probe of one simulated server sees: the observation, and the state it depends on (an
unchanged state gives the very same observation object back, as the real prober does)."""

from __future__ import annotations

from typing import Any

from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName
from idc_ha.model.observation import NodeObservation, ReplicaStatus, SemiSyncMaster, SemiSyncSlave

from .node import FakeNode


def finalizing(n: FakeNode, clients_n: int) -> int:
    """What the probe's processlist read shows (asked only on a writable semi-sync master with no
    semi-sync client registered): the stuck dump thread's id while the node is deadlocked."""
    if n.hung_since is None or n.read_only or not n.master_enabled or clients_n:
        return 0
    return 2_000_000 + n.server_id


def state_of(n: FakeNode, clients_n: int, stuck_dump: int = 0) -> tuple[Any, ...]:
    """Everything a node's observation is made of."""
    r = n.replica
    return (
        stuck_dump,
        n.read_only,
        len(n.binlog),
        n.binlog[-1] if n.binlog else None,
        n.slave_pos,
        n.master_enabled,
        n.wait_point,
        n.master_timeout,
        n.wait_no_slave,
        n.semi_off,
        clients_n,
        n.yes_tx,
        n.no_tx,
        n.no_times,
        n.wait_sessions,
        n.slave_enabled,
        n.started,
        n.slave_net_timeout,
        None
        if r is None
        else (
            r.host,
            r.port,
            r.io,
            r.sql,
            r.use_gtid,
            r.io_pos,
            r.semi,
            r.relay_name,
            r.relay_pos,
            r.last_io_errno,
            r.last_sql_errno,
            r.last_sql_error,
        ),
    )


def build(n: FakeNode, clients_n: int, source: NodeName | None, stuck_dump: int = 0) -> NodeObservation:
    """A live node's observation, as the real probe parses it."""
    r = n.replica
    replica = None
    if r is not None:
        replica = ReplicaStatus(
            source_host=r.host,
            source_port=r.port,
            source=source,
            io_running=r.io,
            sql_running=r.sql,
            gtid_io_pos=r.io_pos,
            using_gtid={"slave_pos": "Slave_Pos", "current_pos": "Current_Pos", "no": "No"}[r.use_gtid],
            last_io_errno=r.last_io_errno,
            last_sql_errno=r.last_sql_errno,
            last_sql_error=r.last_sql_error,
            relay_log_file=r.relay_name,
            relay_log_pos=r.relay_pos,
            # NULL unless both threads run, as MariaDB reports it; the fleet keeps no event
            # timestamps, so anything left to apply counts as one second behind.
            seconds_behind=(0 if not r.relay else 1) if r.io == "Yes" and r.sql == "Yes" else None,
        )
    never = n.master_timeout >= SEMISYNC_TIMEOUT_NEVER // 2
    return NodeObservation(
        node=n.name,
        reachable=True,
        read_only=n.read_only,
        server_id=n.server_id,
        version="10.11.9-MariaDB-fleet",
        gtid_binlog_pos=n.binlog_pos,
        gtid_slave_pos=n.slave_pos,
        gtid_current_pos=n.current_pos,
        gtid_strict_mode=True,
        replica=replica,
        semisync_master=SemiSyncMaster(
            enabled=n.master_enabled,
            status=n.master_enabled and not n.semi_off and (clients_n > 0 or (n.wait_no_slave and never)),
            wait_point=n.wait_point,
            timeout_ms=n.master_timeout,
            wait_no_slave=n.wait_no_slave,
            clients=clients_n,
            yes_tx=n.yes_tx,
            no_tx=n.no_tx,
            wait_sessions=n.wait_sessions,
            no_times=n.no_times,
        ),
        semisync_slave=SemiSyncSlave(enabled=n.slave_enabled, status=r is not None and r.io == "Yes" and r.semi),
        booted_at=n.started,
        slave_net_timeout_s=n.slave_net_timeout,
        finalizing_dump=stuck_dump,
    )
