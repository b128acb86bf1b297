"""MariaDB GTID positions: parse, compare per domain, containment.

A MariaDB GTID is ``domain-server-sequence``. A *position* (``@@gtid_binlog_pos``,
``@@gtid_slave_pos``, ``@@gtid_current_pos``, ``Gtid_IO_Pos``) holds at most one GTID per replication
domain: the last event group seen in that domain. With ``gtid_strict_mode`` sequence numbers only
grow inside a domain, whichever server wrote them, so one position *contains* another when it is
at or past it in every domain the other names.

Two GTIDs with the same domain and sequence but different server ids are different transactions:
the histories have diverged there, and neither position contains the other. That is the shape of
an errant transaction left on an old primary.

MySQL's uuid GTID sets are a different algebra and are out of scope until a MySQL lab exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema


class GtidParseError(ValueError):
    """The text is not a MariaDB GTID position; the message names the offending part."""


@dataclass(frozen=True, order=True, slots=True)
class Gtid:
    domain: int
    server: int
    seq: int

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


class Relation(StrEnum):
    """How one position stands to another in a single domain."""

    EQUAL = "equal"
    AHEAD = "ahead"
    BEHIND = "behind"
    DIVERGED = "diverged"  # same sequence number, different server: two histories


def _parse_one(text: str) -> Gtid:
    parts = text.split("-")
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise GtidParseError(f"{text!r} is not a GTID (want domain-server-sequence, e.g. 0-1-42)")
    d, s, n = (int(p) for p in parts)
    if d >= 2**32 or s >= 2**32 or n >= 2**64:
        raise GtidParseError(f"{text!r} has a field out of range")
    return Gtid(d, s, n)


@dataclass(frozen=True, slots=True)
class GtidPos:
    """A MariaDB GTID position: the last GTID per domain. Immutable and hashable."""

    by_domain: tuple[Gtid, ...] = ()  # sorted by domain, one entry per domain

    @classmethod
    def parse(cls, text: str | None) -> GtidPos:
        """Parse ``'0-1-42,1-2-7'``; empty or None gives the empty position.

        Raises GtidParseError for malformed text or a domain named twice.
        """
        if text is None:
            return cls()
        items = [t.strip() for t in text.replace("\n", ",").split(",")]
        gtids = [_parse_one(t) for t in items if t]
        domains = [g.domain for g in gtids]
        if len(set(domains)) != len(domains):
            raise GtidParseError(f"{text!r} names a domain twice; a position has one GTID per domain")
        return cls(tuple(sorted(gtids)))

    @classmethod
    def of(cls, *gtids: Gtid) -> Self:
        return cls(tuple(sorted(gtids)))

    def __str__(self) -> str:
        return ",".join(str(g) for g in self.by_domain)

    def __bool__(self) -> bool:
        return bool(self.by_domain)

    def domain(self, d: int) -> Gtid | None:
        for g in self.by_domain:
            if g.domain == d:
                return g
        return None

    @property
    def domains(self) -> frozenset[int]:
        return frozenset(g.domain for g in self.by_domain)

    def relation(self, other: GtidPos, d: int) -> Relation:
        """How self stands to other in domain d. A missing domain is behind any GTID present."""
        a, b = self.domain(d), other.domain(d)
        if a is None or b is None:
            return Relation.EQUAL if a is b else (Relation.BEHIND if a is None else Relation.AHEAD)
        sa, sb = a.seq, b.seq
        if sa > sb:
            return Relation.AHEAD
        if sa < sb:
            return Relation.BEHIND
        if a.server != b.server:
            return Relation.DIVERGED
        return Relation.EQUAL

    def contains(self, other: GtidPos) -> bool:
        """True when self is at or past other in every domain of other, with no divergence."""
        if self.by_domain == other.by_domain or not other.by_domain:
            return True
        return all(self.relation(other, d) in (Relation.EQUAL, Relation.AHEAD) for d in other.domains)

    def lacks(self, other: GtidPos) -> int:
        """How many transactions self is short of other, by sequence numbers per domain (0 when
        it contains it). A measure of catch-up work; divergence is ``contains``'s question."""
        n = 0
        for g in other.by_domain:
            mine = self.domain(g.domain)
            n += max(0, g.seq - (mine.seq if mine else 0))
        return n

    def past(self, point: GtidPos) -> frozenset[int]:
        """The domains in which self holds something the promotion point does not.

        Empty means a node at self holds nothing past the point and may rejoin as a replica;
        any domain returned holds errant (never acknowledged) transactions or a diverged history.
        """
        return frozenset(d for d in self.domains if self.relation(point, d) in (Relation.AHEAD, Relation.DIVERGED))

    def merge(self, other: GtidPos) -> GtidPos:
        """The per-domain maximum of two positions (the later GTID wins; self wins a tie)."""
        if not other.by_domain or other.by_domain == self.by_domain:
            return self
        if not self.by_domain:
            return other
        out: dict[int, Gtid] = {g.domain: g for g in self.by_domain}
        for g in other.by_domain:
            mine = out.get(g.domain)
            if mine is None or g.seq > mine.seq:
                out[g.domain] = g
        return GtidPos(tuple(sorted(out.values())))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: object, handler: GetCoreSchemaHandler) -> CoreSchema:
        def validate(v: object) -> GtidPos:
            if isinstance(v, GtidPos):
                return v
            if isinstance(v, str):
                return cls.parse(v)
            raise GtidParseError(f"expected a GTID position string, got {type(v).__name__}")

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )
