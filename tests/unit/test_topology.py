"""The declared home layout: cross-checks (problems) and loading the controller's config file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idc_ha.model.problems import Problem, problems

from .builders import entry, layout, topology

Mutation = Callable[[dict[str, Any]], None]


def set_(kind: str, which: str, /, **fields: Any) -> Mutation:
    """Change fields of the entry called ``which`` in ``raw[kind]``."""

    def apply(raw: dict[str, Any]) -> None:
        entry(raw, kind, which).update(fields)

    return apply


def add(kind: str, **fields: Any) -> Mutation:
    def apply(raw: dict[str, Any]) -> None:
        raw[kind].append(fields)

    return apply


def drop(kind: str, which: str) -> Mutation:
    def apply(raw: dict[str, Any]) -> None:
        raw[kind] = [e for e in raw[kind] if e["name"] != which]

    return apply


def broken(*mutations: Mutation) -> list[Problem]:
    raw = layout()
    for m in mutations:
        m(raw)
    return problems(topology(raw))


# -- the valid layout -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_shards", "machines_per_idc"),
    [(0, 2), (1, 2), (2, 2), (3, 3), (5, 4)],
    ids=["meta-only", "one-shard", "lab", "three-by-three", "five-by-four"],
)
def test_the_home_layout_has_no_problems(data_shards: int, machines_per_idc: int) -> None:
    """The lab's shape (meta + data shards, nodes m/ms/sx/cas/rem) passes every check, warnings included."""
    assert problems(topology(data_shards=data_shards, machines_per_idc=machines_per_idc)) == []


def test_lookups_follow_the_declared_layout() -> None:
    """A node's IDC and city come from its machine; home roles and IDC roles are looked up by name."""
    t = topology()
    assert t.idc_of("shard1-sx") == "IDC2"
    assert t.city_of("shard1-rem") == "CITY2"
    assert t.address_of("shard1-m") == ("10.0.1.12", 4406)
    assert t.primary_idc.name == "IDC1" and t.standby_idc.name == "IDC2"
    home = t.home_node("shard1", "cascade")
    assert home is not None and home.name == "shard1-cas"
    assert [i.name for i in t.idcs_in_city("CITY1")] == ["IDC1", "IDC2"]
    assert [n.name for n in t.nodes_by_shard["meta"]] == [
        "meta-m",
        "meta-ms",
        "meta-sx",
        "meta-cas",
        "meta-rem",
    ]


# -- broken layouts: each names the field and the fix -----------------------------------------------
# Index reference for the builder's layout: idcs IDC1=0 IDC2=1 IDC3=2; machines idc1-m1=0, idc1-m2=1,
# idc2-m1=2, idc2-m2=3, idc3-m1=4, idc3-m2=5; shards meta=0 shard1=1 shard2=2; nodes meta-*=0..4,
# shard1-{m,ms,sx,cas,rem}=5..9, shard2-*=10..14. shard1-m lives on idc1-m2, shard1-sx on idc2-m2.

