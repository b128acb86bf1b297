"""GTID positions: past() and merge(), examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from pydantic import BaseModel, ValidationError

from idc_ha.model.gtid import Gtid, GtidPos

from .test_gtid import (
    P,
    diverged,
    positions,
)

# -- strategies -------------------------------------------------------------------------------------

# Sequence numbers start at 1: MariaDB never writes sequence 0 (see the xfail about it below).


# -- past -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "point", "errant"),
    [
        ("0-1-5", "0-1-5", set()),
        ("0-1-4", "0-1-5", set()),
        ("0-1-6", "0-1-5", {0}),
        ("0-3-5", "0-1-5", {0}),
        ("", "0-1-5", set()),
        ("0-1-5,7-3-1", "0-1-5", {7}),
        ("0-1-9,1-1-1", "0-1-5,1-1-3", {0}),
        ("0-1-4,1-3-3", "0-1-5,1-1-3", {1}),
        ("0-1-5", "", {0}),
    ],
    ids=[
        "at-point",
        "behind-point",
        "ahead",
        "diverged",
        "empty-node",
        "errant-domain",
        "ahead-in-one",
        "diverged-in-one",
        "empty-point",
    ],
)
def test_past_names_the_errant_domains(node: str, point: str, errant: set[int]) -> None:
    """past(point) is the set of domains where the node holds something the promotion point lacks."""
    assert P(node).past(P(point)) == errant


@given(positions, positions)
def test_past_is_empty_exactly_when_the_point_contains_the_node(node: GtidPos, point: GtidPos) -> None:
    """A node may rejoin (nothing past the point) exactly when the point contains its position."""
    assert (node.past(point) == frozenset()) == point.contains(node)


@given(positions, positions)
def test_past_only_names_domains_of_the_node(node: GtidPos, point: GtidPos) -> None:
    """Errant domains are always domains the node itself holds."""
    assert node.past(point) <= node.domains


# -- merge ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "merged"),
    [
        ("0-1-5", "0-1-7", "0-1-7"),
        ("0-1-7", "0-1-5", "0-1-7"),
        ("0-1-5", "1-2-3", "0-1-5,1-2-3"),
        ("", "0-1-5", "0-1-5"),
        ("0-1-5", "", "0-1-5"),
        ("0-1-5", "0-2-5", "0-1-5"),
        ("0-1-5,1-1-9", "0-2-8,1-1-2", "0-2-8,1-1-9"),
    ],
    ids=[
        "later-wins",
        "earlier-loses",
        "union-of-domains",
        "empty-left",
        "empty-right",
        "tie-keeps-self",
        "per-domain",
    ],
)
def test_merge_is_the_per_domain_maximum(a: str, b: str, merged: str) -> None:
    """merge() keeps the later GTID of each domain; on a sequence tie the left side wins."""
    assert P(a).merge(P(b)) == P(merged)


@given(positions, positions)
def test_merge_contains_both_inputs(a: GtidPos, b: GtidPos) -> None:
    """Without divergence, the merge of two positions contains each of them."""
    assume(not diverged(a, b))
    m = a.merge(b)
    assert m.contains(a) and m.contains(b)


@given(positions, positions)
def test_merge_always_contains_the_left_side(a: GtidPos, b: GtidPos) -> None:
    """Even with divergence, merge never loses anything of its left side."""
    assert a.merge(b).contains(a)


@given(positions, positions)
def test_merge_is_commutative_without_divergence(a: GtidPos, b: GtidPos) -> None:
    """Without divergence, the order of the inputs does not matter."""
    assume(not diverged(a, b))
    assert a.merge(b) == b.merge(a)


@given(positions)
def test_merge_with_self_and_empty_is_identity(p: GtidPos) -> None:
    """Merging a position with itself or with the empty position changes nothing."""
    assert p.merge(p) == p
    assert p.merge(GtidPos()) == p
    assert GtidPos().merge(p) == p


@given(positions, positions)
def test_merge_domains_are_the_union(a: GtidPos, b: GtidPos) -> None:
    """The merge holds exactly the domains of both inputs, one GTID each."""
    m = a.merge(b)
    assert m.domains == a.domains | b.domains
    assert len(m.by_domain) == len(m.domains)


# -- lookups and pydantic ---------------------------------------------------------------------------


def test_domain_lookup() -> None:
    """domain(d) returns the GTID of that domain or None, and domains lists them all."""
    p = P("0-1-5,3-2-9")
    assert p.domain(3) == Gtid(3, 2, 9)
    assert p.domain(1) is None
    assert p.domains == frozenset({0, 3})


class _Holder(BaseModel):
    pos: GtidPos = GtidPos()


def test_pydantic_fields_parse_and_serialise_as_text() -> None:
    """A GtidPos field accepts the MariaDB text, keeps GtidPos values and dumps back to the text."""
    h = _Holder(pos="1-2-7,0-1-42")
    assert h.pos == P("0-1-42,1-2-7")
    assert _Holder(pos=h.pos).pos is h.pos
    assert h.model_dump(mode="json") == {"pos": "0-1-42,1-2-7"}
    assert _Holder.model_validate_json(h.model_dump_json()) == h


@pytest.mark.parametrize("bad", ["0-1", 42, ["0-1-2"]], ids=["malformed", "int", "list"])
def test_pydantic_rejects_what_is_not_a_position(bad: object) -> None:
    """A field fed anything but a valid position string fails validation."""
    with pytest.raises(ValidationError):
        _Holder(pos=bad)
