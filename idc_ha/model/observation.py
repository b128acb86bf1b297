"""What one probe round saw: frozen values, so a decision can be replayed from a recording.

``NodeObservation`` is one node at one instant; ``Snapshot`` is every node of the cluster from one
probe round, stamped with the controller's clock. Nothing here does I/O.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, NodeName


class FrozenValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class ProbeFailure(StrEnum):
    """Why a probe got no answer. A refusal is strong evidence the server process is gone while
    its machine is up; a timeout may be a network cut, a frozen machine or just load."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    AUTH = "auth"
    OTHER = "other"


class ReplicaStatus(FrozenValue):
    """The parts of SHOW SLAVE STATUS the controller decides on.

    ``source`` is the node of the topology at ``Master_Host:Master_Port``, matched by resolved
    address at the edge (``idc_ha.observe.addresses``): ``10.0.1.11``, ``::ffff:10.0.1.11`` and a
    name resolving to it are one source. None when no node of the topology is there, or the name
    did not resolve: the decision core then treats the source as unknown, never as a match."""

    source_host: str
    source_port: int
    source: NodeName | None = None
    io_running: str  # "Yes", "No", "Connecting", "Preparing"
    sql_running: str  # "Yes", "No"
    gtid_io_pos: GtidPos = GtidPos()
    using_gtid: str = ""
    last_io_errno: int = 0
    last_io_error: str = ""
    last_sql_errno: int = 0
    last_sql_error: str = ""
    seconds_behind: int | None = None
    # What shows the link carries something: the bytes read from the source's binlog and the
    # heartbeats received (sent every ``heartbeat_period_s`` while the source has nothing to send).
    # Both still for longer than a few periods while the IO thread says "Yes": the source is silent.
    read_at: str = ""  # Master_Log_File:Read_Master_Log_Pos
    heartbeats: int = 0  # Slave_received_heartbeats
    heartbeat_period_s: float = 0.0  # Slave_heartbeat_period; 0: none sent
    io_state: str = ""  # Slave_IO_State
    sql_state: str = ""
    relay_log_file: str = ""  # where the SQL thread reads: needed to resume it without a reset
    relay_log_pos: int = 0

    @property
    def io_connected(self) -> bool:
        return self.io_running == "Yes"

    @property
    def sql_ok(self) -> bool:
        return self.sql_running == "Yes"

    @property
    def io_stopped(self) -> bool:
        """The IO thread is not running at all (not even reconnecting)."""
        return self.io_running == "No"

    @property
    def awaiting_source(self) -> bool:
        """The IO thread sits waiting for the source to send something (not writing to the relay
        log, not held by relay_log_space_limit): only then does receiving nothing mean the source
        sends nothing."""
        return self.io_connected and self.io_state.startswith("Waiting for master to send event")

    @property
    def link_lost(self) -> bool:
        """Evidence that this replica cannot reach its source: the IO thread is trying to
        (``Connecting``), or it stopped on an error. An IO thread stopped by hand, with no error,
        says nothing about the source."""
        return self.io_running in ("Connecting", "Preparing") or (self.io_running == "No" and self.last_io_errno != 0)

    @property
    def never_started(self) -> bool:
        """Both threads stopped, no error, and nothing received since the server started: a
        replica restarted with ``skip-slave-start`` that nobody has started yet (a STOP SLAVE by
        hand keeps ``Gtid_IO_Pos``; a restart clears it)."""
        return (
            self.io_running == "No"
            and self.sql_running == "No"
            and not self.gtid_io_pos
            and not self.last_io_errno
            and not self.last_sql_errno
        )


class SemiSyncMaster(FrozenValue):
    """The primary side of semi-sync: settings and counters."""

    enabled: bool
    status: bool  # Rpl_semi_sync_master_status: ON while semi-sync is in force
    wait_point: str
    timeout_ms: int
    wait_no_slave: bool
    clients: int
    yes_tx: int
    no_tx: int
    wait_sessions: int
    # Rpl_semi_sync_master_no_times: how often semi-sync was switched off, by a timeout or by
    # SET GLOBAL rpl_semi_sync_master_enabled=OFF (measured on 10.11.19). Commits made while it
    # is disabled are not counted in no_tx, so this counter is what shows an off-and-on toggle
    # between two probes.
    no_times: int = 0

    @property
    def never_times_out(self) -> bool:
        """The timeout is at (or near) its maximum: semi-sync cannot fall back to async by itself."""
        return self.timeout_ms >= SEMISYNC_TIMEOUT_NEVER // 2

    @property
    def settings_hold(self) -> bool:
        """Every setting RPO=0 needs is as idc-ha sets it: enabled, AFTER_SYNC, a timeout that never
        expires, and waiting even with no replica connected."""
        return self.enabled and self.wait_point.upper() == "AFTER_SYNC" and self.never_times_out and self.wait_no_slave


class SemiSyncSlave(FrozenValue):
    enabled: bool
    status: bool  # Rpl_semi_sync_slave_status: this replica is acking its source


class NodeObservation(FrozenValue):
    """One node as one probe saw it. When ``reachable`` is False only ``failure`` and ``error``
    are meaningful."""

    node: NodeName
    reachable: bool
    failure: ProbeFailure | None = None
    error: str = ""
    latency_ms: float = 0.0
    read_only: bool = True
    server_id: int = 0
    version: str = ""
    gtid_binlog_pos: GtidPos = GtidPos()
    gtid_slave_pos: GtidPos = GtidPos()
    gtid_current_pos: GtidPos = GtidPos()
    gtid_strict_mode: bool = False
    replica: ReplicaStatus | None = None
    semisync_master: SemiSyncMaster | None = None
    semisync_slave: SemiSyncSlave | None = None
    threads_connected: int = 0
    # When the server started, on the controller's monotonic clock: probe time minus Uptime. The
    # prober publishes it once per boot and holds it, so it changes exactly when the server
    # restarted (any change is a restart), an unchanged server gives an equal observation round
    # after round, and a wall-clock step changes nothing.
    booted_at: float = 0.0
    slave_net_timeout_s: int = 0  # how long this node, as a replica, takes to notice a silent source (0: unknown)
    # The processlist id of the oldest binlog dump thread waiting to finalize its termination:
    # read only on a writable semi-sync master with no semi-sync client registered (else 0). The
    # same thread seen there for a couple of seconds is the MariaDB 10.11 ack-receiver deadlock
    # (``decide/wake.py``); its TIME is no help (it counts from the dump's start).
    finalizing_dump: int = 0

    @property
    def writable(self) -> bool:
        return self.reachable and not self.read_only

    @property
    def source(self) -> NodeName | None:
        """The topology node this node replicates from (by resolved address), when it answers."""
        return self.replica.source if self.reachable and self.replica is not None else None

    def received(self) -> GtidPos:
        """Everything this node holds or has in its relay log: what it could serve if promoted."""
        pos = self.gtid_current_pos
        if self.replica is not None:
            pos = pos.merge(self.replica.gtid_io_pos)
        return pos


class Snapshot(FrozenValue):
    """Every node of the cluster from one probe round. ``taken_at`` is the controller's monotonic
    clock at the start of the round; ``wall`` the wall clock, for humans."""

    taken_at: float
    wall: float
    duration_ms: float
    nodes: dict[NodeName, NodeObservation]
