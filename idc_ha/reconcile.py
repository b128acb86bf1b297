"""The daemon's corrective steps for shards without an operation (drift and the ack-receiver wake).

Fences go to the Fencer durably, through the record, at once (even while another step of the
shard runs); the other steps run in one task per shard, so a slow node never holds up probing. A
step kind that failed on a shard waits ``backoff_s`` before it is tried there again. An operation
of the shard goes first: a running reconcile task of cancellable steps only (the wake: it watches
and detaches its client) is cancelled for it; any other is waited for (bounded by its timeout).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import structlog

from idc_ha.act.executor import Executor
from idc_ha.coord.book import RecordBook
from idc_ha.decide.plan import AnyStep, Decision, Fence
from idc_ha.errors import IdcHaError
from idc_ha.model.ids import ShardName
from idc_ha.ports import Clock, Store

log = structlog.get_logger("idc_ha.reconcile")

RETRY_S = 1.0  # something that failed is retried after 1, 2, 4 ... s, at most RETRY_MAX_S
RETRY_MAX_S = 30.0
CANCELLABLE = frozenset({"wake_ack_receiver"})
RECORDING = frozenset({"rejoin", "rearm", "rewire"})  # steps that rewrite the shard's record


def backoff_s(failures: int) -> float:
    """How long to wait after ``failures`` failures in a row before trying again."""
    return float(min(RETRY_MAX_S, RETRY_S * 2.0**failures))


class Reconciler:
    def __init__(self, executor: Executor, book: RecordBook, store: Store, clock: Clock) -> None:
        self.executor, self.book, self.store, self.clock = executor, book, store, clock
        self.tasks: dict[ShardName, tuple[asyncio.Task[None], frozenset[str]]] = {}  # shard -> (task, its step kinds)
        self.failures: dict[tuple[ShardName, str], tuple[int, float]] = {}  # (shard, kind) -> (in a row, when last)

    def busy(self, shard: ShardName) -> bool:
        t = self.tasks.get(shard)
        return t is not None and not t[0].done()

    def yield_to_op(self, shard: ShardName) -> bool:
        """Make way for an operation of ``shard``: True while a task still runs there (a
        cancellable one is cancelled; the operation starts on a later tick)."""
        if not self.busy(shard):
            return False
        task, kinds = self.tasks[shard]
        if kinds <= CANCELLABLE:
            task.cancel()
        return True

    async def run(self, decision: Decision, op_running: Callable[[ShardName], bool]) -> None:
        now = self.clock.monotonic()
        for shard, steps in decision.reconcile.items():
            if op_running(shard):
                continue
            rec = self.book.get(shard)
            if rec is None or rec.op is not None:
                continue
            fences = [s.node for s in steps if isinstance(s, Fence) and s.node not in rec.fence_pending]
            if fences:
                # One mechanism fences: the Fencer, which never gives up on a node.
                await self.book.commit(
                    rec.model_copy(update={"fence_pending": tuple(dict.fromkeys((*rec.fence_pending, *fences)))})
                )
                self.store.append("reconcile", shard=shard, step="fence", nodes=fences)
            if self.busy(shard):
                continue
            others = [s for s in steps if not isinstance(s, Fence) and not self._backing_off(shard, s.kind, now)]
            if others:
                task = asyncio.create_task(self._steps(shard, others), name=f"reconcile:{shard}")
                self.tasks[shard] = (task, frozenset(s.kind for s in others))

    def _backing_off(self, shard: ShardName, kind: str, now: float) -> bool:
        failures, last = self.failures.get((shard, kind), (0, -1e9))
        return failures > 0 and now - last < backoff_s(failures)

    async def _steps(self, shard: ShardName, steps: Sequence[AnyStep]) -> None:
        for step in steps:
            try:
                detail = await self.executor.reconcile_step(step)
                self.store.append("reconcile", shard=shard, step=step.kind, detail=detail)
                self.failures.pop((shard, step.kind), None)
                if step.kind in RECORDING:
                    break  # the record changed: what follows was decided on the old one (next tick)
            except IdcHaError as e:
                failures = self.failures.get((shard, step.kind), (0, 0.0))[0] + 1
                self.failures[(shard, step.kind)] = (failures, self.clock.monotonic())
                self.store.append("reconcile_failed", shard=shard, step=step.kind, error=str(e))
                log.warning("reconcile step failed", shard=shard, step=step.kind, error=str(e), failures=failures)

    def running(self) -> list[asyncio.Task[None]]:
        return [t for t, _ in self.tasks.values()]
