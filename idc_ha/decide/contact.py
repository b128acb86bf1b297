"""What the controller last saw of each shard's primary and acker while the primary answered.

The RPO=0 proof must rest on evidence this controller saw itself, recently, not only on a record
that may be old: ``Contact`` keeps, per shard, the primary's binlog positions over the last few
seconds before it was last seen, and the acker's received position and boot time at that moment.
It lives in memory only: a controller that (re)starts has no contact until it has watched the
primary answer, so it never auto-promotes on the strength of what happened while it was away.

``decide`` folds every snapshot newer than the contact into it and returns the new contacts in
the Decision; the daemon hands them back on the next tick. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict

from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, ShardName
from idc_ha.model.observation import Snapshot
from idc_ha.model.state import ShardRecord

KEEP_S = 5.0  # binlog positions kept before the last contact; longer than any lookback we use


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    primary: NodeName
    seen_at: float  # monotonic time of the newest snapshot in which the primary answered
    recent: tuple[tuple[float, GtidPos], ...]  # (taken_at, primary's gtid_binlog_pos), oldest first
    acker: NodeName | None
    acker_received: GtidPos = GtidPos()
    acker_boot_wall: float | None = None

    def settled(self, lookback_s: float) -> GtidPos | None:
        """The primary's binlog position at least ``lookback_s`` before it was last seen: anything
        written by then had time to reach a connected acker. None when not watched that long."""
        best = None
        for t, pos in self.recent:
            if t <= self.seen_at - lookback_s:
                best = pos
        return best


def _fold(c: Contact | None, rec: ShardRecord, snap: Snapshot) -> Contact | None:
    p = snap.nodes.get(rec.primary)
    if p is None or not p.reachable:
        return c
    if c is not None and c.primary == rec.primary and snap.taken_at <= c.seen_at:
        return c
    keep = () if c is None or c.primary != rec.primary else c.recent
    recent = (*(x for x in keep if x[0] >= snap.taken_at - KEEP_S), (snap.taken_at, p.gtid_binlog_pos))
    acker = rec.ackers[0] if len(rec.ackers) == 1 else None
    a = snap.nodes.get(acker) if acker else None
    return Contact(
        primary=rec.primary,
        seen_at=snap.taken_at,
        recent=recent,
        acker=acker,
        acker_received=a.received() if a is not None and a.reachable else GtidPos(),
        acker_boot_wall=(snap.wall - a.uptime_s) if a is not None and a.reachable else None,
    )


def update_contacts(
    prior: Mapping[ShardName, Contact], history: tuple[Snapshot, ...], records: Mapping[ShardName, ShardRecord]
) -> dict[ShardName, Contact]:
    """Fold every snapshot newer than each shard's contact into it."""
    out: dict[ShardName, Contact] = {}
    for shard, rec in records.items():
        c = prior.get(shard)
        if c is not None and c.primary != rec.primary:
            c = None  # a new primary: start watching it afresh
        for snap in history:
            if c is None or snap.taken_at > c.seen_at:
                c = _fold(c, rec, snap)
        if c is not None:
            out[shard] = c
    return out
