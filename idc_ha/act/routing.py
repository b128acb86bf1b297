"""Routing publication: a retained ``<prefix>/<cluster>/routing/<shard>`` message per shard.

Payload ``{shard, epoch, node, host, port, idc, reason, ts}``. The epoch only grows; consumers
ignore a message with a lower epoch than one they already hold.
"""

from __future__ import annotations

import time
from typing import Any

from idc_ha.act.routing_table import RoutingTable
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology
from idc_ha.notify.mqtt import MqttPublisher


def routing_payload(rec: ShardRecord, t: Topology, *, reason: str, ts: float) -> dict[str, Any]:
    host, port = t.address_of(rec.primary)
    return {
        "shard": rec.shard,
        "epoch": rec.epoch,
        "node": rec.primary,
        "host": host,
        "port": port,
        "idc": t.idc_of(rec.primary),
        "reason": reason,
        "ts": ts,
    }


class RoutingPublisher:
    """Publishes each shard's routing: the retained MQTT message, and the same facts as a row of
    the meta shard's ``idc_ha.routing`` (``table``, set by the daemon; ``act/routing_table.py``)."""

    def __init__(self, publisher: MqttPublisher | None, t: Topology, *, prefix: str) -> None:
        self._pub, self._t, self._prefix = publisher, t, prefix
        self.table: RoutingTable | None = None

    def topic(self, shard: str) -> str:
        return f"{self._prefix}/{self._t.cluster}/routing/{shard}"

    def publish(self, rec: ShardRecord, *, reason: str) -> None:
        payload = routing_payload(rec, self._t, reason=reason, ts=time.time())
        if self._pub is not None:
            self._pub.publish(self.topic(rec.shard), payload, retain=True)
        if self.table is not None:
            self.table.put(payload)
