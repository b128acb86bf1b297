"""Verifying semi-sync at both ends before writes open on a new primary (``VerifySemisync``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import NoReturn

from idc_ha.errors import NodeError
from idc_ha.model.ids import NodeName
from idc_ha.ports import Admin

Stuck = Callable[[NodeName, str, str], NoReturn]


async def verify(
    admin: Admin, primary: NodeName, ackers: tuple[NodeName, ...], stuck: Stuck, *, timeout_s: float
) -> str:
    """Until semi-sync is in force on ``primary`` and every acker is connected as a semi-sync
    replica holding all the primary holds; past ``timeout_s``, ``stuck`` (it raises)."""
    deadline = time.monotonic() + timeout_s
    while True:
        p = await admin.observe(primary)
        m = p.semisync_master
        problems = []
        if m is None or not (m.settings_hold and m.status):
            problems.append(f"semi-sync master not in force on {primary}")
        elif m.clients < 1:
            problems.append(f"no semi-sync replica connected to {primary}")
        for a in ackers:
            try:
                o = await admin.observe(a)
            except NodeError as e:
                problems.append(str(e))
                continue
            if (
                o.semisync_slave is None
                or not o.semisync_slave.status
                or o.replica is None
                or not o.replica.io_connected
            ):
                problems.append(f"{a} is not connected as a semi-sync replica")
            elif not o.received().contains(p.gtid_binlog_pos):
                # Nothing new is written before writes open, so the acker must hold all the
                # new primary holds: NODE_SAFE on evidence, never on settings alone.
                problems.append(f"{a} has received {o.received()}, not yet all of {primary} ({p.gtid_binlog_pos})")
        if not problems:
            clients = m.clients if m else 0
            return f"{primary} semi-sync master ON with {clients} client(s); ackers {', '.join(ackers)} ON"
        if time.monotonic() > deadline:
            stuck(
                primary,
                f"writes stay closed: {'; '.join(problems)}",
                "bring an acker up in the new primary's IDC; writes open once it acks",
            )
        await asyncio.sleep(0.02)
