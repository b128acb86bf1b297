"""The prober's observations: one object for an unchanged node, a boot time held per boot, the
source node as the address book resolves it now."""

from __future__ import annotations

import asyncio

from idc_ha.model.config import ProbeSettings
from idc_ha.model.observation import NodeObservation
from idc_ha.observe.addresses import NEGATIVE_TTL_S, AddressBook
from idc_ha.observe.boots import BootTracker
from idc_ha.observe.probe import _asks_finalizing
from idc_ha.observe.prober import NodeProber

from .builders import TOPO

VARIABLES = (1, 7, "10.11", "0-1-5", "0-1-5", "0-1-5", 1, 0, "AFTER_SYNC", 10, 1, 1, 2)


def raw(uptime: int, *, applied: str = "0-1-5", ms: float = 1.0, finalizing: int = 0) -> tuple:  # type: ignore[type-arg]
    variables = (*VARIABLES[:3], applied, *VARIABLES[4:])
    return variables, {"Uptime": str(uptime), "Threads_connected": "3"}, None, ms, finalizing


def prober() -> NodeProber:
    return NodeProber("n1", "10.0.1.11", 4401, user="u", password="p", settings=ProbeSettings())


def test_an_unchanged_node_gives_the_same_observation_object() -> None:
    """Only Uptime and the round trip moved: the last observation comes back, boot time kept."""
    p = prober()
    first = p._observation(raw(1000), now=5000.0)
    p._last = first
    again = p._observation(raw(1001, ms=3.0), now=5001.2)
    assert again is first and first.booted_at == 4000.0


def test_a_change_gives_a_new_observation_with_the_same_boot() -> None:
    p = prober()
    p._last = p._observation(raw(1000), now=5000.0)
    moved = p._observation(raw(1002, applied="0-1-6"), now=5002.4)
    assert moved is not p._last and str(moved.gtid_binlog_pos) == "0-1-6" and moved.booted_at == 4000.0


def test_a_restart_moves_the_boot_time() -> None:
    """Uptime far below what time says: the server restarted; the boot time moves with it."""
    p = prober()
    p._last = p._observation(raw(1000), now=5000.0)
    after = p._observation(raw(3), now=5010.0)
    assert after is not p._last and after.booted_at == 5007.0


def test_a_slow_probe_is_no_restart() -> None:
    """Uptime read 1.45 s after the probe started (a stalled server, a slow dial) moves the naive
    estimate by more than a second: the boot time must stay (review 3, S3: a phantom restart
    reset the acker's lost-link run and refused an owed failover)."""
    p = prober()
    boot = 899.95
    for now in (1000.94, 1001.14):
        p._last = p._observation(raw(int(now + 0.005 - boot)), now=now, after=now + 0.01)
    held = p._last.booted_at
    slow = p._observation(raw(int(1001.501 + 1.45 - boot)), now=1001.501, after=1001.501 + 1.46)
    assert slow.booted_at == held
    assert p._observation(raw(int(1003.1 - boot)), now=1003.1, after=1003.11).booted_at == held


def test_clock_drift_over_days_is_no_restart() -> None:
    """The server's clock running 100 ppm slow against ours for a day moves Uptime by 8.6 s: the
    boot time must stay (each answer is compared with the one before, not with the first)."""
    p = prober()
    first = None
    for k in range(0, 86_400, 10):
        now = 10_000.0 + k
        o = p._observation(raw(int((now - 4_000.0) * (1 - 1e-4))), now=now, after=now + 0.002)
        p._last = o
        first = first if first is not None else o.booted_at
        assert o.booted_at == first, f"phantom restart after {k} s"


def test_a_quick_restart_between_two_answers_is_seen() -> None:
    """The server answered at 5000 (up 1000 s) and again at 5001 up 0 s: restarted, boot moved."""
    p = prober()
    p._last = p._observation(raw(1000), now=5000.0, after=5000.01)
    after = p._observation(raw(0), now=5001.0, after=5001.01)
    assert after.booted_at == 5001.0 != p._last.booted_at


def test_a_source_learnt_later_is_seen_on_an_idle_replica() -> None:
    """A replica whose source name did not resolve at its first probe (a DNS blip at start) gets
    its source once the name resolves, though nothing changed on the server (review 3, S5)."""
    dns = {"up": False}
    clock = {"t": 1000.0}

    def resolver(host: str) -> frozenset[str]:
        return frozenset({"10.0.1.12"}) if dns["up"] else frozenset()

    book = AddressBook(TOPO, resolver=resolver, clock=lambda: clock["t"])
    p = NodeProber(
        "shard1-sx",
        "10.0.2.12",
        4408,
        user="u",
        password="p",
        settings=ProbeSettings(),
        book=book,
        clock=lambda: clock["t"],
    )
    slave = {"Master_Host": "shard1-m.db.internal", "Master_Port": 4406, "Slave_IO_Running": "Yes"}

    def probe() -> NodeObservation:
        asyncio.run(book.learn("shard1-m.db.internal"))
        o = p._observation((VARIABLES, {"Uptime": str(int(clock["t"]))}, dict(slave), 1.0, 0), now=clock["t"])
        p._last = o
        return o

    assert probe().source is None
    dns["up"] = True
    clock["t"] += NEGATIVE_TTL_S + 0.1  # a failed lookup is asked again this soon
    assert probe().source == "shard1-m"


