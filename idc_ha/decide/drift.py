"""Reconcile: compare what nodes are with what the current layout says they must be.

Pure. Called by ``decide`` for adopted shards with no operation in flight. Returns alerts for every
drift and the few corrective steps that are always safe:

* fencing a writable node that is not the primary, while the recorded primary answers and is
  writable (two writers; the recorded one has the acker). With the primary unreachable or
  read-only, a writable node may be a promotion made by hand: it is alerted, never fenced;
* re-arming the recorded acker's semi-sync while its primary is up (its relay log can be fetched
  again);
* starting a replica of the layout that a restart left stopped (``skip-slave-start``): relay log
  first, then both threads on its recorded source;
* switching acking off on a replica that is not a recorded acker (``Disarm``), while the recorded
  acker is seen acking: so no commit is held, and none can be acknowledged by a node the RPO=0
  proof does not read.

A replica of the layout whose replication stopped on an error is alerted (critical), never
restarted: 1236 (its source lacks the binlogs it needs) calls for a rebuild.

Pause stops the last two (they change replication) but never fencing: a writable stray keeps
taking writes that no acker sees, paused or not. Opening a node, or changing who acks, is never
done on the strength of a drift check.
"""

from __future__ import annotations

from collections.abc import Callable

from idc_ha.decide.plan import AnyStep, ArmAcker, Disarm, Fence, StartReplica
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology

ER_SOURCE_FATAL_READING_BINLOG = 1236  # the source lacks what the replica asks for (purged, diverged)


def drift(rec: ShardRecord, snap: Snapshot, t: Topology, *, paused: bool = False) -> tuple[list[Alert], list[AnyStep]]:
    alerts: list[Alert] = []
    steps: list[AnyStep] = []
    if rec.op is not None:
        return alerts, steps

    def alert(node: str, reason: str, hint: str, sev: Severity = Severity.WARNING) -> None:
        alerts.append(
            Alert(
                kind=AlertKind.DRIFT,
                severity=sev,
                shard=rec.shard,
                node=node,
                epoch=rec.epoch,
                reason=reason,
                hint=hint,
            )
        )

    nodes = snap.nodes
    p = nodes.get(rec.primary)
    primary_up = p is not None and p.reachable
    primary_writes = primary_up and p is not None and not p.read_only
    for n in t.nodes_by_shard[rec.shard]:
        name = n.name
        o = nodes.get(name)
        if o is None or not o.reachable:
            continue
        if name == rec.primary:
            if o.read_only:
                alert(
                    name,
                    f"the primary {name} is read-only: writes are closed",
                    "if no failover is running, check who set read_only; the controller does not open nodes on drift",
                )
            continue
        if not o.read_only and name not in rec.fence_pending:
            if primary_writes:
                alert(
                    name,
                    f"{name} is writable but is not the primary (epoch {rec.epoch}): fencing it",
                    "find who opened it; writes there are not replicated",
                    Severity.CRITICAL,
                )
                steps.append(Fence(node=name, reason="only the primary may take writes"))
            else:
                alert(
                    name,
                    f"{name} is writable while the recorded primary {rec.primary} is "
                    f"{'read-only' if primary_up else 'unreachable'}: not fenced, it may have been promoted by hand",
                    f"if {name} was promoted by hand, the controller's record is out of date: act by hand; "
                    f"otherwise SET GLOBAL read_only=ON on {name}",
                    Severity.CRITICAL,
                )
        up = rec.upstreams.get(name)
        if up is None:
            continue
        r = o.replica
        s = o.semisync_slave
        acker = name in rec.ackers
        # An acker must have the setting on; any other must not ack now nor after a reconnect.
        slave_on = s is not None and (s.enabled if acker else (s.enabled or s.status))
        # A thread stopped on an error (not one reconnecting to a source that is away).
        stopped_on_error = r is not None and (
            (r.io_stopped and r.last_io_errno) or (r.sql_running == "No" and r.last_sql_errno)
        )
        if r is not None and r.source == up and stopped_on_error:
            err = (
                f"IO {r.last_io_errno} {r.last_io_error}"
                if r.last_io_errno
                else f"SQL {r.last_sql_errno} {r.last_sql_error}"
            )
            alert(
                name,
                f"{name} cannot replicate from {up}: {err[:200]}",
                f"{up} no longer holds the binlogs {name} needs: rebuild {name} from it"
                if r.last_io_errno == ER_SOURCE_FATAL_READING_BINLOG
                else f"fix the error on {name} (SHOW SLAVE STATUS), then START SLAVE",
                Severity.CRITICAL,
            )
        if r is not None and r.source == up and not r.never_started and slave_on == acker:
            continue  # the common case: wired as the layout says, the semi-sync role right
        _replica_drift(rec, name, up, o, t, nodes, paused=paused, primary_up=primary_up, alert=alert, steps=steps)
    return alerts, steps


def _acking(rec: ShardRecord, nodes: dict[NodeName, NodeObservation]) -> bool:
    """Whether a recorded acker is seen acking the primary: its slave semi-sync status on, its IO
    thread connected to the primary."""
    for a in rec.ackers:
        o = nodes.get(a)
        if (
            o is not None
            and o.reachable
            and o.replica is not None
            and o.replica.io_connected
            and o.source == rec.primary
            and o.semisync_slave is not None
            and o.semisync_slave.status
        ):
            return True
    return False


def _replica_drift(
    rec: ShardRecord,
    name: NodeName,
    up: NodeName,
    o: NodeObservation,
    t: Topology,
    nodes: dict[NodeName, NodeObservation],
    *,
    paused: bool,
    primary_up: bool,
    alert: Callable[..., None],
    steps: list[AnyStep],
) -> None:
    """Drift of a replica of the layout: wired elsewhere, restarted and not started, or the wrong
    semi-sync role."""
    host, port = t.address_of(up)
    wired = o.replica is not None and o.source == up
    if not wired:
        src = f"{o.replica.source_host}:{o.replica.source_port}" if o.replica else "nothing"
        alert(
            name,
            f"{name} replicates from {src}, the layout says {up} ({host}:{port})",
            f"CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port} on {name}",
        )
    elif o.replica is not None and o.replica.never_started:
        if paused:
            alert(
                name,
                f"{name} restarted and its replication is not started (skip-slave-start); the controller is paused",
                f"resume the controller, or on {name} apply its relay log before START SLAVE "
                "(docs/operations.md: starting a replica after a restart)",
            )
        else:
            alert(
                name,
                f"{name} restarted with replication stopped (skip-slave-start): starting it, relay log first",
                "",
                Severity.INFO,
            )
            steps.append(StartReplica(node=name, source=up, reason="a restarted replica of the layout replicates"))
        return
    s = o.semisync_slave
    if name in rec.ackers:
        if s is None or not s.enabled:
            alert(
                name,
                f"the acker {name} has semi-sync slave off: commits on {rec.primary} wait for nobody",
                "set rpl_semi_sync_slave_enabled=ON in its config file too",
            )
            if primary_up and up == rec.primary and not paused:
                steps.append(ArmAcker(node=name, source=up, reason="the recorded acker must ack"))
    elif s is not None and (s.enabled or s.status):
        alert(
            name,
            f"{name} has semi-sync slave on but is not an acker: it could ack commits the acker never got",
            "SET GLOBAL rpl_semi_sync_slave_enabled=OFF and remove it from its config file",
        )
        if primary_up and not paused and _acking(rec, nodes):
            steps.append(Disarm(node=name, reason=f"only the recorded ackers ({', '.join(rec.ackers)}) may ack"))
