"""Health verdicts from a short history of snapshots: nodes, machines, IDCs and cities.

Machines of the home layout: idc1-m1 holds meta-m, shard1-ms and shard2-m; idc1-m2 holds meta-ms,
shard1-m and shard2-ms. Each primary's acker (in IDC2) is the replica that can witness its death.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idc_ha.decide.verdicts import Health, Verdicts, assess
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, ProbeFailure, Snapshot
from idc_ha.model.policy import Detection

from .builders import (
    TOPO,
    entry,
    history,
    home_nodes,
    idc_lost,
    in_idc,
    layout,
    lost,
    on_machine,
    steady,
    topology,
    with_replica,
)

REFUSED, TIMEOUT = ProbeFailure.REFUSED, ProbeFailure.TIMEOUT
D = Detection()  # confirm_refused_s=0.2, confirm_other_s=2.3, min_rounds=2
H = home_nodes()
Nodes = dict[NodeName, NodeObservation]


def verdicts(hist: tuple[Snapshot, ...], d: Detection = D) -> Verdicts:
    return assess(hist, TOPO, d)


def failing(nodes: Nodes, *, seconds: float, rounds: int) -> tuple[Snapshot, ...]:
    """A healthy round, then ``rounds`` failing rounds spanning ``seconds``."""
    step = seconds / (rounds - 1) if rounds > 1 else 0.0
    return history((-1.0, H), *((k * step, nodes) for k in range(rounds)))


@dataclass(frozen=True)
class Case:
    hist: tuple[Snapshot, ...]
    node: NodeName
    health: Health
    witness: NodeName | None = None


CASES: dict[str, Case] = {
    "all-reachable": Case(steady(H), "shard1-m", Health.ALIVE),
    "refused-shorter-than-confirm": Case(
        failing(lost(TOPO, H, ["shard1-m"], REFUSED), seconds=0.15, rounds=3), "shard1-m", Health.SUSPECT
    ),
    "refused-long-but-one-round": Case(
        history((-5.0, H), (0.0, lost(TOPO, H, ["shard1-m"], REFUSED))), "shard1-m", Health.SUSPECT
    ),
    "refused-confirmed-and-witnessed": Case(
        failing(lost(TOPO, H, ["shard1-m"], REFUSED), seconds=0.5, rounds=2),
        "shard1-m",
        Health.DEAD,
        witness="shard1-ms",
    ),
    "refused-confirmed-no-witness": Case(
        failing(lost(TOPO, H, ["shard1-m"], REFUSED, witnessed=False), seconds=0.5, rounds=2),
        "shard1-m",
        Health.UNREACHABLE,
    ),
    "timeout-needs-confirm-other": Case(
        failing(lost(TOPO, H, ["shard1-m"], TIMEOUT), seconds=2.0, rounds=5), "shard1-m", Health.SUSPECT
    ),
    "timeout-confirmed-and-witnessed": Case(
        failing(lost(TOPO, H, ["shard1-m"], TIMEOUT), seconds=3.0, rounds=5),
        "shard1-m",
        Health.DEAD,
        witness="shard1-ms",
    ),
    "timeout-confirmed-no-witness": Case(
        failing(lost(TOPO, H, ["shard1-m"], TIMEOUT, witnessed=False), seconds=3.0, rounds=5),
        "shard1-m",
        Health.UNREACHABLE,
    ),
    "acker-witnessed-by-its-replicas": Case(
        failing(lost(TOPO, H, ["shard1-sx"], REFUSED), seconds=1.0, rounds=3),
        "shard1-sx",
        Health.DEAD,
        witness="shard1-cas",
    ),
    "node-without-replicas-is-never-witnessed": Case(
        failing(lost(TOPO, H, ["shard1-ms"], REFUSED), seconds=1.0, rounds=3), "shard1-ms", Health.UNREACHABLE
    ),
    "blip-then-reachable": Case(
        history(
            (0.0, H),
            (1.0, lost(TOPO, H, ["shard1-m"], REFUSED)),
            (5.0, lost(TOPO, H, ["shard1-m"], REFUSED)),
            (5.2, H),
        ),
        "shard1-m",
        Health.ALIVE,
    ),
    "reachable-again-resets-the-streak": Case(
        history(
            (0.0, lost(TOPO, H, ["shard1-m"], REFUSED)),
            (5.0, lost(TOPO, H, ["shard1-m"], REFUSED)),
            (5.2, H),
            (5.4, lost(TOPO, H, ["shard1-m"], REFUSED)),
        ),
        "shard1-m",
        Health.SUSPECT,
    ),
    "one-refusal-in-the-streak-confirms-fast": Case(
        history((0.0, H), (1.0, lost(TOPO, H, ["shard1-m"], TIMEOUT)), (1.5, lost(TOPO, H, ["shard1-m"], REFUSED))),
        "shard1-m",
        Health.DEAD,
        witness="shard1-ms",
    ),
    "witness-from-another-idc": Case(
        failing(
            with_replica(lost(TOPO, H, ["shard1-m", "shard1-ms"], REFUSED), "shard1-sx", io_running="No"),
            seconds=1.0,
            rounds=3,
        ),
        "shard1-m",
        Health.DEAD,
        witness="shard1-sx",
    ),
    "not-probed-is-suspect": Case(steady({n: o for n, o in H.items() if n != "shard1-m"}), "shard1-m", Health.SUSPECT),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_node_verdict(case: Case) -> None:
    """SUSPECT until confirmed, then DEAD if a replica on another machine agrees, else UNREACHABLE."""
    v = verdicts(case.hist).nodes[case.node]
    assert v.health == case.health
    assert v.witness == case.witness


def test_verdict_says_how_long_and_why() -> None:
    """A confirmed verdict carries the failing time and evidence naming the probe error and the witness."""
    v = verdicts(failing(lost(TOPO, H, ["shard1-m"], REFUSED), seconds=0.5, rounds=2)).nodes["shard1-m"]
    assert v.failing_s == pytest.approx(0.5)
    assert "connection refused for 0.5 s" in v.evidence
    assert "shard1-ms lost its replication link to it" in v.evidence


def test_min_rounds_is_required_even_when_long_enough() -> None:
    """However long the failure, fewer rounds than min_rounds only make the node SUSPECT."""
    hist = failing(lost(TOPO, H, ["shard1-m"], TIMEOUT), seconds=10.0, rounds=3)
    assert verdicts(hist, Detection(min_rounds=4)).nodes["shard1-m"].health == Health.SUSPECT
    assert verdicts(hist, Detection(min_rounds=3)).nodes["shard1-m"].health == Health.DEAD


def test_a_witness_on_the_same_machine_does_not_count() -> None:
    """Only a replica on another machine is a second vantage point."""
    raw = layout()
    entry(raw, "nodes", "shard1-ms")["machine"] = "idc1-m2"  # beside its primary
    topo = topology(raw)
    nodes = with_replica(lost(topo, H, ["shard1-m"], REFUSED), "shard1-sx", io_running="Yes")
    assert nodes["shard1-ms"].replica is not None and not nodes["shard1-ms"].replica.io_connected
    hist = failing(nodes, seconds=1.0, rounds=3)
    v = assess(hist, topo, D).nodes["shard1-m"]
    assert v.health == Health.UNREACHABLE and v.witness is None


# -- machines, IDCs, cities -------------------------------------------------------------------------

M1 = on_machine(TOPO, "idc1-m1")  # meta-m, shard1-ms, shard2-m


def test_a_dead_machine_takes_its_unreachable_nodes() -> None:
    """All nodes of a machine failed and one witnessed dead: the machine is dead and so are the others."""
    nodes = lost(TOPO, H, M1, witnessed=False)
    nodes = lost(TOPO, nodes, ["meta-m"])  # only meta-sx notices
    v = verdicts(steady(nodes))
    assert v.machines["idc1-m1"] == Health.DEAD
    assert {n: v.nodes[n].health for n in M1} == {n: Health.DEAD for n in M1}
    assert v.nodes["shard2-m"].witness is None
    assert "its machine is dead" in v.nodes["shard2-m"].evidence
    assert v.idcs["IDC1"] == Health.ALIVE


def test_a_machine_with_no_witnessed_node_is_only_unreachable() -> None:
    """All nodes failed but nobody confirms: the machine, and its nodes, are UNREACHABLE."""
    v = verdicts(steady(lost(TOPO, H, M1, witnessed=False)))
    assert v.machines["idc1-m1"] == Health.UNREACHABLE
    assert {v.nodes[n].health for n in M1} == {Health.UNREACHABLE}


def test_a_single_alive_node_keeps_its_machine_and_idc_alive() -> None:
    """One node still answering means the machine is up, whatever its neighbours say."""
    v = verdicts(steady(lost(TOPO, H, ["meta-m", "shard1-ms"])))
    assert v.nodes["meta-m"].health == Health.DEAD
    assert v.machines["idc1-m1"] == Health.ALIVE
    assert v.idcs["IDC1"] == Health.ALIVE


def test_a_suspect_node_keeps_its_machine_suspect() -> None:
    """A machine with a node still being confirmed is SUSPECT, not dead, and so is its IDC."""
    others = lost(TOPO, H, [*M1, "shard1-m", "shard2-ms"])
    v = verdicts(history((0.0, others), (4.0, others), (4.1, lost(TOPO, others, ["meta-ms"]))))
    assert v.nodes["meta-ms"].health == Health.SUSPECT
    assert v.nodes["shard1-m"].health == Health.DEAD
    assert v.machines["idc1-m1"] == Health.DEAD
    assert v.machines["idc1-m2"] == Health.SUSPECT
    assert v.idcs["IDC1"] == Health.SUSPECT


@pytest.mark.parametrize(
    ("lost_machines", "idc1"),
    [
        ([], Health.ALIVE),
        (["idc1-m1"], Health.ALIVE),
        (["idc1-m2"], Health.ALIVE),
        (["idc1-m1", "idc1-m2"], Health.DEAD),
    ],
    ids=["none", "m1", "m2", "both"],
)
def test_an_idc_is_down_only_when_all_its_machines_are_dead(lost_machines: list[str], idc1: Health) -> None:
    """With idc_down_share = 1, IDC1 is DEAD only when both of its machines are."""
    names = [n for m in lost_machines for n in on_machine(TOPO, m)]
    v = verdicts(steady(lost(TOPO, H, names)))
    assert v.idcs["IDC1"] == idc1
    assert v.idcs["IDC2"] == v.idcs["IDC3"] == Health.ALIVE


def test_idc_down_share_lowers_the_bar() -> None:
    """With idc_down_share = 0.5 one dead machine of two is enough."""
    v = verdicts(steady(lost(TOPO, H, M1)), Detection(idc_down_share=0.5))
    assert v.idcs["IDC1"] == Health.DEAD


def test_idc_down_with_every_node_witnessed_or_taken_by_its_machine() -> None:
    """A whole IDC lost: every node, machine and the IDC are DEAD; the city stays up thanks to IDC2."""
    v = verdicts(steady(idc_lost(TOPO, H, "IDC1")))
    assert {v.nodes[n].health for n in in_idc(TOPO, "IDC1")} == {Health.DEAD}
    assert v.machines == {
        "idc1-m1": Health.DEAD,
        "idc1-m2": Health.DEAD,
        "idc2-m1": Health.ALIVE,
        "idc2-m2": Health.ALIVE,
        "idc3-m1": Health.ALIVE,
        "idc3-m2": Health.ALIVE,
    }
    assert v.idcs == {"IDC1": Health.DEAD, "IDC2": Health.ALIVE, "IDC3": Health.ALIVE}
    assert v.cities == {"CITY1": Health.ALIVE, "CITY2": Health.ALIVE}


def test_idc_cut_off_from_the_controller_only_is_unreachable() -> None:
    """If only the controller lost IDC1 (replicas still connected), nothing is dead: IDC1 is UNREACHABLE."""
    v = verdicts(steady(idc_lost(TOPO, H, "IDC1", witnessed=False)))
    assert {v.nodes[n].health for n in in_idc(TOPO, "IDC1")} == {Health.UNREACHABLE}
    assert v.idcs["IDC1"] == Health.UNREACHABLE
    assert v.cities["CITY1"] == Health.ALIVE


def test_main_city_lost() -> None:
    """IDC1 and IDC2 lost: IDC2 is witnessed by the remotes, IDC1 by nobody left; CITY1 has failed."""
    v = verdicts(steady(idc_lost(TOPO, H, "IDC1", "IDC2")))
    assert v.idcs["IDC2"] == Health.DEAD
    assert v.idcs["IDC1"] == Health.UNREACHABLE
    assert v.cities["CITY1"] == Health.UNREACHABLE
    assert v.cities["CITY2"] == Health.ALIVE


def test_failed_means_dead_or_unreachable() -> None:
    """Verdicts.failed() is true for DEAD and UNREACHABLE nodes only."""
    v = verdicts(failing(lost(TOPO, H, ["shard1-m", "shard2-m"], REFUSED, witnessed=False), seconds=0.5, rounds=2))
    assert v.failed("shard1-m") and v.failed("shard2-m")
    assert not v.failed("shard1-sx")
    short = verdicts(failing(lost(TOPO, H, ["shard1-m"], REFUSED), seconds=0.1, rounds=2))
    assert not short.failed("shard1-m")


# -- properties -------------------------------------------------------------------------------------

NODE_NAMES = [n.name for n in TOPO.nodes]
scenarios = st.tuples(
    st.sets(st.sampled_from(NODE_NAMES)),
    st.booleans(),
    st.sampled_from([REFUSED, TIMEOUT]),
    st.floats(0.0, 6.0),
    st.integers(1, 5),
)


def _hist(scn: tuple[set[str], bool, ProbeFailure, float, int]) -> tuple[Snapshot, ...]:
    names, witnessed, failure, seconds, rounds = scn
    return failing(lost(TOPO, H, sorted(names), failure, witnessed=witnessed), seconds=seconds, rounds=rounds)


@given(scenarios)
def test_reachable_nodes_are_always_alive_and_failed_ones_never(
    scn: tuple[set[str], bool, ProbeFailure, float, int],
) -> None:
    """A node answering in the newest snapshot is ALIVE; one that did not answer never is."""
    v = verdicts(_hist(scn))
    for n in NODE_NAMES:
        assert (v.nodes[n].health == Health.ALIVE) is (n not in scn[0])


@given(scenarios)
def test_dead_is_always_corroborated(scn: tuple[set[str], bool, ProbeFailure, float, int]) -> None:
    """Every DEAD node has a reachable witness on another machine, or its machine is dead."""
    v = verdicts(_hist(scn))
    for n, nv in v.nodes.items():
        if nv.health == Health.DEAD:
            machine = TOPO.node_by_name[n].machine
            assert nv.witness is not None or v.machines[machine] == Health.DEAD
            if nv.witness is not None:
                assert TOPO.node_by_name[nv.witness].machine != machine


@given(scenarios)
def test_nothing_is_confirmed_faster_than_the_policy_allows(
    scn: tuple[set[str], bool, ProbeFailure, float, int],
) -> None:
    """No node is DEAD or UNREACHABLE before confirm_*_s and min_rounds have passed."""
    _, _, failure, seconds, rounds = scn
    need = D.confirm_refused_s if failure == REFUSED else D.confirm_other_s
    v = verdicts(_hist(scn))
    if seconds < need or rounds < D.min_rounds:
        assert not any(v.failed(n) for n in NODE_NAMES)


@given(scenarios)
def test_an_idc_is_dead_only_if_every_machine_with_nodes_is(
    scn: tuple[set[str], bool, ProbeFailure, float, int],
) -> None:
    """Under the default policy an IDC is DEAD exactly when all its machines are DEAD."""
    v = verdicts(_hist(scn))
    for idc in TOPO.idcs:
        machines = [m.name for m in TOPO.machines_in_idc(idc.name)]
        assert (v.idcs[idc.name] == Health.DEAD) is all(v.machines[m] == Health.DEAD for m in machines)
