"""``idc-ha check --live``: does reality match the current layout?

The current layout is the store's record for each shard, or the home layout when the store has
none. Every mismatch is a ``Problem`` naming the node and the fix. Nothing is changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from idc_ha.act.wake import WAKER_SERVER_IDS
from idc_ha.decide.tracks import SILENT_PERIODS
from idc_ha.model.ids import SEMISYNC_TIMEOUT_NEVER, ShardName
from idc_ha.model.observation import Snapshot
from idc_ha.model.problems import Problem
from idc_ha.model.state import ShardRecord, home_record
from idc_ha.model.topology import Topology


def _slow_to_notice(
    field: str, net_timeout_s: int, max_blind_s: float | None, heartbeat_s: float = 0.0
) -> Problem | None:
    """An acker (or a node that becomes one) whose slave_net_timeout makes a silent IDC unprovable."""
    # An acker notices a silent primary when nothing, not even a heartbeat, has arrived for
    # SILENT_PERIODS heartbeat periods, or else after slave_net_timeout; the blind spell adds the
    # rounds to confirm it and a probe timeout or two. Half the bound leaves that room.
    notice = float(net_timeout_s)
    if heartbeat_s > 0:
        notice = min(notice, SILENT_PERIODS * heartbeat_s)
    if max_blind_s is None or not net_timeout_s or notice <= max_blind_s / 2:
        return None
    return Problem(
        field=field,
        message=f"slave_net_timeout is {net_timeout_s} s with "
        + (f"heartbeats every {heartbeat_s} s" if heartbeat_s > 0 else "no heartbeats")
        + ": an acker this slow to notice a silent primary makes "
        f"the blind spell exceed proof.max_blind_s ({max_blind_s} s), so an IDC that goes silent (rather "
        "than refusing connections) is never failed over automatically",
        fix="CHANGE MASTER TO MASTER_HEARTBEAT_PERIOD=0.1 (as idc-ha wires replicas), or "
        f"SET GLOBAL slave_net_timeout={max(1, int(max_blind_s // 3))} (and in its config file), "
        "or raise proof.max_blind_s",
        severity="warning",
    )


def live_problems(
    t: Topology,
    snap: Snapshot,
    records: Mapping[ShardName, ShardRecord],
    *,
    wall: float,
    max_blind_s: float | None = None,
) -> list[Problem]:
    out: list[Problem] = []
    for s in t.shards:
        rec = records.get(s.name) or home_record(t, s.name, wall=wall)
        for n in t.nodes_by_shard[s.name]:
            name = n.name
            field = f"node {name} ({s.name}, live)"
            o = snap.nodes.get(name)
            if name in rec.out:
                continue
            if o is None or not o.reachable:
                out.append(
                    Problem(
                        field=field,
                        message=f"unreachable: {o.error if o else 'not probed'}",
                        fix="start the server or fix the network; check the credentials",
                    )
                )
                continue
            if o.server_id in WAKER_SERVER_IDS:
                out.append(
                    Problem(
                        field=field,
                        message=f"server_id {o.server_id} lies in {WAKER_SERVER_IDS.start}-"
                        f"{WAKER_SERVER_IDS.stop - 1}, kept for the controller's silent semi-sync client "
                        "(docs/failover.md)",
                        fix="give the server another server_id (SET GLOBAL server_id=..., and in its config file)",
                    )
                )
            if not o.gtid_strict_mode:
                out.append(
                    Problem(
                        field=field,
                        message="gtid_strict_mode is OFF: GTID positions cannot be compared safely, so the "
                        "shard is UNKNOWN and never promoted automatically",
                        fix="SET GLOBAL gtid_strict_mode=ON, and gtid_strict_mode=ON in its config file",
                    )
                )
            ss = o.semisync_slave
            if name == rec.primary:
                m = o.semisync_master
                if m is None or not m.enabled:
                    out.append(
                        Problem(
                            field=field,
                            message="the primary has semi-sync master off",
                            fix="SET GLOBAL rpl_semi_sync_master_enabled=ON, and in its config file",
                        )
                    )
                else:
                    if m.wait_point.upper() != "AFTER_SYNC":
                        out.append(
                            Problem(
                                field=field,
                                message=f"semi-sync wait point is {m.wait_point}",
                                fix="SET GLOBAL rpl_semi_sync_master_wait_point=AFTER_SYNC, and in its config file",
                            )
                        )
                    if not m.never_times_out:
                        out.append(
                            Problem(
                                field=field,
                                message=f"rpl_semi_sync_master_timeout is {m.timeout_ms} ms: "
                                "semi-sync can fall back to async and RPO=0 across IDCs no longer holds",
                                fix=f"SET GLOBAL rpl_semi_sync_master_timeout={SEMISYNC_TIMEOUT_NEVER}, "
                                "and in its config file",
                            )
                        )
                    if not m.status or m.clients < 1:
                        out.append(
                            Problem(
                                field=field,
                                message="no semi-sync replica is connected: commits wait",
                                fix=f"check the acker {', '.join(rec.ackers)}",
                                severity="warning",
                            )
                        )
                if o.read_only:
                    out.append(
                        Problem(
                            field=field,
                            message="the primary is read-only: writes are closed",
                            fix="SET GLOBAL read_only=OFF once its semi-sync settings are verified",
                            severity="warning",
                        )
                    )
                if o.replica is not None:
                    out.append(
                        Problem(
                            field=field,
                            message=f"the primary replicates from {o.replica.source_host}:{o.replica.source_port}",
                            fix="STOP SLAVE; RESET SLAVE ALL on the primary",
                        )
                    )
                continue
            if not o.read_only:
                out.append(
                    Problem(
                        field=field,
                        message="a replica is writable (read_only=OFF)",
                        fix="SET GLOBAL read_only=ON, and read_only=ON in its config file",
                    )
                )
            up = rec.upstreams.get(name)
            if up is not None:
                host, port = t.address_of(up)
                r = o.replica
                if r is None:
                    out.append(
                        Problem(
                            field=field,
                            message=f"not replicating; the layout says from {up}",
                            fix=f"CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port}, "
                            "MASTER_USE_GTID=slave_pos; START SLAVE",
                        )
                    )
                elif r.source != up:
                    out.append(
                        Problem(
                            field=field,
                            message=f"replicates from {r.source_host}:{r.source_port}, "
                            f"the layout says {up} ({host}:{port})",
                            fix=f"STOP SLAVE; CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port}; START SLAVE",
                        )
                    )
                elif not (r.io_connected and r.sql_ok):
                    out.append(
                        Problem(
                            field=field,
                            message=f"replication threads IO={r.io_running} SQL={r.sql_running}: "
                            f"{r.last_io_error or r.last_sql_error}"[:200],
                            fix="fix the replication error and START SLAVE",
                            severity="warning",
                        )
                    )
            if name in rec.ackers or t.node_by_name[name].role in ("acker", "cascade"):
                beat = o.replica.heartbeat_period_s if o.replica is not None else 0.0
                slow = _slow_to_notice(field, o.slave_net_timeout_s, max_blind_s, beat)
                if slow is not None:
                    out.append(slow)
            if name in rec.ackers:
                if ss is None or not ss.enabled:
                    out.append(
                        Problem(
                            field=field,
                            message="the acker has semi-sync slave off",
                            fix="SET GLOBAL rpl_semi_sync_slave_enabled=ON (and in its config file), "
                            "then restart its IO thread",
                        )
                    )
                elif not ss.status:
                    out.append(
                        Problem(
                            field=field,
                            message="the acker is not acking (semi-sync slave status OFF)",
                            fix="STOP SLAVE IO_THREAD; START SLAVE IO_THREAD on it",
                            severity="warning",
                        )
                    )
            elif ss is not None and ss.enabled:
                out.append(
                    Problem(
                        field=field,
                        message="semi-sync slave is on but this node is not the acker: it could ack "
                        "commits the acker never received",
                        fix="SET GLOBAL rpl_semi_sync_slave_enabled=OFF and remove it from its config file",
                    )
                )
    return out
