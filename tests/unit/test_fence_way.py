"""Which way through a blocked fence (decide/fence.py): the fence command first, KILL of the
waiters only if the policy allows it, and neither on a node the record still holds."""

from __future__ import annotations

import pytest

from idc_ha.decide.fence import Way, way_through
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.policy import Fencing

from .builders import TOPO, record

M, SX = NodeName("shard1-m"), NodeName("shard1-sx")
HOME = record(TOPO, ShardName("shard1"), sync=SyncState.IDC_SAFE)
# After the failover: SX is primary, M is out and pending a fence.
OUT = HOME.model_copy(
    update={
        "epoch": 2,
        "primary": SX,
        "upstreams": {r: u for r, u in HOME.upstreams.items() if r != SX},
        "out": (M,),
        "fence_pending": (M,),
    }
)
# A failover in flight: M is fenced as its first step, but the new layout is not recorded yet.
IN_FLIGHT = HOME.model_copy(update={"fence_pending": (M,)})
KILLS = Fencing(kill_waiters=True)


@pytest.mark.parametrize(
    ("has_command", "tried", "policy", "want"),
    [
        (True, False, Fencing(), Way.COMMAND),
        (True, False, KILLS, Way.COMMAND),  # the command first: it leaves nothing errant
        (True, True, KILLS, Way.KILL_WAITERS),  # it ran and the fence is still blocked
        (True, True, Fencing(), Way.WAIT),
        (False, False, KILLS, Way.KILL_WAITERS),
        (False, False, Fencing(), Way.WAIT),
    ],
)
def test_the_way_out_of_the_layout(has_command: bool, tried: bool, policy: Fencing, want: Way) -> None:
    assert way_through(OUT, M, has_command=has_command, command_tried=tried, policy=policy) is want


@pytest.mark.parametrize("rec", [HOME, IN_FLIGHT, None], ids=["home", "in-flight", "no-record"])
def test_a_node_the_record_holds_is_never_restarted_or_killed_into(rec: object) -> None:
    for has_command in (True, False):
        got = way_through(rec, M, has_command=has_command, command_tried=False, policy=KILLS)  # type: ignore[arg-type]
        assert got is Way.WAIT


def test_a_node_out_of_the_layout_but_already_fenced_is_left_alone() -> None:
    fenced = OUT.model_copy(update={"fence_pending": ()})
    assert way_through(fenced, M, has_command=True, command_tried=False, policy=KILLS) is Way.WAIT
