"""Commits stuck waiting for a semi-sync ack are named with their shard and how long they waited."""

from __future__ import annotations

from idc_ha.model.ids import NodeName
from idc_ha.model.policy import Alerts, Policy

from .builders import TOPO, history, home_nodes, lost, pos, with_master, with_replica
from .test_rules import K, run

M, SX = NodeName("shard1-m"), NodeName("shard1-sx")


def _stuck(d: object) -> list[object]:
    return [a for a in d.alerts if a.kind == K.COMMITS_STUCK]  # type: ignore[attr-defined]


def test_commits_waiting_with_no_acker_connected_are_alerted_with_the_wait() -> None:
    h = home_nodes()
    waiting = with_master(lost(TOPO, h, []), M, wait_sessions=3, clients=0)
    waiting = with_replica(waiting, SX, io_running="Connecting", last_io_errno=2003)
    d = run(history((0.0, h), (1.0, waiting), (3.5, waiting)))
    [a] = _stuck(d)
    assert a.shard == "shard1" and a.node == M  # type: ignore[attr-defined]
    assert "3 commit(s)" in a.reason and "waited 2.5 s" in a.reason and "no acker connected" in a.reason  # type: ignore[attr-defined]
    assert "never KILL QUERY" in a.hint  # type: ignore[attr-defined]


def test_one_round_of_waiting_is_no_alert() -> None:
    h = home_nodes()
    waiting = with_master(h, M, wait_sessions=1, clients=0)
    assert _stuck(run(history((0.0, h), (1.0, waiting)))) == []


def test_a_connected_caught_up_acker_with_commits_still_waiting_is_the_hang() -> None:
    h = home_nodes()
    hung = with_master(h, M, wait_sessions=2)
    assert _stuck(run(history((0.0, h), (1.0, hung), (4.0, hung)))) == []  # 3 s: under the 5 s limit
    [a] = _stuck(run(history((0.0, h), (1.0, hung), (7.0, hung))))
    assert "waited 6.0 s" in a.reason and "shard1-sx is connected" in a.reason  # type: ignore[attr-defined]
    strict = Policy(alerts=Alerts(stuck_commit_s=1.0))
    assert len(_stuck(run(history((0.0, h), (1.0, hung), (2.5, hung)), policy=strict))) == 1


def test_an_acker_still_receiving_is_not_hung() -> None:
    """Commits wait while the acker has not received them yet: replication is slow, not hung."""
    h = home_nodes()
    behind = with_master(h, M, wait_sessions=2)
    behind = with_replica(behind, SX, gtid_io_pos=pos(TOPO, "shard1", 50))
    behind = {**behind, SX: behind[SX].model_copy(update={"gtid_current_pos": pos(TOPO, "shard1", 50)})}
    assert _stuck(run(history((0.0, h), (1.0, behind), (9.0, behind)))) == []


def test_a_loaded_primary_always_has_a_waiter_but_acks_flow() -> None:
    """Under load a commit waits in every round, but yes_tx rises: nothing is stuck."""
    h = home_nodes()
    frames = [(float(k), with_master(h, M, wait_sessions=1, yes_tx=1000 + 50 * k)) for k in range(12)]
    assert _stuck(run(history(*frames))) == []
