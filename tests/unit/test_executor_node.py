"""The executor runs a node failover against the in-memory MariaDB (``sim.fleet``): the primary
``shard1-m`` died alone; the acker ``shard1-sx`` received all 150 of its transactions but applied
only 100 (50 in its relay log); the local candidate ``shard1-ms`` received only 120. MS must be
caught up from Sx before it is promoted, Sx's relay log applied before its IO thread is restarted
against MS, and a daemon that crashes after any effect must end in the same place."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from idc_ha.decide.plans import plan_for
from idc_ha.model.alert import AlertKind
from idc_ha.model.ids import SyncState
from idc_ha.model.state import Operation, OpKind
from sim.fleet import Fleet

from .builders import TOPO, WALL, pos, record
from .test_executor import BOUND, CAS, MS, REM, SHARD, SX, Crash, M, daemon

RECEIVED = pos(TOPO, SHARD, 150)
OP = Operation(
    id="shard1/e1/node_failover",
    kind=OpKind.NODE_FAILOVER,
    shard=SHARD,
    old_primary=M,
    target=MS,
    new_ackers=(SX,),
    fence=(M,),
    seen_received=RECEIVED,
    via=SX,
    repoint=(SX,),
    reason="test",
    started_wall=WALL,
)


def cluster() -> Fleet:
    c = Fleet(TOPO).arrange_home(seq=100)
    c.write(M, 50)
    c.nodes[SX].apply_per_tick = 0
    c.tick(only=[c.nodes[SX]])  # Sx receives all 50, applies none
    c.nodes[MS].stalled = True
    c.tick(only=[c.nodes[MS]])
    c.nodes[MS].stalled = False
    c.nodes[MS].replica.io_pos = pos(TOPO, SHARD, 100)  # type: ignore[union-attr]
    c.nodes[M].dead = True
    c.tick(apply=False)
    c.nodes[SX].apply_per_tick = 10
    c.nodes[MS].apply_per_tick = 10
    return c


async def run_op(c: Fleet, state: Path, on_effect: Callable[[str], None] | None = None) -> Any:
    d = daemon(c, state, on_effect=on_effect)
    c.on_effect = on_effect
    if d.book.get(SHARD) is None:
        d.book.put(record(TOPO, SHARD, op=OP))
    rec = d.book.get(SHARD)
    assert rec is not None
    if rec.op is not None:
        async with asyncio.timeout(BOUND):
            await d.executor.run(plan_for(rec.op))
    return d


def end_state(c: Fleet, d: Any) -> dict[str, Any]:
    for _ in range(3):
        c.tick()
    out: dict[str, Any] = {"record": d.book.get(SHARD)}
    for name in (MS, SX, CAS, REM):
        n = c.nodes[name]
        r = n.replica
        out[name] = (n.read_only, tuple(n.binlog), None if r is None else (r.host, r.port, r.io, r.sql, r.semi))
    return out


def assert_promoted_in_idc1(c: Fleet, d: Any) -> None:
    ms, sx = c.nodes[MS], c.nodes[SX]
    assert ms.binlog == c.nodes[M].binlog, "MS must hold every transaction M wrote (Sx received them all)"
    assert not ms.read_only and ms.replica is None and ms.master_enabled
    # Both switch source with CHANGE MASTER (which empties the relay log) only once it is applied.
    assert sx.discarded == [] and ms.discarded == [], "a relay log was discarded before it was applied"
    o = c.observation(SX)
    assert o.source == MS and o.semisync_slave is not None and o.semisync_slave.status
    assert c.observation(CAS).source == SX and c.observation(REM).source == SX
    rec = d.book.get(SHARD)
    assert rec is not None and rec.op is None
    assert (rec.epoch, rec.sync, rec.primary, rec.ackers) == (2, SyncState.IDC_SAFE, MS, (SX,))
    assert rec.upstreams == {SX: MS, CAS: SX, REM: SX} and rec.out == (M,) and rec.fence_pending == (M,)
    assert c.forbidden() == []


async def test_node_failover_catches_the_local_candidate_up_and_keeps_the_acker(tmp_path: Path) -> None:
    c = cluster()
    effects: list[str] = []
    d = await run_op(c, tmp_path, effects.append)
    assert_promoted_in_idc1(c, d)
    assert [s.kind for s in plan_for(OP).steps] == d.steps("step_done")
    # Sx applied its whole relay log before anything restarted its IO thread against MS.
    i_applied = effects.index("journal step_done wait_relay_applied")
    i_repoint = next(i for i, e in enumerate(effects) if e.startswith("shard1-sx: CHANGE MASTER"))
    assert i_applied < i_repoint
    assert any(e.startswith("shard1-ms: CHANGE MASTER") for e in effects), "MS was behind: it catches up from Sx"
    assert [a.kind for a in d.alerts.alerts] == [AlertKind.FAILOVER_DONE]


async def test_a_local_candidate_already_level_is_promoted_without_a_detour(tmp_path: Path) -> None:
    c = cluster()
    c.nodes[MS].replica.io_pos = RECEIVED  # type: ignore[union-attr]
    c.nodes[MS].replica.log += c.nodes[M].binlog[100:]  # type: ignore[union-attr]
    effects: list[str] = []
    d = await run_op(c, tmp_path, effects.append)
    assert_promoted_in_idc1(c, d)
    assert not any(e.startswith("shard1-ms: CHANGE MASTER") for e in effects)


def _effects() -> int:
    effects: list[str] = []
    asyncio.run(_count(effects))
    return len(effects)


async def _count(effects: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        await run_op(cluster(), Path(d), effects.append)


@pytest.mark.parametrize("cut", range(1, _effects() + 1))
async def test_a_node_failover_resumes_from_any_crash_point(tmp_path: Path, cut: int) -> None:
    happy = cluster()
    expected = end_state(happy, await run_op(happy, tmp_path / "happy"))
    c = cluster()
    seen: list[str] = []

    def crash(e: str) -> None:
        seen.append(e)
        if len(seen) == cut:
            raise Crash(e)

    with pytest.raises(Crash):
        await run_op(c, tmp_path / "state", crash)
    d0 = daemon(c, tmp_path / "state")
    d0.store.release()
    c.on_effect = None
    d = await run_op(c, tmp_path / "state")
    assert end_state(c, d) == expected
    assert_promoted_in_idc1(c, d)