BROKEN: list[tuple[str, list[Mutation], str, str]] = [
    ("unknown-city", [set_("idcs", "IDC3", city="CITY9")], "idcs[2] (IDC3).city", "unknown city"),
    ("unknown-idc", [set_("machines", "idc3-m1", idc="IDC9")], "machines[4] (idc3-m1).idc", "unknown IDC"),
    (
        "unknown-machine",
        [set_("nodes", "shard1-rem", machine="idc9-m1")],
        "nodes[9] (shard1-rem).machine",
        "unknown machine",
    ),
    (
        "unknown-shard",
        [set_("nodes", "shard1-rem", shard="shard9")],
        "nodes[9] (shard1-rem).shard",
        "unknown shard",
    ),
    (
        "unknown-upstream",
        [set_("nodes", "shard1-rem", upstream="shard1-zz")],
        "nodes[9] (shard1-rem).upstream",
        "unknown node",
    ),
    (
        "upstream-in-another-shard",
        [set_("nodes", "shard1-rem", upstream="shard2-sx")],
        "nodes[9] (shard1-rem).upstream",
        "belongs to shard shard2",
    ),
    (
        "duplicate-address-port",
        [set_("nodes", "shard2-m", port=4401)],
        "nodes[10] (shard2-m).port",
        "already used by node meta-m",
    ),
    (
        "duplicate-machine-address",
        [set_("machines", "idc1-m2", address="10.0.1.11")],
        "machines[].address",
        "shared by machines idc1-m1, idc1-m2",
    ),
    (
        "duplicate-node-name",
        [set_("nodes", "shard1-rem", name="shard2-rem")],
        "nodes",
        "'shard2-rem' is declared 2",
    ),
    (
        "duplicate-machine-name",
        [add("machines", name="idc3-m2", idc="IDC3", address="10.0.3.99")],
        "machines",
        "'idc3-m2' is declared 2",
    ),
    (
        "duplicate-idc-name",
        [add("idcs", name="IDC3", city="CITY2", role="backup_city")],
        "idcs",
        "'IDC3' is declared 2",
    ),
    ("duplicate-shard-name", [add("shards", name="shard2")], "shards", "'shard2' is declared 2"),
    ("duplicate-city-name", [add("cities", name="CITY2")], "cities", "'CITY2' is declared 2"),
    (
        "shard-without-acker",
        [set_("nodes", "shard1-sx", role="cascade")],
        "shards[1] (shard1)",
        "0 nodes have role 'acker'",
    ),
    (
        "shard-with-two-ackers",
        [set_("nodes", "shard1-cas", role="acker", upstream="shard1-m")],
        "shards[1] (shard1)",
        "2 nodes have role 'acker'",
    ),
    (
        "acker-in-backup-city",
        [set_("nodes", "shard1-sx", machine="idc3-m1")],
        "nodes[7] (shard1-sx).machine",
        "is in IDC3 (backup_city IDC)",
    ),
    (
        "acker-in-primary-idc",
        [set_("nodes", "shard1-sx", machine="idc1-m1")],
        "nodes[7] (shard1-sx).machine",
        "is in IDC1 (primary IDC)",
    ),
    (
        "standby-idc-in-another-city",
        [set_("idcs", "IDC2", city="CITY2")],
        "idcs[1] (IDC2).city",
        "the standby IDC is in CITY2",
    ),
    ("two-primary-idcs", [set_("idcs", "IDC2", role="primary")], "idcs[].role", "2 IDCs have role 'primary'"),
    (
        "no-primary-idc",
        [set_("idcs", "IDC1", role="backup_city")],
        "idcs[].role",
        "0 IDCs have role 'primary'",
    ),
    (
        "no-standby-idc",
        [set_("idcs", "IDC2", role="primary"), set_("idcs", "IDC1", role="backup_city")],
        "idcs[].role",
        "0 IDCs have role 'standby'",
    ),
    (
        "backup-city-idc-in-main-city",
        [set_("idcs", "IDC3", city="CITY1")],
        "idcs[2] (IDC3).city",
        "backup-city IDC is in the main city",
    ),
    (
        "upstream-cycle",
        [set_("nodes", "shard1-sx", upstream="shard1-cas")],
        "nodes (shard1-sx -> shard1-cas -> shard1-sx).upstream",
        "cycle",
    ),
    (
        "remote-from-primary",
        [set_("nodes", "shard1-rem", upstream="shard1-m")],
        "nodes[9] (shard1-rem).upstream",
        "remote replicates from shard1-m",
    ),
    (
        "remote-in-main-city",
        [set_("nodes", "shard1-rem", machine="idc2-m1")],
        "nodes[9] (shard1-rem).machine",
        "is in IDC2 (standby IDC)",
    ),
    (
        "local-candidate-on-primary-machine",
        [set_("nodes", "shard1-ms", machine="idc1-m2")],
        "nodes[6] (shard1-ms).machine",
        "shares machine idc1-m2 with the primary",
    ),
    (
        "local-candidate-outside-primary-idc",
        [set_("nodes", "shard1-ms", machine="idc2-m1")],
        "nodes[6] (shard1-ms).machine",
        "is in IDC2 (standby IDC)",
    ),
    (
        "local-candidate-from-acker",
        [set_("nodes", "shard1-ms", upstream="shard1-sx")],
        "nodes[6] (shard1-ms).upstream",
        "replicates from the primary",
    ),
    (
        "acker-from-remote",
        [set_("nodes", "shard1-sx", upstream="shard1-rem"), set_("nodes", "shard1-rem", upstream="shard1-m")],
        "nodes[7] (shard1-sx).upstream",
        "the acker replicates from the primary",
    ),
    (
        "cascade-from-primary",
        [set_("nodes", "shard1-cas", upstream="shard1-m")],
        "nodes[8] (shard1-cas).upstream",
        "the cascade replicates from the acker",
    ),
    (
        "cascade-outside-standby-idc",
        [set_("nodes", "shard1-cas", machine="idc1-m1")],
        "nodes[8] (shard1-cas).machine",
        "is in IDC1 (primary IDC)",
    ),
    (
        "primary-with-upstream",
        [set_("nodes", "shard1-m", upstream="shard1-rem")],
        "nodes[5] (shard1-m).upstream",
        "replicates from nothing",
    ),
    (
        "primary-outside-primary-idc",
        [set_("nodes", "shard1-m", machine="idc2-m1")],
        "nodes[5] (shard1-m).machine",
        "is in IDC2 (standby IDC)",
    ),
    (
        "two-primaries",
        [set_("nodes", "shard1-ms", role="primary", upstream=None)],
        "shards[1] (shard1)",
        "2 nodes have role 'primary'",
    ),
    (
        "fence-command-unknown-placeholder",
        [set_("machines", "idc1-m1", fence_command=["fence", "{host}", "{node}"])],
        "machines[0] (idc1-m1).fence_command",
        "unknown placeholder(s) {host}",
    ),
    (
        "fence-command-lone-brace",
        [set_("machines", "idc1-m1", fence_command=["fence", "{node"])],
        "machines[0] (idc1-m1).fence_command",
        "write {{ or }} for a literal brace",
    ),
    ("no-primary", [drop("nodes", "shard1-m")], "shards[1] (shard1)", "0 nodes have role 'primary'"),
    ("no-meta-shard", [set_("shards", "meta", meta=False)], "shards[].meta", "0 shards are marked meta"),
    ("two-meta-shards", [set_("shards", "shard1", meta=True)], "shards[].meta", "2 shards are marked meta"),
    ("shard-without-nodes", [add("shards", name="shard3")], "shards[3] (shard3)", "no nodes"),
]


