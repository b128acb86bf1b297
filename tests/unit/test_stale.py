"""A record written while the probe round ran (an operation's step) is newer than what the round
saw of it: that shard is left as it is for the tick. Found on the lab: a round slowed by a frozen
IDC1 saw a new primary before its semi-sync master was switched on, and every shard just failed
over was recorded ASYNC with a critical alert (3 of 6 slow-path failover trials)."""

from __future__ import annotations

import time
from pathlib import Path

from idc_ha.clock import boottime
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import FileStore
from idc_ha.decide.memory import Memory
from idc_ha.decide.plan import ArmAcker, Decision
from idc_ha.decide.tick import decide
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import SemiSyncSlave, Snapshot
from idc_ha.model.policy import Policy
from idc_ha.model.state import Control, ShardRecord
from idc_ha.notify.alerts import MemoryAlertSink
from sim.fleet import Fleet, daemon_on

from .builders import TOPO, WALL, changed, home_nodes, record, records, snapshot, steady, watched, with_master
from .test_daemon import config

S1 = ShardName("shard1")
# shard1 as a probe saw it before a step switched things on: semi-sync master off on the primary,
# the acker's slave side off (what a new primary and its acker look like mid-failover)
EARLY = changed(
    with_master(home_nodes(), NodeName("shard1-m"), enabled=False, status=False),
    NodeName("shard1-sx"),
    semisync_slave=SemiSyncSlave(enabled=False, status=False),
)


def first() -> Decision:
    recs = records(TOPO)
    hist = watched(steady(home_nodes()))
    return decide(hist, TOPO, Policy(), recs, Control(), wall=WALL, memory=Memory(adopted=frozenset(recs)))


def then(prev: Decision, nodes: dict, *, stale: frozenset[ShardName] = frozenset()) -> Decision:
    snap: Snapshot = snapshot(nodes, at=prev.memory.at + 0.2)
    return decide((snap,), TOPO, Policy(), records(TOPO), Control(), wall=WALL + 10, memory=prev.memory, stale=stale)


def test_without_the_stale_mark_the_early_observation_degrades_the_shard() -> None:
    d = then(first(), EARLY)
    assert d.records[S1].sync == SyncState.ASYNC
    assert (AlertKind.SYNC_DEGRADED, S1) in {(a.kind, a.shard) for a in d.alerts}
    assert any(isinstance(s, ArmAcker) for s in d.reconcile.get(S1, ()))


def test_a_stale_shard_is_left_as_it_is_for_the_tick() -> None:
    prev = first()
    d = then(prev, EARLY, stale=frozenset({S1}))
    assert S1 not in d.records  # no sync-state change
    assert not [a for a in d.alerts if a.shard == S1]  # no alert
    assert S1 not in d.reconcile and not [p for p in d.plans if p.shard == S1]  # no step
    assert "record changed while the probes ran" in d.reasons[S1]
    assert d.memory.contacts[S1] is prev.memory.contacts[S1]  # nothing folded from what it saw
    assert d.memory.acks[S1] is prev.memory.acks[S1]
    assert S1 in d.memory.adopted
    # the other shards are decided as usual on the same snapshot
    assert "shard2" in d.memory.contacts and d.memory.contacts["shard2"].seen_at == d.memory.at


def test_the_next_tick_judges_the_shard_again() -> None:
    d = then(then(first(), EARLY, stale=frozenset({S1})), EARLY)
    assert d.records[S1].sync == SyncState.ASYNC  # a fresh round that still shows it: judged


def test_the_book_names_what_was_written_after_a_point(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "state")
    try:
        book = RecordBook(store)
        book.put(record(TOPO, "meta"))
        v = book.version
        assert book.written_since(v) == frozenset()
        book.put(record(TOPO, "shard1"), record(TOPO, "shard2"))
        assert book.written_since(v) == {"shard1", "shard2"}
        assert book.written_since(book.version) == frozenset()
    finally:
        store.release()


def test_a_fencer_write_does_not_make_a_shard_stale(tmp_path: Path) -> None:
    """The Fencer's write on a shard with no operation changes only fence_pending (and the reason
    and time): nothing an observation is judged against. Marking it skipped a round of the
    shard's watch, and a shard waiting for its failover could then be refused as unwatched for
    good (review 6, F1: an acker's lost-link run restarted after two rounds unseen)."""
    store = FileStore(tmp_path / "state")
    try:
        book = RecordBook(store)
        rec = record(TOPO, "shard1").model_copy(update={"fence_pending": (NodeName("shard1-ms"),)})
        book.put(rec)
        v = book.version
        book.put(rec.model_copy(update={"fence_pending": (), "reason": "fenced", "updated_wall": WALL + 5}))
        assert book.written_since(v) == frozenset()
        book.put(rec.model_copy(update={"sync": SyncState.ASYNC}))
        assert book.written_since(v) == {"shard1"}
    finally:
        store.release()


async def test_the_daemon_marks_a_record_written_during_its_round(tmp_path: Path) -> None:
    """The real daemon over the fleet: a step's record lands while the round runs; that shard is
    not decided on that round, the others are."""
    fleet = Fleet(TOPO, clock=boottime, wall=time.time).arrange_home()
    d = daemon_on(fleet, config(tmp_path / "state"), Policy(), MemoryAlertSink())
    try:
        await d.tick()
        real_round = fleet.round

        async def round_with_a_step() -> Snapshot:
            snap = await real_round()
            rec: ShardRecord = d.book.get(S1) or record(TOPO, S1)
            other = SyncState.ASYNC if rec.sync != SyncState.ASYNC else SyncState.UNKNOWN
            await d.book.commit(rec.model_copy(update={"sync": other, "reason": "a step mid-round"}))
            return snap

        fleet.round = round_with_a_step  # type: ignore[method-assign]
        decision = await d.tick()
        assert "record changed while the probes ran" in decision.reasons[S1]
        assert "record changed" not in decision.reasons["shard2"]
        fleet.round = real_round  # type: ignore[method-assign]
        decision = await d.tick()
        assert "record changed" not in decision.reasons[S1]
    finally:
        d.store.release()
