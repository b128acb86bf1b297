"""Rejoin (decide/rejoin.py): a fenced node holding nothing past the promotion point it left at
rejoins as a replica of the primary; one holding anything past it (ahead, or diverged) is marked
needs_rebuild with the GTIDs named; nothing happens before its fence, or while the primary is not
writable, and a writable one goes back to the Fencer."""

from __future__ import annotations

from idc_ha.decide.plan import Fence, Rejoin
from idc_ha.decide.rejoin import errant, rejoin
from idc_ha.model.alert import AlertKind
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, ShardName

from .builders import TOPO, after_failover, changed, home_nodes, snapshot

S = ShardName("shard1")
M, MS, SX = NodeName("shard1-m"), NodeName("shard1-ms"), NodeName("shard1-sx")
POINT = GtidPos.parse("0-4406-100")
FENCED = after_failover(TOPO, S, fence_pending=(), left_at={M: POINT, MS: POINT})


def seen(**at: str) -> dict[NodeName, object]:
    """The home nodes with shard1-sx the writable primary and M, MS read-only at the given positions."""
    nodes = changed(home_nodes(), SX, read_only=False, replica=None)
    for name, p in at.items():
        n = NodeName(name.replace("_", "-"))
        nodes = changed(nodes, n, read_only=True, gtid_binlog_pos=GtidPos.parse(p), gtid_slave_pos=GtidPos())
    return nodes  # type: ignore[return-value]


def test_nodes_within_their_point_rejoin_as_replicas_of_the_primary() -> None:
    alerts, steps, rec = rejoin(FENCED, snapshot(seen(shard1_m="0-4406-100", shard1_ms="0-4406-97")))  # type: ignore[arg-type]
    assert alerts == [] and rec is None
    assert [(s.node, s.source, s.point) for s in steps if isinstance(s, Rejoin)] == [(M, SX, POINT), (MS, SX, POINT)]


def test_a_node_past_its_point_is_marked_for_a_rebuild_with_the_gtids() -> None:
    alerts, steps, rec = rejoin(FENCED, snapshot(seen(shard1_m="0-4406-102", shard1_ms="0-4406-100")))  # type: ignore[arg-type]
    assert rec is not None and rec.needs_rebuild == (M,)
    [a] = alerts
    assert a.kind is AlertKind.NEEDS_REBUILD and a.node == M
    assert "0-4406-102 (point 0-4406-100: 2 transaction(s) past it, never acknowledged)" in a.reason
    assert "re-seeded from shard1-sx" in a.hint
    assert [s.node for s in steps] == [MS]
    # Once marked, it is left alone (no second alert, no rejoin).
    again = rejoin(rec, snapshot(seen(shard1_m="0-4406-102", shard1_ms="0-4406-100")))  # type: ignore[arg-type]
    assert again[0] == [] and [s.node for s in again[1]] == [MS] and again[2] is None


def test_what_errant_says_for_a_diverged_or_foreign_domain() -> None:
    assert errant(GtidPos.parse("0-9-100"), POINT) == [
        "0-9-100 (point 0-4406-100: same sequence number, another server: diverged)"
    ]
    assert errant(GtidPos.parse("0-4406-100,7-9-3"), POINT) == ["7-9-3 (the point has nothing in domain 7)"]
    assert errant(GtidPos.parse("0-4406-50"), POINT) == []


def test_nothing_before_the_fence_while_the_primary_is_not_writable_or_without_a_point() -> None:
    nodes = seen(shard1_m="0-4406-100", shard1_ms="0-4406-100")
    pending = FENCED.model_copy(update={"fence_pending": (M, MS)})
    assert rejoin(pending, snapshot(nodes)) == ([], [], None)  # type: ignore[arg-type]
    closed = changed(nodes, SX, read_only=True)  # type: ignore[arg-type]
    assert rejoin(FENCED, snapshot(closed)) == ([], [], None)
    unknown = FENCED.model_copy(update={"left_at": {MS: POINT}})
    alerts, _, rec = rejoin(unknown, snapshot(nodes))  # type: ignore[arg-type]
    assert rec is not None and rec.needs_rebuild == (M,) and "no promotion point" in alerts[0].reason


def test_a_node_out_of_the_layout_writable_again_goes_back_to_the_fencer() -> None:
    nodes = changed(seen(shard1_m="0-4406-100", shard1_ms="0-4406-100"), M, read_only=False)  # type: ignore[arg-type]
    _, steps, _ = rejoin(FENCED, snapshot(nodes))
    assert isinstance(steps[0], Fence) and steps[0].node == M


def _via_m(
    primary_at: str, *, m_in_layout: bool = True, io: str = "Yes", strict: bool = True, slave_at: str = "0-4408-103"
) -> tuple[list, list, object]:
    """shard1-m rejoined (in the layout, behind shard1-sx); shard1-ms restarted replicating from
    it and so received the new primary's commits 0-4408-... past its point 0-4406-100."""
    from idc_ha.model.observation import ReplicaStatus

    rec = FENCED.model_copy(
        update={
            "out": (MS,) if m_in_layout else (M, MS),
            "upstreams": {**FENCED.upstreams, M: SX} if m_in_layout else FENCED.upstreams,
        }
    )
    nodes = seen(shard1_m="0-4408-104", shard1_ms="0-4408-103")
    host, port = TOPO.address_of(M)
    rs = ReplicaStatus(source_host=host, source_port=port, source=M, io_running=io, sql_running="Yes")
    nodes = changed(nodes, MS, replica=rs, gtid_strict_mode=strict, gtid_slave_pos=GtidPos.parse(slave_at))  # type: ignore[arg-type]
    nodes = changed(nodes, SX, gtid_binlog_pos=GtidPos.parse(primary_at))  # type: ignore[arg-type]
    return rejoin(rec, snapshot(nodes))  # type: ignore[arg-type,return-value]


def test_a_node_past_its_point_only_through_a_node_of_the_layout_rejoins() -> None:
    """Found on the lab: a local candidate restarted replicating from the old primary; the old
    primary rejoined first and passed the new primary's commits on. Not errant: it rejoins, with
    ``via`` naming the source, while the primary holds all it holds."""
    alerts, steps, rec = _via_m("0-4408-105")
    assert alerts == [] and rec is None
    assert [(s.node, s.via) for s in steps if isinstance(s, Rejoin)] == [(MS, M)]


def test_past_its_point_is_errant_unless_the_primary_holds_it_and_the_source_is_in_the_layout() -> None:
    for case in (
        _via_m("0-4408-102"),  # the primary lacks what it holds
        _via_m("0-4408-105", m_in_layout=False),  # its source is out of the layout
        _via_m("0-4408-105", io="Connecting"),  # not replicating now: nothing says where it came from
        _via_m("0-4408-105", strict=False),  # MariaDB serves a non-strict replica across a hole (review)
        _via_m("0-4408-105", slave_at="0-4408-102"),  # a write of its own on top: binlog past its applier
    ):
        _, steps, rec = case
        assert rec is not None and MS in rec.needs_rebuild, case  # type: ignore[attr-defined]
        assert not [s for s in steps if isinstance(s, Rejoin) and s.node == MS]
