"""The prober's watch on a writable node's connection (observe/watch.py, observe/prober.py): a
close the server makes is heard at once; a close heard while a probe awaits never lets the next
connection pass as the one that already answered (a restart would go unseen); a node demoted to
read-only is no longer watched. A fake connection stands in for asyncmy's (its ``_proto``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import idc_ha.observe.prober as prober_mod
from idc_ha.model.config import ProbeSettings
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation
from idc_ha.observe.prober import NodeProber

NODE = NodeName("m")


class Proto:
    def __init__(self) -> None:
        self.closed = asyncio.get_running_loop().create_future()

    async def wait_closed(self) -> None:
        await self.closed


class Conn:
    def __init__(self) -> None:
        self._proto = Proto()

    def close(self) -> None:
        if not self._proto.closed.done():
            self._proto.closed.set_result(None)

    def server_closes(self) -> None:
        self.close()


class Rig:
    """A NodeProber on fake connections; ``read_only`` is what the next answer says;
    ``hold_learning`` suspends the next probe after its reading, as resolving an address does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.conns: list[Conn] = []
        self.same: list[bool] = []
        self.lost: list[NodeName] = []
        self.read_only = False
        self.hold_learning: asyncio.Event | None = None

        async def read_raw(conn: Any) -> Any:
            return ({}, {"Uptime": "1000"}, [], 1.0, None)

        async def learn_source(raw: Any, book: Any) -> None:
            if self.hold_learning is not None:
                await self.hold_learning.wait()

        monkeypatch.setattr(prober_mod, "read_raw", read_raw)
        monkeypatch.setattr(prober_mod, "learn_source", learn_source)
        self.p = NodeProber(NODE, "h", 1, user="u", password="", settings=ProbeSettings())

        async def dial() -> Conn:
            self.conns.append(Conn())
            return self.conns[-1]

        def observation(raw: Any, now: float, after: float | None = None, *, same_connection: bool = False) -> Any:
            self.same.append(same_connection)
            return NodeObservation(node=NODE, reachable=True, read_only=self.read_only)

        self.p._dial = dial  # type: ignore[method-assign]
        self.p._observation = observation  # type: ignore[method-assign]
        self.p.on_lost = self.lost.append


async def test_a_writable_nodes_close_is_heard_and_the_next_probe_dials_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Rig(monkeypatch)
    async with asyncio.timeout(5):
        await r.p.probe()
        await r.p.probe()
        r.conns[0].server_closes()
        await asyncio.sleep(0.01)
        assert r.lost == [NODE]
        await r.p.probe()
    assert len(r.conns) == 2 and r.same == [False, True, False]


async def test_a_close_heard_mid_probe_never_passes_the_next_connection_off_as_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server restarts while a probe awaits after its reading: the next connection, to the
    restarted server, is judged as new (so its boot is checked), not as one that already answered."""
    r = Rig(monkeypatch)
    async with asyncio.timeout(5):
        await r.p.probe()
        r.hold_learning = asyncio.Event()
        probe = asyncio.ensure_future(r.p.probe())
        await asyncio.sleep(0.01)
        r.conns[0].server_closes()
        await asyncio.sleep(0.01)
        r.hold_learning.set()
        await probe
        r.hold_learning = None
        await r.p.probe()
    assert r.lost == [NODE] and len(r.conns) == 2
    assert r.same[-1] is False, "the restarted server's first answer was taken as the old connection's"


async def test_a_node_demoted_to_read_only_is_no_longer_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Rig(monkeypatch)
    async with asyncio.timeout(5):
        await r.p.probe()
        r.read_only = True  # a switch demoted it, on the same connection
        await r.p.probe()
        r.conns[0].server_closes()  # later restarted as a replica
        await asyncio.sleep(0.01)
    assert r.lost == [], "a replica's close was reported as a writable node's loss"