def test_a_crash_loop_restart_of_a_young_boot_is_seen() -> None:
    """The server booted at 1000.0, answered at 1001.9 (Uptime 1), crashed and was back at 1002.3:
    on the new connection Uptime is 0 again and the intervals overlap; a boot that young when last
    seen is taken for restarted (review 4, F1: the prober kept the boot and the decision core
    kept a baseline whose boot had ended)."""
    p = prober()
    p._last = p._observation(raw(1), now=1001.9, after=1001.91)
    after = p._observation(raw(0), now=1002.4, after=1002.41)
    assert after.booted_at != p._last.booted_at


def test_the_server_clock_stepped_back_on_one_connection_is_no_restart() -> None:
    """Uptime is on the server's wall clock: stepped back 3 s, it falls by 3 s. Over a connection
    open since the previous answer the server cannot have restarted (review 4, F2: the acker's
    'restart' refused an owed failover for good)."""
    p = prober()
    p._last = p._observation(raw(86_400), now=5000.0, after=5000.01, same_connection=False)
    p._last = p._observation(raw(86_401), now=5001.0, after=5001.01, same_connection=True)
    stepped = p._observation(raw(86_398), now=5002.0, after=5002.01, same_connection=True)
    assert stepped.booted_at == p._last.booted_at


def test_the_admin_reads_the_boot_the_prober_holds() -> None:
    """A failover's baseline is taken from the admin's own observation: it must name the boot the
    next probe publishes, even after the server's clock moved forward since the prober first saw
    it (review 4, F5: every failover onto such a host looked 'restarted' at once)."""
    boots = BootTracker()
    held = boots.judge("n1", 1000, 5000.0, 5000.01, same_connection=False)
    for k in range(1, 10):  # the server's clock gains 1 s per answer, on one connection
        assert boots.judge("n1", 1000 + 2 * k, 5000.0 + k, 5000.01 + k, same_connection=True) == held
    assert boots.peek("n1", 1020, 5010.0, 5010.05) == held
    assert boots.peek("n1", 3, 5010.0, 5010.05) == 5007.0  # a restart: its own estimate
    assert boots.peek("n2", 50, 5010.0, 5010.05) == 4960.0  # never probed: its own estimate


def test_a_failing_node_with_no_news_within_the_hold_fails_as_it_last_did() -> None:
    """A node whose last probe was refused, and whose next probe has not ended within the hold,
    is still seen refused in that round (not a timeout, which would stretch its confirmation);
    one that last timed out is seen timing out."""
    from idc_ha.model.observation import ProbeFailure

    async def run(last: ProbeFailure) -> NodeObservation:
        p = prober()
        p._last = NodeObservation(node="n1", reachable=False, failure=last, error="x")

        async def never() -> NodeObservation:
            await asyncio.sleep(3600)
            raise AssertionError

        p._inflight = asyncio.ensure_future(never())
        try:
            return await p.probe()
        finally:
            p._inflight.cancel()

    assert asyncio.run(run(ProbeFailure.REFUSED)).failure == ProbeFailure.REFUSED
    assert asyncio.run(run(ProbeFailure.TIMEOUT)).failure == ProbeFailure.TIMEOUT


def test_a_dump_thread_finalizing_shows_and_changes_the_observation() -> None:
    """The processlist read (FINALIZING_SQL: the oldest finalizing dump thread's id) lands in the
    observation, and a new id is a change."""
    p = prober()
    p._last = p._observation(raw(1000), now=5000.0)
    assert p._last.finalizing_dump == 0
    hung = p._observation(raw(1001, finalizing=45), now=5001.0)
    assert hung is not p._last and hung.finalizing_dump == 45


def test_the_processlist_is_read_only_on_a_writable_semisync_master_with_no_client() -> None:
    writable_master = (0, *VARIABLES[1:7], 1, *VARIABLES[8:])
    assert _asks_finalizing(writable_master, {"Rpl_semi_sync_master_clients": "0"})
    assert not _asks_finalizing(writable_master, {"Rpl_semi_sync_master_clients": "1"})
    assert not _asks_finalizing((1, *writable_master[1:]), {"Rpl_semi_sync_master_clients": "0"})  # read-only
    assert not _asks_finalizing((*writable_master[:7], 0, *writable_master[8:]), {})  # master semi-sync off
