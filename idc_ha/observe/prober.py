"""The prober of one node: a persistent asyncmy connection between probes, reconnects with backoff,
a failing node's probe carried across rounds, and the close of a writable node's connection heard
between rounds (``observe.watch``). What one probe reads and how it is parsed is ``observe.probe``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncmy
from asyncmy.constants import CLIENT as ASYNCMY_CLIENT

from idc_ha.clock import boottime
from idc_ha.model.config import ProbeSettings
from idc_ha.model.ids import NodeName
from idc_ha.model.observation import NodeObservation, ProbeFailure
from idc_ha.observe.addresses import AddressBook
from idc_ha.observe.boots import BootTracker
from idc_ha.observe.probe import Raw, classify, learn_source, parse_observation, read_raw, unchanged_key
from idc_ha.observe.watch import on_close


class NodeProber:
    """Probes one node; keeps its connection between probes and reconnects with backoff."""

    def __init__(
        self,
        node: NodeName,
        host: str,
        port: int,
        *,
        user: str,
        password: str,
        settings: ProbeSettings,
        book: AddressBook | None = None,
        clock: Callable[[], float] = boottime,
        boots: BootTracker | None = None,
    ) -> None:
        self.node, self.host, self.port = node, host, port
        self._book = book
        self._user, self._password = user, password
        self._s = settings
        self._clock = clock
        self._conn: Any = None  # an asyncmy connection
        self._failures = 0
        self._next_dial = 0.0
        self._failing_since = 0.0
        self._last: NodeObservation | None = None
        self._last_key: tuple[Any, ...] | None = None
        self._boots = boots or BootTracker()  # shared with the admin (Daemon.from_config)
        self._answered = False  # the open connection has answered a probe (no restart since)
        self._inflight: asyncio.Task[NodeObservation] | None = None  # a failing node's probe, across rounds
        self.on_lost: Callable[[NodeName], None] | None = None  # a writable node's server closed the connection
        self._watched: Any = None  # the connection whose close is being listened for (observe.watch)

    async def _dial(self) -> Any:
        return await asyncmy.connect(
            host=self.host,
            port=self.port,
            user=self._user,
            password=self._password,
            connect_timeout=self._s.connect_timeout_s,
            autocommit=True,
            client_flag=ASYNCMY_CLIENT.MULTI_STATEMENTS,
        )

    def _discard(self) -> None:
        if self._conn is not None:
            self._conn.close()  # closes the socket without a round trip: safe on a wedged link
            self._conn = None
            self._answered = False

    async def probe(self) -> NodeObservation:
        """One observation. Never raises: failures come back as an unreachable observation.

        A node that failed its last probe does not hold the round up: its probe runs on with its
        full timeouts, and a round that it has not answered within ``failing_hold_s`` sees it as
        still not answering. So a silent IDC costs each round ``failing_hold_s``, not the probe
        timeout, and verdicts move at the round rate. An answer to a probe sent in an earlier round is not
        used as this round's reading (the state it read may be older than the round): the node
        is read again at once, on the connection that just answered."""
        if self._inflight is None and (self._last is None or self._last.reachable):
            return await self._probe_once()
        sent_now = self._inflight is None
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._probe_once())
        task = self._inflight
        hold = min(self._s.failing_hold_s, self._s.interval_s)
        done, _ = await asyncio.wait({task}, timeout=hold)
        if not done:
            waited = self._clock() - self._failing_since
            last = self._last
            # No news within the hold: the node fails as it last did (a refusal that takes longer
            # than the hold to arrive must not flip the verdict's window to the timeout one).
            kind = last.failure if last is not None and not last.reachable and last.failure else ProbeFailure.TIMEOUT
            return NodeObservation(
                node=self.node,
                reachable=False,
                failure=kind,
                error=f"no answer (failing for {waited:.1f} s)",
                latency_ms=hold * 1000,
            )
        self._inflight = None
        obs = task.result()
        if obs.reachable and not sent_now:
            return await self.probe()
        return obs

    async def _probe_once(self) -> NodeObservation:
        now = self._clock()
        if self._conn is None and now < self._next_dial and self._last is not None and not self._last.reachable:
            return self._last  # backing off: repeat the last failure rather than dial again
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(self._s.connect_timeout_s + self._s.query_timeout_s):
                if self._conn is None:
                    self._conn = await self._dial()
                conn = self._conn
                raw = await read_raw(conn)
                after = self._clock()
                await learn_source(raw, self._book)
            # The server may have closed ``conn`` while this probe awaited (``_closed`` discarded
            # it): then the next probe dials a maybe-restarted server, which must be judged as a
            # new connection, never as the one that already answered (the restart would go unseen).
            kept = self._conn is conn
            obs = self._observation(raw, now, after, same_connection=self._answered and kept)
            self._answered = kept
            self._failures = 0
            if self.on_lost is not None and kept:
                if obs.writable and self._watched is not conn:
                    self._watched = conn
                    on_close(conn, lambda: self._closed(conn))
                elif not obs.writable and self._watched is conn:
                    self._watched = None  # demoted (a switch): its close is no writable node's loss
        except (Exception, TimeoutError) as e:
            self._discard()
            kind, msg = classify(e)
            self._failures += 1
            if self._failures == 1:
                self._failing_since = now
            if now - self._failing_since < self._s.fresh_window_s:
                # While a failure may still be confirmed or cleared, every round dials afresh: a
                # repeated old failure must not stretch a blip into a confirmed death.
                self._next_dial = now
            else:
                base = self._s.interval_s if kind == ProbeFailure.REFUSED else self._s.interval_s * 2
                self._next_dial = now + min(self._s.backoff_max_s, base * 2 ** (self._failures - 1))
            obs = NodeObservation(
                node=self.node,
                reachable=False,
                failure=kind,
                error=msg,
                latency_ms=(time.perf_counter() - t0) * 1000,
            )
        self._last = obs
        return obs

    def _closed(self, conn: Any) -> None:
        watched = self._watched is conn
        if watched:
            self._watched = None
        # The server closed the connection of a node last seen writable (not a discard of ours).
        if watched and self._conn is conn and self.on_lost is not None:
            self._discard()  # the next probe dials: a dead server refuses at once
            self.on_lost(self.node)

    def _observation(
        self, raw: Raw, now: float, after: float | None = None, *, same_connection: bool = False
    ) -> NodeObservation:
        """The observation of an answer: the very last one when nothing but Uptime changed (so an
        idle node costs no parsing, and equal observations are one object), else a new one. The
        boot time is published once per boot (``observe.boots``): ``now`` and ``after`` are the
        probe's start and the answer's arrival, ``same_connection`` whether the connection has
        answered before (then the server cannot have restarted)."""
        uptime = int(raw[1].get("Uptime", 0))
        booted = self._boots.judge(
            self.node, uptime, now, now if after is None else after, same_connection=same_connection
        )
        restarted = self._last is None or not self._last.reachable or booted != self._last.booted_at
        key = unchanged_key(raw, self._book)
        last = self._last
        if not restarted and last is not None and last.reachable and key == self._last_key:
            return last
        self._last_key = key
        variables, status, slave, ms, finalizing = raw
        return parse_observation(
            self.node,
            variables,
            status,
            slave,
            latency_ms=ms,
            book=self._book,
            booted_at=booted,
            finalizing_dump=finalizing,
        )

    async def close(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
            self._inflight = None
        self._discard()
