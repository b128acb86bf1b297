"""Who could have acknowledged the commits counted since the primary's previous answer.

``Rpl_semi_sync_master_yes_tx`` counts commits some semi-sync replica acknowledged. Between two
answers of the primary, the recorded acker could have acked them only if it was seen acking in
some round, or was never seen, or received something in between. ``AckWatch`` keeps, per shard,
the primary at its last answer and a summary of what was seen of each acker in every round since
(that round included): folded one snapshot at a time, constant in size however long the primary
stays away.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import ShardRecord


def acking(o: NodeObservation | None, primary: NodeName) -> bool:
    """Seen connected to ``primary`` as a semi-sync replica that acks."""
    return (
        o is not None
        and o.reachable
        and o.source == primary
        and o.replica is not None
        and o.replica.io_connected
        and o.semisync_slave is not None
        and o.semisync_slave.status
    )


@dataclass(frozen=True, slots=True)
class AckerSeen:
    """What the rounds since the primary's last answer showed of one acker."""

    seen: bool = False
    acked: bool = False
    received: tuple[GtidPos, ...] = ()  # the distinct positions it held, at most two kept

    def add(self, o: NodeObservation | None, primary: NodeName) -> AckerSeen:
        if o is None or not o.reachable:
            return self
        got = o.received()
        received = self.received if got in self.received or len(self.received) >= 2 else (*self.received, got)
        return AckerSeen(seen=True, acked=self.acked or acking(o, primary), received=received)

    def could_have_acked(self) -> bool:
        """Never seen (no evidence), seen acking, or holding more in one round than another."""
        return not self.seen or self.acked or len(self.received) > 1


@dataclass(frozen=True, slots=True)
class AckWatch:
    primary: NodeName
    ackers: tuple[NodeName, ...]
    last: NodeObservation | None = None  # the primary at its last answer
    seen: dict[NodeName, AckerSeen] = field(default_factory=dict)  # since then, that round included

    def fold(self, snap: Snapshot) -> AckWatch:
        p = snap.nodes.get(self.primary)
        if p is not None and p.reachable:
            seen = {a: AckerSeen().add(snap.nodes.get(a), self.primary) for a in self.ackers}
            return AckWatch(self.primary, self.ackers, p, seen)
        if self.last is None:
            return self
        seen = {a: s.add(snap.nodes.get(a), self.primary) for a, s in self.seen.items()}
        return AckWatch(self.primary, self.ackers, self.last, seen)


def watch_for(w: AckWatch | None, rec: ShardRecord) -> AckWatch:
    """The shard's watch, started afresh when its primary or ackers changed."""
    if w is None or w.primary != rec.primary or w.ackers != rec.ackers:
        return AckWatch(rec.primary, rec.ackers)
    return w
