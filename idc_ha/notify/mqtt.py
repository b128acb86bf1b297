"""One MQTT connection for everything the controller publishes (routing and alerts), QoS 1.

``MqttPublisher.run()`` is a long-lived task: it connects, drains a bounded queue, and on any
broker error reconnects with backoff, re-sending the message that failed. Publishing never blocks
the caller; when the queue is full the oldest message is dropped and counted, because the
controller's loop must never wait on the broker.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
import structlog

from idc_ha.model.config import MqttSettings

log = structlog.get_logger("idc_ha.mqtt")


class MqttPublisher:
    def __init__(self, settings: MqttSettings, *, client_id: str, queue_size: int = 10000) -> None:
        self._s = settings
        self._id = client_id
        self._q: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue(queue_size)
        self.dropped = 0
        self.published = 0
        self.connected = asyncio.Event()

    def publish(self, topic: str, payload: dict[str, Any], *, retain: bool = False) -> None:
        data = json.dumps(payload, default=str, separators=(",", ":")).encode()
        if self._q.full():
            self._q.get_nowait()
            self.dropped += 1
        self._q.put_nowait((topic, data, retain))

    async def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far was handed to the broker (True) or timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._q.join()
            return True
        except TimeoutError:
            return False

    async def run(self) -> None:
        backoff = 0.2
        pending: tuple[str, bytes, bool] | None = None
        while True:
            try:
                async with aiomqtt.Client(
                    self._s.host,
                    self._s.port,
                    identifier=self._id,
                    username=self._s.username,
                    password=self._s.password.get_secret_value() if self._s.password else None,
                    timeout=5,
                    keepalive=10,
                ) as client:
                    self.connected.set()
                    backoff = 0.2
                    log.info("mqtt connected", host=self._s.host, port=self._s.port)
                    while True:
                        if pending is None:
                            pending = await self._q.get()
                        topic, data, retain = pending
                        await client.publish(topic, data, qos=1, retain=retain, timeout=5)
                        pending = None
                        self.published += 1
                        self._q.task_done()
            except aiomqtt.MqttError as e:
                self.connected.clear()
                log.warning("mqtt unavailable; retrying", error=str(e), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
