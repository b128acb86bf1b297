"""One simulated MariaDB 10.11 server: the state the controller can observe and change.

A ``FakeNode`` holds its binlog (a list of GTIDs, domain 0, sequence numbers increasing, as with
gtid_strict_mode), its applied position, read_only, semi-sync settings and counters, and at most
one ``Replica`` (SHOW SLAVE STATUS). Faults: ``dead`` (the process is gone: connections refused),
``fault="timeout"`` (the machine is cut off: every call times out) and ``fault="frozen"``
(connections are accepted, nothing answers: calls time out after connecting).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from idc_ha.model.gtid import Gtid, GtidPos
from idc_ha.model.ids import NodeName

EVENT_BYTES = 100  # how far Relay_Log_Pos moves per event group


def pos_of(gtids: list[Gtid]) -> GtidPos:
    last = {g.domain: g for g in gtids}
    return GtidPos.of(*last.values())


@dataclass(frozen=True)
class Sent:
    """One statement that reached a live server; ``conn`` numbers the fresh connection it came on
    (0: the admin connection kept per node)."""

    node: NodeName
    sql: str
    fresh: bool
    conn: int
    waiting: int = 0  # commits waiting for an ack on the node when it was sent
    read_only: bool = True  # the node's read_only when it was sent


@dataclass
class Replica:
    """One replica's replication. The relay log is one file holding ``log``, every event group
    received since it was last deleted; group k starts at ``4 + EVENT_BYTES * k``. The SQL thread
    stands at ``log[at]``; after a crash relay-log.info may say it stands at ``info_at`` instead."""

    host: str
    port: int
    io: str = "Yes"  # Yes, Connecting, No
    sql: str = "Yes"  # Yes, No
    use_gtid: str = "slave_pos"  # slave_pos, current_pos, no
    log: list[Gtid] = field(default_factory=list)
    at: int = 0
    io_pos: GtidPos = field(default_factory=GtidPos)
    semi: bool = False  # the semi-sync role negotiated when the IO thread last connected
    relay_file: int = 1
    info_at: int | None = None
    partial: Gtid | None = None  # a group whose start reached the relay log but not its end (cut off)
    last_io_errno: int = 0
    # The IO thread keeps saying "Yes" while its source is gone (a silent source, before
    # slave_net_timeout); by default it goes "Connecting" at once, as with a refusing one.
    waits_on_silence: bool = False
    last_sql_errno: int = 0
    last_sql_error: str = ""

    @property
    def relay(self) -> list[Gtid]:
        """Received, not yet applied."""
        return self.log[self.at :]

    @property
    def relay_pos(self) -> int:
        return 4 + EVENT_BYTES * (self.at if self.info_at is None else self.info_at)

    @property
    def relay_name(self) -> str:
        return f"relay-bin.{self.relay_file:06d}"


@dataclass
class FakeNode:
    name: NodeName
    server_id: int
    kill_error: int | None = None  # a KILL of the IO thread fails with this code (e.g. 1095: no grant)
    dead: bool = False
    fault: str | None = None  # None, "timeout" (cut off), "frozen" (accepts, never answers)
    read_only: bool = True
    binlog: list[Gtid] = field(default_factory=list)
    slave_pos: GtidPos = field(default_factory=GtidPos)
    replica: Replica | None = None
    master_enabled: bool = False
    wait_point: str = "AFTER_COMMIT"
    master_timeout: int = 10_000
    wait_no_slave: bool = True
    slave_enabled: bool = False
    routing_rows: dict[str, dict[str, object]] = field(default_factory=dict)  # idc_ha.routing, if meta primary
    wait_sessions: int = 0  # commits waiting for a semi-sync ack that never comes (the binlog's last ones)
    killed_waiters: int = 0  # waiting sessions ended by KILL CONNECTION (their commits stay: errant)
    yes_tx: int = 0  # commits acknowledged by a semi-sync replica
    no_tx: int = 0  # commits that went through without an ack
    no_times: int = 0  # times semi-sync was switched off
    acked_upto: int = 0  # the binlog sequence a semi-sync replica has acknowledged
    semi_off: bool = False  # semi-sync fell back to async (a finite timeout expired) until a replica acks
    stalled: bool = False  # the IO thread stays connected but nothing arrives
    apply_per_tick: int | None = None  # None: the SQL thread applies the whole relay log per tick
    started: float = -86_400.0  # the fleet clock when the server started
    slave_net_timeout: int = 2
    discarded: list[Gtid] = field(default_factory=list)  # unapplied transactions a relay-log deletion lost
    # The MariaDB 10.11 ack-receiver deadlock (decide/wake.py), since this fleet-clock time: a dump
    # thread waits to finalize, no semi-sync replica registers (clients 0, no acks) although their
    # IO threads say "Yes", until another semi-sync client registers (``Fleet.attach_silent_replica``).
    hung_since: float | None = None
    silent_clients: int = 0  # semi-sync clients attached that never ack (the controller's waker)
    purged: int = 0  # the first binlog transactions whose file was purged (a dump from among them is refused)
    traps: list[str] = field(default_factory=list)  # STARTs issued with both threads stopped in GTID mode

    @property
    def binlog_pos(self) -> GtidPos:
        return pos_of(self.binlog[-1:]) if self.binlog else GtidPos()

    @property
    def current_pos(self) -> GtidPos:
        return self.binlog_pos.merge(self.slave_pos)

    @property
    def answers(self) -> bool:
        return not self.dead and self.fault is None


def seq_of(g: Gtid) -> int:
    return g.seq


def ack_upto(src: FakeNode, got: int) -> None:
    """A semi-sync ack up to sequence ``got`` on ``src``: the commits it covers complete."""
    newly = bisect.bisect_right(src.binlog, got, key=seq_of) - bisect.bisect_right(
        src.binlog, src.acked_upto, key=seq_of
    )
    if newly > 0:
        src.yes_tx += newly
        src.wait_sessions = max(0, src.wait_sessions - newly)
        src.acked_upto, src.semi_off = got, False
