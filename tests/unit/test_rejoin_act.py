"""The rejoin step (act/rejoin.py) against an Admin that lets the daemon write the record while a
statement runs: the step commits from the record as it is after its last await, never from an
older copy (a shard proven ASYNC meanwhile stays ASYNC), and gives way to an operation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from idc_ha.act.rejoin import rejoin
from idc_ha.coord.book import RecordBook
from idc_ha.coord.store import FileStore
from idc_ha.decide.plan import Rejoin
from idc_ha.errors import StepFailed
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, ShardName, SyncState
from idc_ha.model.observation import NodeObservation
from idc_ha.model.state import ShardRecord
from idc_ha.ports import Admin

from .builders import TOPO, after_failover, failover_op

S = ShardName("shard1")
M, MS, SX = NodeName("shard1-m"), NodeName("shard1-ms"), NodeName("shard1-sx")
POINT = GtidPos.parse("0-4406-100")
STEP = Rejoin(node=M, source=SX, point=POINT, reason="test")


class Meanwhile:
    """An Admin whose CHANGE MASTER lets ``during`` write the record, as a tick may."""

    repl_user, repl_password = "repl", "pw"

    def __init__(self, book: RecordBook, during: Callable[[ShardRecord], ShardRecord]) -> None:
        self.book, self.during, self.sent = book, during, []  # type: ignore[var-annotated]

    def address(self, node: NodeName) -> tuple[str, int]:
        return ("10.0.0.1", 3306)

    async def observe(self, node: NodeName) -> NodeObservation:
        return NodeObservation(node=node, reachable=True, read_only=True, gtid_binlog_pos=POINT)

    async def run(self, node: NodeName, *sql: str, **kw: Any) -> list[list[dict[str, Any]]]:
        self.sent += [(node, s) for s in sql]
        if any(s.startswith("CHANGE MASTER") for s in sql):
            rec = self.book.get(S)
            assert rec is not None
            await self.book.commit(self.during(rec))
        return [[] for _ in sql]


async def setup(tmp_path: Path, during: Callable[[ShardRecord], ShardRecord]) -> tuple[RecordBook, Meanwhile]:
    book = RecordBook(FileStore(tmp_path))
    await book.commit(after_failover(TOPO, S, fence_pending=(), left_at={M: POINT, MS: POINT}))
    return book, Meanwhile(book, during)


async def test_a_record_written_meanwhile_is_kept(tmp_path: Path) -> None:
    book, admin = await setup(
        tmp_path, lambda r: r.model_copy(update={"sync": SyncState.ASYNC, "baseline": None, "reason": "no_tx rose"})
    )
    await rejoin(cast(Admin, admin), book, S, STEP)
    rec = book.get(S)
    assert rec is not None and rec.sync is SyncState.ASYNC, "the rejoin wrote back an older copy of the record"
    assert rec.upstreams[M] == SX and M not in rec.out and M not in rec.left_at
    assert admin.sent[-1] == (M, "START SLAVE")


async def test_an_operation_started_meanwhile_wins(tmp_path: Path) -> None:
    book, admin = await setup(tmp_path, lambda r: r.model_copy(update={"op": failover_op(S, epoch=2)}))
    with pytest.raises(StepFailed, match="layout changed"):
        await rejoin(cast(Admin, admin), book, S, STEP)
    rec = book.get(S)
    assert rec is not None and rec.op is not None and M in rec.out
    assert (M, "START SLAVE") not in admin.sent
