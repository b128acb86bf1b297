"""`idc-ha check --live` on built snapshots: what it names and what it leaves alone."""

from __future__ import annotations

from idc_ha.check import live_problems

from .builders import TOPO, WALL, changed, home_nodes, records, snapshot

H = home_nodes()


def problems_for(nodes: dict, **kw: float) -> list[str]:  # type: ignore[type-arg]
    return [f"{p.field}: {p.message}" for p in live_problems(TOPO, snapshot(nodes), records(), wall=WALL, **kw)]


def test_the_home_layout_has_no_problem() -> None:
    assert problems_for(H, max_blind_s=10.0) == []


def test_an_acker_slow_to_notice_a_silent_primary_is_named() -> None:
    """slave_net_timeout 60 s (MariaDB's default) on an acker or a cascade: a silent IDC could
    never be proven within proof.max_blind_s, and the problem says so."""
    slow = changed(changed(H, "shard1-sx", slave_net_timeout_s=60), "shard2-cas", slave_net_timeout_s=60)
    found = problems_for(slow, max_blind_s=10.0)
    assert len(found) == 2 and all("slave_net_timeout is 60 s" in f for f in found)
    assert found[0].startswith("node shard1-sx") and found[1].startswith("node shard2-cas")
    assert problems_for(changed(H, "shard1-sx", slave_net_timeout_s=2), max_blind_s=10.0) == []


def test_strict_mode_off_is_an_error_now() -> None:
    """The position algebra needs gtid_strict_mode: without it the shard is never promoted."""
    found = live_problems(TOPO, snapshot(changed(H, "shard1-cas", gtid_strict_mode=False)), records(), wall=WALL)
    assert [p.severity for p in found] == ["error"] and "never promoted automatically" in found[0].message


def test_an_acker_near_the_bound_is_named_too() -> None:
    """8 s against a 10 s bound leaves no room for confirmation rounds and a missed probe."""
    assert len(problems_for(changed(H, "shard1-sx", slave_net_timeout_s=8), max_blind_s=10.0)) == 1
    assert problems_for(changed(H, "shard1-sx", slave_net_timeout_s=4), max_blind_s=10.0) == []


def test_heartbeats_make_a_long_slave_net_timeout_harmless() -> None:
    """With heartbeats every 0.1 s an acker witnesses a silent primary in 0.3 s, whatever its
    slave_net_timeout: nothing to warn about. Without them, the same timeout is named."""
    sx = H["shard1-sx"]
    assert sx.replica is not None
    beating = changed(
        H, "shard1-sx", slave_net_timeout_s=60, replica=sx.replica.model_copy(update={"heartbeat_period_s": 0.1})
    )
    assert problems_for(beating, max_blind_s=10.0) == []
    silent = changed(
        H, "shard1-sx", slave_net_timeout_s=60, replica=sx.replica.model_copy(update={"heartbeat_period_s": 0})
    )
    assert len(problems_for(silent, max_blind_s=10.0)) == 1


def test_a_server_id_in_the_range_kept_for_the_silent_client_is_an_error() -> None:
    """The wake of a deadlocked ack receiver attaches a client under a server id of its own; a
    server with an id there could be killed as its zombie, or the other way round."""
    found = live_problems(TOPO, snapshot(changed(H, "shard2-ms", server_id=4_294_900_123)), records(), wall=WALL)
    assert [p.severity for p in found] == ["error"] and "server_id 4294900123" in found[0].message
    assert "another server_id" in found[0].fix
