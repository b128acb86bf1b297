"""status: which IDC is primary and which standby now, and the home layout beside the current one."""

from __future__ import annotations

from idc_ha.model.ids import NodeName, ShardName
from idc_ha.status import render, report

from .builders import TOPO, after_failover, home_nodes, record, snapshot

WALL = 1_700_000_000.0


def test_after_a_failover_status_shows_idc2_primary_no_standby_and_the_home_layout() -> None:
    recs = {s.name: after_failover(TOPO, s.name) for s in TOPO.shards}
    r = report(TOPO, snapshot(home_nodes()), recs, control=None, tick=None, store_present=True, wall=WALL)
    assert r["idcs"] == {"primary": ["IDC2"], "standby": [], "home_primary": "IDC1", "home_standby": "IDC2"}
    s1 = next(s for s in r["shards"] if s["name"] == "shard1")
    assert s1["standby_idc"] is None
    assert s1["home"] == {"primary": "shard1-m", "primary_idc": "IDC1", "ackers": ["shard1-sx"], "standby_idc": "IDC2"}
    text = render(r)
    assert "IDCs now: primary IDC2, standby none (no acker across IDCs)   (home: primary IDC1, standby IDC2)" in text
    assert "home layout: primary shard1-m (IDC1), acker shard1-sx" in text


def test_idc_safe_again_shows_idc1_as_the_standby() -> None:
    back = {
        s.name: after_failover(TOPO, s.name).model_copy(
            update={"ackers": (NodeName(f"{s.name}-m"),), "out": (), "fence_pending": ()}
        )
        for s in TOPO.shards
    }
    r = report(TOPO, snapshot(home_nodes()), back, control=None, tick=None, store_present=True, wall=WALL)
    assert r["idcs"]["primary"] == ["IDC2"] and r["idcs"]["standby"] == ["IDC1"]


def test_the_home_layout_shows_no_home_line() -> None:
    recs = {s.name: record(TOPO, s.name) for s in TOPO.shards}
    r = report(TOPO, snapshot(home_nodes()), recs, control=None, tick=None, store_present=True, wall=WALL)
    assert r["idcs"]["primary"] == ["IDC1"] and r["idcs"]["standby"] == ["IDC2"]
    assert "home layout:" not in render(r)
    assert r["shards"][0]["name"] == ShardName(TOPO.shards[0].name)
