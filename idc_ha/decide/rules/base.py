"""What a rule sees and what it returns.

A rule is a pure function ``(ShardView) -> Outcome | None``: None means "not mine, ask the next
rule". ``decide`` runs the rules of ``RULES`` (``rules/__init__.py``) in order for every adopted
shard, and the first Outcome wins. An Outcome carries the one-line reason logged for the shard,
the alerts, and at most one plan with the record (holding its operation) to write before it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from idc_ha.decide.contact import Contact
from idc_ha.decide.plan import ShardPlan
from idc_ha.decide.verdicts import Verdicts
from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.ids import CityName, NodeName, ShardName
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import Control, ShardRecord
from idc_ha.model.topology import Topology


@dataclass(frozen=True)
class ShardView:
    rec: ShardRecord
    snap: Snapshot
    t: Topology
    policy: Policy
    control: Control
    verdicts: Verdicts
    contact: Contact | None
    wall: float
    main_city: CityName
    city_failed: bool
    plans: Mapping[str, ShardPlan] = field(default_factory=dict)  # last tick's plans, by op id
    moved_at: float | None = None  # when this process saw the shard's current epoch begin (anti-flap)


@dataclass(frozen=True)
class Outcome:
    reason: str
    alerts: tuple[Alert, ...] = ()
    plan: ShardPlan | None = None
    record: ShardRecord | None = None  # written durably before the plan runs


Rule = Callable[[ShardView], Outcome | None]


def shard_alert(
    kind: AlertKind, rec: ShardRecord, reason: str, hint: str, *, severity: Severity = Severity.CRITICAL
) -> Alert:
    return Alert(
        kind=kind, severity=severity, shard=rec.shard, node=rec.primary, reason=reason, hint=hint, epoch=rec.epoch
    )


def writable_strays(
    shard: ShardName, target: NodeName, snap: Snapshot, t: Topology, *, besides: NodeName | None = None
) -> tuple[NodeName, ...]:
    """Nodes of the shard seen writable, other than the target (and ``besides``): fenced before writes open."""
    return tuple(
        n.name
        for n in t.nodes_by_shard[shard]
        if n.name not in (target, besides) and (o := snap.nodes.get(n.name)) is not None and o.writable
    )
