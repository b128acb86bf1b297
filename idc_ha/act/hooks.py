"""Hooks: a DBA's command run after each event (``Config.hooks``), e.g. to tell a proxy or a
paging system. The events: failover, switch, city_promotion, fence, rejoin.

A hook runs in the background, never in the way of what it reports: the failover is finished
(writes open, routing published) before its hook starts, and nothing waits for it. It runs for at
most ``hooks.timeout_s`` (then it is killed with everything it started), gets the event in its
environment (with PATH, LANG and TZ, nothing else of the daemon's: it holds passwords), and is
journaled. A hook fires at most once: a daemon that dies between the event and the hook's start
does not run it (the journal shows the event without its ``hook`` line). A hook that fails or
times out raises ``hook_failed`` (warning);
nothing is undone and nothing is retried: the event already happened.
"""

from __future__ import annotations

import asyncio
import os

import structlog

from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.model.config import HookEvent, Hooks
from idc_ha.model.ids import NodeName
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology
from idc_ha.notify.alerts import AlertSink
from idc_ha.ports import CommandRunner, Store

log = structlog.get_logger("idc_ha.hooks")


def hook_env(
    event: HookEvent, rec: ShardRecord, t: Topology, *, old_primary: NodeName | None, reason: str
) -> dict[str, str]:
    host, port = t.address_of(rec.primary)
    return {
        "IDC_HA_EVENT": event.value,
        "IDC_HA_SHARD": rec.shard,
        "IDC_HA_EPOCH": str(rec.epoch),
        "IDC_HA_PRIMARY_NODE": rec.primary,
        "IDC_HA_PRIMARY_HOST": host,
        "IDC_HA_PRIMARY_PORT": str(port),
        "IDC_HA_PRIMARY_IDC": t.idc_of(rec.primary),
        "IDC_HA_OLD_PRIMARY": old_primary or "",
        "IDC_HA_REASON": reason,
    }


class HookRunner:
    def __init__(self, hooks: Hooks, t: Topology, runner: CommandRunner, alerts: AlertSink, store: Store) -> None:
        self.hooks, self.t, self.runner, self.alerts, self.store = hooks, t, runner, alerts, store
        self._tasks: set[asyncio.Task[None]] = set()

    def fire(
        self, event: HookEvent, rec: ShardRecord, *, old_primary: NodeName | None = None, reason: str = ""
    ) -> None:
        """Start the event's hook, if one is configured; returns at once."""
        argv = self.hooks.command(event)
        if not argv:
            return
        env = hook_env(event, rec, self.t, old_primary=old_primary, reason=reason)
        task = asyncio.create_task(self._run(event, argv, env, rec), name=f"hook:{event}:{rec.shard}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def running(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    async def _run(self, event: HookEvent, argv: tuple[str, ...], env: dict[str, str], rec: ShardRecord) -> None:
        # PATH and the event only: the daemon's environment holds passwords (IDC_HA_CREDENTIALS__...).
        base = {k: os.environ[k] for k in ("PATH", "LANG", "TZ") if k in os.environ}
        res = await self.runner.run(argv, timeout=self.hooks.timeout_s, env={**base, **env})
        self.store.append(
            "hook",
            hook=event.value,
            shard=rec.shard,
            epoch=rec.epoch,
            rc=res.rc,
            s=round(res.elapsed_s, 3),
            error=res.error,
            output=res.output[-400:],
        )
        if res.ok:
            log.info("hook done", hook=event.value, shard=rec.shard, s=round(res.elapsed_s, 3))
            return
        log.warning("hook failed", hook=event.value, shard=rec.shard, summary=res.summary())
        self.alerts.emit(
            Alert(
                kind=AlertKind.HOOK_FAILED,
                severity=Severity.WARNING,
                shard=rec.shard,
                node=rec.primary,
                epoch=rec.epoch,
                reason=f"the {event.value} hook of {rec.shard} failed: {res.summary()}; nothing was undone",
                hint=f"run it by hand with the event's environment (journal: hook), then fix hooks.{event.value}",
            )
        )
