"""Reconcile: compare what nodes are with what the current layout says they must be.

Pure. Returns alerts for every drift and the few corrective steps that are always safe: fencing a
node that must not take writes (the daemon hands it to the Fencer, which owns every fence),
and re-arming the recorded acker's semi-sync while its
primary is up (its relay log can be fetched again). Everything else is only alerted: opening a
node, or changing who acks, is never done on the strength of a drift check.
"""

from __future__ import annotations

from idc_ha.decide.plan import AnyStep, ArmAcker, Fence
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.observation import Snapshot
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology


def drift(rec: ShardRecord, snap: Snapshot, t: Topology) -> tuple[list[Alert], list[AnyStep]]:
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

    p = snap.nodes.get(rec.primary)
    primary_up = p is not None and p.reachable
    for n in t.nodes_by_shard[rec.shard]:
        o = snap.nodes.get(n.name)
        if o is None or not o.reachable:
            continue
        name = n.name
        if name == rec.primary:
            if o.read_only:
                alert(
                    name,
                    f"the primary {name} is read-only: writes are closed",
                    "if no failover is running, check who set read_only; the controller does not open nodes on drift",
                )
            continue
        if o.writable and name not in rec.fence_pending:
            alert(
                name,
                f"{name} is writable but is not the primary (epoch {rec.epoch}): fencing it",
                "find who opened it; writes there are not replicated",
                Severity.CRITICAL,
            )
            steps.append(Fence(node=name, reason="only the primary may take writes"))
        if name not in rec.upstreams:
            continue
        up = rec.upstreams[name]
        host, port = t.address_of(up)
        if o.replica is None or (o.replica.source_host, o.replica.source_port) != (host, port):
            src = f"{o.replica.source_host}:{o.replica.source_port}" if o.replica else "nothing"
            alert(
                name,
                f"{name} replicates from {src}, the layout says {up} ({host}:{port})",
                f"CHANGE MASTER TO MASTER_HOST='{host}', MASTER_PORT={port} on {name}",
            )
        s = o.semisync_slave
        if name in rec.ackers:
            if s is None or not s.enabled:
                alert(
                    name,
                    f"the acker {name} has semi-sync slave off: commits on {rec.primary} wait for nobody",
                    "set rpl_semi_sync_slave_enabled=ON in its config file too",
                )
                if primary_up and up == rec.primary:
                    steps.append(ArmAcker(node=name, source=up, reason="the recorded acker must ack"))
        elif s is not None and s.enabled:
            alert(
                name,
                f"{name} has semi-sync slave on but is not an acker: it could ack commits the acker never got",
                "SET GLOBAL rpl_semi_sync_slave_enabled=OFF and remove it from its config file",
            )
    return alerts, steps
