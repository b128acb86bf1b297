"""The prober's observations: one object for an unchanged node, a boot time held steady."""

from __future__ import annotations

from idc_ha.model.config import ProbeSettings
from idc_ha.observe.probe import NodeProber

VARIABLES = (1, 7, "10.11", "0-1-5", "0-1-5", "0-1-5", 1, 0, "AFTER_SYNC", 10, 1, 1, 2)


def raw(uptime: int, *, applied: str = "0-1-5", ms: float = 1.0) -> tuple:  # type: ignore[type-arg]
    variables = (*VARIABLES[:3], applied, *VARIABLES[4:])
    return variables, {"Uptime": str(uptime), "Threads_connected": "3"}, None, ms


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
