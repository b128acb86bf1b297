"""What the controller remembers between ticks, in memory only: handed to ``decide`` and returned
by it. Never durable, on purpose: a restarted controller has watched nothing and adopted nothing,
and must see for itself before it acts (see ``contact`` and ``adopt``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from idc_ha.decide.acks import AckWatch
from idc_ha.decide.contact import Contact
from idc_ha.decide.tracks import Tracks
from idc_ha.model.ids import IdcName, NodeName, ShardName


@dataclass(frozen=True)
class Memory:
    contacts: dict[ShardName, Contact] = field(default_factory=dict)  # per shard: what this controller watched
    adopted: frozenset[ShardName] = frozenset()  # shards whose record reality was seen to match
    at: float | None = None  # taken_at of the newest snapshot already decided on
    dead_idcs: frozenset[IdcName] = frozenset()  # confirmed down, and none of their nodes answered since
    tracks: Tracks = field(default_factory=Tracks)  # failure streaks and lost links (verdicts)
    acks: dict[ShardName, AckWatch] = field(default_factory=dict)  # who could ack since each primary's last answer
    # primary -> (its baseline's boot_wall, booted_at): the boot matched in this process (syncstate.same_boot)
    boots: dict[NodeName, tuple[float, float]] = field(default_factory=dict)
    # shard -> (epoch, taken_at of the snapshot at which this process saw the primary move to the
    # epoch's primary; None for the primary it found at start, primary): the anti-flap window
    # (rules/anti_flap.py). A new epoch with the same primary (the acker moved: decide/rearm.py)
    # keeps the window where it was.
    epochs: dict[ShardName, tuple[int, float | None, str]] = field(default_factory=dict)
    # op id -> last tick's ShardPlan, reused while unchanged. Typed loosely: plan.Decision holds a
    # Memory, so naming ShardPlan here would be an import circle.
    plans: dict[str, Any] = field(default_factory=dict)
