"""What this controller itself watched of each shard's primary and acker, up to the primary's loss.

The RPO=0 proof must rest on evidence this controller saw, recently and without a break, not only
on a durable record that may be old. ``Contact`` keeps, per shard:

* ``watched_since`` .. ``seen_at``: the run of answers from the primary with no two further apart
  than ``max_blind_s``; every answer was checked by the sync-state machine (semi-sync settings,
  ``no_tx`` and ``no_times`` against the durable baseline), so the shard's record is what that
  watch proved;
* ``lost_at``: the first round after ``seen_at`` in which the primary did not answer;
* ``acker_cut_since``: the start of the acker's current run of lost links to the primary (IO
  thread reconnecting or stopped on an error, or connected but silent: nothing received, not even
  a heartbeat, for ``tracks.SILENT_PERIODS`` heartbeat periods; such a run starts at the last
  arrival, and the IO thread giving up later continues it). A round in which the acker is connected,
  replicates from elsewhere, or holds more than before (it was connected in between) ends the run;
  so does an unseen spell longer than ``ACKER_GAP_S`` (it may have reconnected to a live primary,
  received nothing on an idle shard, and been cut again), or one after which it restarted or
  holds something else;
* the acker's received position and boot time at its latest observation up to ``seen_at``.

The loss is corroborated at ``max(lost_at, acker_cut_since)``: the controller's own failures say
nothing by themselves (a timeout may be a cut link; a refusal may be a REJECT rule while the
server serves everyone else), the acker must have lost its link too. The proof's blind spell runs
from ``seen_at`` to that corroboration: how long the primary may have run, seen by nobody. In that
spell semi-sync could have been weakened unseen (a timeout set, switched off, a restart with
another config).

It lives in memory only: a controller that (re)starts has no contact until it has watched the
primary answer, so it never auto-promotes on the strength of what happened while it was away.
``decide`` folds every snapshot newer than ``at`` into it and returns the new contacts in the
Decision; the daemon hands them back on the next tick. Pure: no clock, no I/O. The cost is linear
in shards x new snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from idc_ha.decide.tracks import Quiet, quieter
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, ShardName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import ShardRecord

EMPTY = GtidPos()  # immutable, so one shared default is safe
ACKER_GAP_S = 1.0  # an acker unseen this long or less, and unchanged after, keeps its lost-link run


@dataclass(frozen=True, slots=True)
class Contact:
    primary: NodeName
    at: float  # taken_at of the newest snapshot folded in
    watched_since: float  # the first answer of the current unbroken watch
    seen_at: float  # monotonic time of the newest snapshot in which the primary answered
    lost_at: float | None = None  # the first snapshot after seen_at: the primary did not answer
    acker: NodeName | None = None
    acker_seen_at: float | None = None  # the acker's latest observation up to seen_at
    acker_received: GtidPos = EMPTY  # ... what it held then
    acker_booted_at: float = 0.0  # ... and its boot time then
    acker_cut_since: float | None = None
    acker_cut_received: GtidPos = EMPTY
    acker_cut_seen: float | None = None  # the run's latest round in which the acker was seen
    acker_cut_booted_at: float = 0.0  # ... and its boot time then
    acker_quiet: Quiet | None = None  # while its IO thread says connected: since nothing arrived

    def corroborated_at(self) -> float | None:
        """When the loss was corroborated (see the module docstring); None while it is not."""
        if self.lost_at is None or self.acker_cut_since is None:
            return None
        return max(self.lost_at, self.acker_cut_since)

    def blind_s(self) -> float | None:
        """Seconds from the last answer to the loss being corroborated; None while it is not."""
        at = self.corroborated_at()
        return None if at is None else at - self.seen_at


def _cut_run(mine: Contact | None, acker: NodeName | None, primary: NodeName, snap: Snapshot) -> dict[str, object]:
    """The acker's lost-link run after this round (see the module docstring)."""
    prev = mine if mine is not None and mine.acker == acker else None
    a = snap.nodes.get(acker) if acker else None
    none: dict[str, object] = {
        "acker_cut_since": None,
        "acker_cut_received": GtidPos(),
        "acker_cut_seen": None,
        "acker_cut_booted_at": 0.0,
        "acker_quiet": None,
    }
    if a is None or not a.reachable:
        if prev is None or prev.acker_cut_since is None or prev.acker_cut_seen is None:
            return none
        if snap.taken_at - prev.acker_cut_seen > ACKER_GAP_S:
            return none  # unseen too long: it may have been connected meanwhile
        return {}  # a short gap: judged when it is seen again
    if a.source != primary or a.replica is None:
        return none
    was_quiet = prev.acker_quiet if prev is not None else None
    quiet = quieter(was_quiet, a, snap.taken_at) if a.replica.io_connected else None
    if not (a.replica.link_lost or (quiet is not None and quiet.silent(snap.taken_at))):
        return {**none, "acker_quiet": quiet}
    got = a.received()
    run = prev is not None and prev.acker_cut_since is not None and prev.acker_cut_seen is not None
    if run and prev is not None and prev.acker_cut_seen is not None:
        gap = snap.taken_at - prev.acker_cut_seen
        restarted = a.booted_at != prev.acker_cut_booted_at
        run = got == prev.acker_cut_received and gap <= ACKER_GAP_S + 1e-9 and not restarted
    since = snap.taken_at
    if run and prev is not None and prev.acker_cut_since is not None:
        since = prev.acker_cut_since
    elif quiet is not None:
        since = quiet.since  # silent: the run began at the last arrival
    elif was_quiet is not None and was_quiet.period > 0 and was_quiet.mark[0] == got and not _restarted(prev, a):
        since = was_quiet.since  # the IO thread gave up on a link already quiet
    return {
        "acker_cut_since": since,
        "acker_cut_received": got,
        "acker_cut_seen": snap.taken_at,
        "acker_cut_booted_at": a.booted_at,
        "acker_quiet": quiet,
    }


