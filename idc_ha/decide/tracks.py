"""Runs the verdicts need, kept up to date one snapshot at a time: linear in nodes per tick.

* ``Streak``: a node's current run of failed probes (since when, how many rounds, whether the
  newest failure was a refusal, its error). A round in which it answers, or is not probed, ends it.
* ``waiting``: since when a node has had commits waiting for a semi-sync ack with no ack
  arriving (``Rpl_semi_sync_master_wait_sessions`` > 0 and ``Rpl_semi_sync_master_yes_tx``
  unchanged in every round since: under load some commit is always waiting, but acks flow); a
  round without waiters, with a new ack, or without an answer, ends it.
* ``LostRun``: a replica's current run of lost links to its source (``ReplicaStatus.link_lost``),
  observed in every round with nothing new received: seeing it connected, unreachable,
  replicating from elsewhere or holding more than before (it was connected in between) ends it.
  A *silent* link counts too: the IO thread still says "Yes" but nothing has arrived (binlog
  bytes read, GTIDs, heartbeats) for ``SILENT_PERIODS`` heartbeat periods: the source sends a
  heartbeat every period when it has nothing else to send, so it is not sending. Such a run
  starts at the last round in which something had arrived, and an IO thread that then gives up
  (``slave_net_timeout``) continues it.
* ``Quiet``: what a connected replica last received and since when nothing more has arrived.
* ``finalizing``: since when the same binlog dump thread has been seen waiting to finalize its
  termination on a semi-sync master (``decide/wake.py``).

``fold(tracks, snap)`` is the only way they change; ``Tracks.of(history)`` folds a whole history
(unit tests, a controller handed several rounds at once). Nothing older than the runs is kept, so
memory is linear in nodes too, whatever the confirmation windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, ProbeFailure, Snapshot


@dataclass(frozen=True, slots=True)
class Streak:
    since: float
    rounds: int
    refused: bool
    error: str


@dataclass(frozen=True, slots=True)
class LostRun:
    source: NodeName
    since: float
    rounds: int
    received: GtidPos


SILENT_PERIODS = 3  # heartbeat periods with nothing received: the source is silent


@dataclass(frozen=True, slots=True)
class Quiet:
    source: NodeName
    since: float  # the last round in which something new had arrived, or the IO thread was busy
    rounds: int  # rounds since, with nothing new
    mark: tuple[GtidPos, str, int]  # (received, Master_Log_File:Read_Master_Log_Pos, heartbeats)
    period: float  # Slave_heartbeat_period
    awaiting: bool = True  # the IO thread sat waiting for the source in every round since

    def silent(self, now: float) -> bool:
        return self.period > 0 and self.awaiting and now - self.since >= SILENT_PERIODS * self.period


def quieter(q: Quiet | None, o: NodeObservation, now: float) -> Quiet:
    """The quiet run of a replica whose IO thread is connected (``o.replica`` set), after ``o``."""
    r = o.replica
    assert r is not None and r.source is not None
    mark = (o.received(), r.read_at, r.heartbeats)
    # A busy IO thread (writing the relay log, held by relay_log_space_limit, mid-way through a
    # big event) restarts the quiet run: nothing arriving then says nothing about the source.
    if q is not None and q.source == r.source and q.mark == mark and r.awaiting_source:
        return Quiet(r.source, q.since, q.rounds + 1, mark, r.heartbeat_period_s, q.awaiting)
    return Quiet(r.source, now, 1, mark, r.heartbeat_period_s, r.awaiting_source)


@dataclass(frozen=True)
class Tracks:
    at: float | None = None  # taken_at of the newest snapshot folded in
    streaks: dict[NodeName, Streak] = field(default_factory=dict)  # failing nodes only
    lost: dict[NodeName, LostRun] = field(default_factory=dict)  # replicas with a lost link only
    waiting: dict[NodeName, tuple[float, int]] = field(default_factory=dict)  # node -> (since, yes_tx then)
    quiet: dict[NodeName, Quiet] = field(default_factory=dict)  # connected replicas: since nothing arrived
    # node -> (processlist id, since): the same dump thread seen waiting to finalize in every
    # round since (decide/wake.py); another id, none, or no answer restarts or ends it.
    finalizing: dict[NodeName, tuple[int, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, history: tuple[Snapshot, ...]) -> Tracks:
        t = cls()
        for snap in history:
            t = fold(t, snap)
        return t


def fold(tracks: Tracks, snap: Snapshot) -> Tracks:
    """The runs after one more snapshot (older or equal snapshots are ignored)."""
    if tracks.at is not None and snap.taken_at <= tracks.at:
        return tracks
    streaks: dict[NodeName, Streak] = {}
    lost: dict[NodeName, LostRun] = {}
    waiting: dict[NodeName, tuple[float, int]] = {}
    quiet: dict[NodeName, Quiet] = {}
    finalizing: dict[NodeName, tuple[int, float]] = {}
    old_streaks, old_lost, old_quiet = tracks.streaks, tracks.lost, tracks.quiet
    now = snap.taken_at
    for name, o in snap.nodes.items():
        if not o.reachable:
            prev = old_streaks.get(name)
            streaks[name] = Streak(
                since=prev.since if prev is not None else now,
                rounds=prev.rounds + 1 if prev is not None else 1,
                refused=o.failure == ProbeFailure.REFUSED,
                error=o.error or "no answer",
            )
            continue
        if o.finalizing_dump:
            f = tracks.finalizing.get(name)
            finalizing[name] = f if f is not None and f[0] == o.finalizing_dump else (o.finalizing_dump, now)
        m = o.semisync_master
        if m is not None and m.wait_sessions > 0:
            w = tracks.waiting.get(name)
            waiting[name] = w if w is not None and w[1] == m.yes_tx else (now, m.yes_tx)
        r = o.replica
        if r is None or r.source is None:
            continue
        got = o.received()
        q = old_quiet.get(name)
        if r.io_connected:
            q = quiet[name] = quieter(q, o, now)
            if q.silent(now):
                lost[name] = LostRun(r.source, q.since, q.rounds, got)
            continue
        if not r.link_lost:
            continue
        run = old_lost.get(name)
        if run is not None and run.source == r.source and run.received == got:
            lost[name] = LostRun(r.source, run.since, run.rounds + 1, got)
        elif q is not None and q.period > 0 and q.source == r.source and q.mark[0] == got:
            # The IO thread gave up on a link that had gone quiet (with heartbeats on, quiet means
            # nothing was sent): the run began with the quiet.
            lost[name] = LostRun(r.source, q.since, q.rounds + 1, got)
        else:
            lost[name] = LostRun(r.source, now, 1, got)
    return Tracks(at=now, streaks=streaks, lost=lost, waiting=waiting, quiet=quiet, finalizing=finalizing)
