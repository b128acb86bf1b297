"""Alerts: what the controller tells humans. Produced by the decision core and the executor,
delivered by an ``AlertSink`` (``idc_ha.notify``)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class AlertKind(StrEnum):
    PRIMARY_UNREACHABLE = "primary_unreachable"
    IDC_DOWN = "idc_down"
    MAIN_CITY_DOWN = "main_city_down"
    NOT_PROVEN_SAFE = "not_proven_safe"
    SYNC_DEGRADED = "sync_degraded"
    SYNC_RESTORED = "sync_restored"
    PAUSED = "paused"
    RULE_DISABLED = "rule_disabled"
    FAILOVER_STARTED = "failover_started"
    FAILOVER_DONE = "failover_done"
    FAILOVER_STUCK = "failover_stuck"
    COMMITS_STUCK = "commits_stuck"  # commits waiting for an ack with no acker, or past the limit
    ACK_RECEIVER_HUNG = "ack_receiver_hung"  # the MariaDB 10.11 deadlock: no acker can register
    FLAP_GUARD = "flap_guard"  # a second failover within the anti-flap window waits for proof
    MOVED_IDC = "moved_idc"  # a node failover had to promote the acker: the shard left its IDC
    DRIFT = "drift"
    FENCED = "fenced"
    FENCE_BLOCKED = "fence_blocked"
    FENCE_FAILED = "fence_failed"  # the fence command failed, or left the fence queued
    NEEDS_REBUILD = "needs_rebuild"
    HOOK_FAILED = "hook_failed"  # an event's hook command failed; nothing was undone
    UNADOPTED = "unadopted"


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: AlertKind
    severity: Severity
    reason: str
    hint: str = ""
    shard: str | None = None
    node: str | None = None
    idc: str | None = None
    epoch: int | None = None

    @property
    def key(self) -> tuple[str, str, str | None, str | None, str | None]:
        """Alerts with the same key are one ongoing condition (deduplicated by the sink); a rise
        in severity is a new condition."""
        return (self.kind, self.severity, self.shard, self.node, self.idc)
