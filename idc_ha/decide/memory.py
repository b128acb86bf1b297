"""What the controller remembers between ticks, in memory only: handed to ``decide`` and returned
by it. Never durable, on purpose: a restarted controller has watched nothing and adopted nothing,
and must see for itself before it acts (see ``contact`` and ``adopt``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from idc_ha.decide.contact import Contact
from idc_ha.model.ids import IdcName, ShardName


class Memory(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    contacts: dict[ShardName, Contact] = {}  # per shard: what this controller watched of its primary
    adopted: frozenset[ShardName] = frozenset()  # shards whose record reality was seen to match
    at: float | None = None  # taken_at of the newest snapshot already decided on
    dead_idcs: frozenset[IdcName] = frozenset()  # confirmed down, and none of their nodes answered since