@pytest.mark.parametrize(("mutations", "field", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_a_broken_layout_names_the_field_and_the_fix(mutations: list[Mutation], field: str, message: str) -> None:
    """Each broken variant yields an error whose field names the right place and whose fix is non-empty."""
    found = broken(*mutations)
    errors = [p for p in found if p.severity == "error"]
    matching = [p for p in errors if p.field == field and message in p.message]
    assert matching, f"no error at {field!r} mentioning {message!r}; got:\n" + "\n".join(map(str, found))
    assert all(p.fix.strip() for p in found)


WARNINGS: list[tuple[str, list[Mutation], str, str]] = [
    ("no-cascade", [drop("nodes", "shard1-cas")], "shards[1] (shard1)", "no cascade node"),
    (
        "cascade-on-acker-machine",
        [set_("nodes", "shard1-cas", machine="idc2-m2")],
        "nodes[8] (shard1-cas).machine",
        "shares machine idc2-m2 with the acker",
    ),
    ("city-without-idc", [add("cities", name="CITY3")], "cities[2] (CITY3)", "no IDC"),
    (
        "idc-without-machine",
        [add("idcs", name="IDC4", city="CITY2", role="backup_city")],
        "idcs[3] (IDC4)",
        "no machine",
    ),
]


@pytest.mark.parametrize(("mutations", "field", "message"), [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_a_doubtful_layout_gets_only_a_warning(mutations: list[Mutation], field: str, message: str) -> None:
    """Layouts that work but weaken the design are warned about, never refused."""
    found = broken(*mutations)
    assert [p.severity for p in found] == ["warning"]
    assert found[0].field == field and message in found[0].message and found[0].fix


def test_every_problem_is_reported_at_once() -> None:
    """problems() lists all errors of a file in one run, so one `idc-ha check` explains them all."""
    found = broken(
        set_("idcs", "IDC3", city="CITY9"),
        set_("nodes", "shard1-rem", upstream="shard1-m"),
        set_("shards", "meta", meta=False),
    )
    fields = {p.field for p in found}
    assert {"idcs[2] (IDC3).city", "nodes[9] (shard1-rem).upstream", "shards[].meta"} <= fields


def test_a_problem_prints_field_message_and_fix() -> None:
    """str(problem) is one line an operator can act on: severity, field, message and fix."""
    p = Problem(field="nodes[9] (x).upstream", message="unknown node 'y'", fix="name a node of the same shard")
    assert str(p) == "error: nodes[9] (x).upstream: unknown node 'y'. Fix: name a node of the same shard"


# -- problems() never raises, whatever the mess -----------------------------------------------------

_NODE_NAMES = [n["name"] for n in layout()["nodes"]]
_node_edits = st.tuples(
    st.sampled_from(_NODE_NAMES),
    st.one_of(
        st.tuples(st.just("machine"), st.sampled_from(["idc1-m1", "idc2-m2", "idc3-m1", "ghost-m"])),
        st.tuples(st.just("upstream"), st.sampled_from([*_NODE_NAMES[:10], None, "ghost"])),
        st.tuples(st.just("role"), st.sampled_from(["primary", "local_candidate", "acker", "cascade", "remote"])),
        st.tuples(st.just("shard"), st.sampled_from(["meta", "shard1", "ghost"])),
        st.tuples(st.just("port"), st.sampled_from([4401, 4406, 4999])),
        # renames stay unique here: a duplicate name beside an unknown machine crashes (see the xfail below)
        st.tuples(st.just("name"), st.just("renamed")),
    ),
)
_idc_edits = st.tuples(
    st.sampled_from(["IDC1", "IDC2", "IDC3"]),
    st.one_of(
        st.tuples(st.just("role"), st.sampled_from(["primary", "standby", "backup_city"])),
        st.tuples(st.just("city"), st.sampled_from(["CITY1", "CITY2", "CITY9"])),
    ),
)


@given(st.lists(_node_edits, max_size=6), st.lists(_idc_edits, max_size=3))
def test_problems_never_raises(
    node_edits: list[tuple[str, tuple[str, Any]]], idc_edits: list[tuple[str, tuple[str, Any]]]
) -> None:
    """Whatever is wrong with a layout, problems() returns a list (each with a fix) instead of raising."""
    raw = layout()
    for name, (key, value) in node_edits:
        matches = [n for n in raw["nodes"] if n["name"] == name]
        if matches:
            matches[0][key] = f"{name}-renamed" if key == "name" else value
    for name, (key, value) in idc_edits:
        entry(raw, "idcs", name)[key] = value
    found = problems(topology(raw))
    assert all(isinstance(p, Problem) and p.fix for p in found)


def test_duplicate_node_name_beside_an_unknown_machine_is_reported() -> None:
    """Two nodes named alike, the second on an undeclared machine, give problems, not a KeyError."""
    found = broken(set_("nodes", "meta-ms", machine="ghost-m"), set_("nodes", "meta-ms", name="meta-m"))
    assert {"nodes", "nodes[1] (meta-m).machine"} <= {p.field for p in found}
