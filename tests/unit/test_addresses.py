"""A replica's source is matched to a node by resolved address, not by the text it was written with."""

from __future__ import annotations

import asyncio

from idc_ha.observe.addresses import AddressBook, literal
from idc_ha.observe.probe import parse_observation

from .builders import TOPO

NAMES = {"db-m2.idc1": frozenset({"10.0.1.12"}), "localhost": frozenset({"127.0.0.1"})}


def book() -> AddressBook:
    calls: list[str] = []

    def resolver(host: str) -> frozenset[str]:
        calls.append(host)
        return NAMES.get(host, frozenset())

    b = AddressBook(TOPO, resolver=resolver)
    assert calls == [], "the config's IP literals need no resolver"
    return b


def test_ip_literals_are_canonical() -> None:
    """IPv4-mapped IPv6 and bracketed forms are the IPv4 address; names are not literals."""
    assert literal("::ffff:10.0.1.12") == "10.0.1.12"
    assert literal("[::1]") == "::1"
    assert literal("db-m2.idc1") is None


def test_every_spelling_of_an_address_names_the_same_node() -> None:
    """10.0.1.12, ::ffff:10.0.1.12 and a name resolving to it are all shard1-m's port."""
    b = book()
    assert b.node_at("10.0.1.12", 4406) == "shard1-m"
    assert b.node_at("::ffff:10.0.1.12", 4406) == "shard1-m"
    assert b.node_at("db-m2.idc1", 4406) is None  # not learnt yet: unknown, never a guess
    asyncio.run(b.learn("db-m2.idc1"))
    assert b.node_at("db-m2.idc1", 4406) == "shard1-m"


def test_an_unknown_address_or_port_is_no_node() -> None:
    b = book()
    asyncio.run(b.learn("nowhere.invalid"))
    assert b.node_at("nowhere.invalid", 4406) is None
    assert b.node_at("10.0.1.12", 1) is None
    assert b.node_at("", 0) is None


def test_the_probe_names_the_source_node() -> None:
    """parse_observation fills ReplicaStatus.source from the address book."""
    variables = (1, 7, "10.11", "", "", "", 1, 0, "AFTER_SYNC", 10, 1, 1)
    slave = {"Master_Host": "::ffff:10.0.1.12", "Master_Port": 4406, "Slave_IO_Running": "Yes"}
    o = parse_observation("shard1-sx", variables, {}, slave, latency_ms=1.0, book=book())
    assert o.replica is not None and o.replica.source == "shard1-m" and o.source == "shard1-m"


def test_a_failed_refresh_keeps_the_last_good_answer() -> None:
    """DNS lost along with an IDC must not make every replica's source unknown (and so hide the
    witnesses of that IDC's death): a refresh that fails keeps the last answer."""
    now = [0.0]
    up = [True]

    def resolver(host: str) -> frozenset[str]:
        return frozenset({"10.0.1.12"}) if up[0] else frozenset()

    b = AddressBook(TOPO, resolver=resolver, ttl_s=60.0, clock=lambda: now[0])
    asyncio.run(b.learn("db-m2.idc1"))
    assert b.node_at("db-m2.idc1", 4406) == "shard1-m"
    up[0], now[0] = False, 120.0
    asyncio.run(b.learn("db-m2.idc1"))
    assert b.node_at("db-m2.idc1", 4406) == "shard1-m"