def _restarted(prev: Contact | None, a: NodeObservation) -> bool:
    return prev is not None and prev.acker_seen_at is not None and a.booted_at != prev.acker_booted_at


def _fold(c: Contact | None, rec: ShardRecord, snap: Snapshot, max_blind_s: float) -> Contact | None:
    mine = c if c is not None and c.primary == rec.primary else None
    acker = rec.ackers[0] if len(rec.ackers) == 1 else None
    a = snap.nodes.get(acker) if acker else None
    same_acker = mine is not None and mine.acker == acker
    cut = _cut_run(mine, acker, rec.primary, snap)
    p = snap.nodes.get(rec.primary)
    if p is not None and p.reachable:
        unbroken = mine is not None and snap.taken_at - mine.seen_at <= max_blind_s
        keep = mine if mine is not None and same_acker else None
        up = a is not None and a.reachable
        carried = {k: getattr(keep, k) for k in _CUT} if keep is not None else {}
        return Contact(
            primary=rec.primary,
            at=snap.taken_at,
            watched_since=mine.watched_since if unbroken and mine is not None else snap.taken_at,
            seen_at=snap.taken_at,
            acker=acker,
            acker_seen_at=snap.taken_at if up else (keep.acker_seen_at if keep else None),
            acker_received=a.received() if up and a is not None else (keep.acker_received if keep else GtidPos()),
            acker_booted_at=a.booted_at if up and a is not None else (keep.acker_booted_at if keep else 0.0),
            **{**carried, **cut},
        )
    if mine is None:
        return None  # never seen answering: nothing to remember
    return Contact(
        primary=mine.primary,
        at=snap.taken_at,
        watched_since=mine.watched_since,
        seen_at=mine.seen_at,
        lost_at=snap.taken_at if mine.lost_at is None else mine.lost_at,
        acker=acker,
        acker_seen_at=mine.acker_seen_at,
        acker_received=mine.acker_received,
        acker_booted_at=mine.acker_booted_at,
        **{**{k: getattr(mine, k) for k in _CUT}, **cut},
    )


_CUT = ("acker_cut_since", "acker_cut_received", "acker_cut_seen", "acker_cut_booted_at", "acker_quiet")


def update_contacts(
    prior: Mapping[ShardName, Contact],
    history: tuple[Snapshot, ...],
    records: Mapping[ShardName, ShardRecord],
    *,
    max_blind_s: float,
) -> dict[ShardName, Contact]:
    """Fold every snapshot newer than each shard's contact into it."""
    out: dict[ShardName, Contact] = {}
    for shard, rec in records.items():
        c = prior.get(shard)
        if c is not None and c.primary != rec.primary:
            c = None  # a new primary: start watching it afresh
        for snap in history:
            if c is None or snap.taken_at > c.at:
                c = _fold(c, rec, snap, max_blind_s)
        if c is not None:
            out[shard] = c
    return out
