"""Alert sinks: where alerts go. The decision core and the executor produce ``Alert`` values; a
sink delivers them. ``Deduplicating`` turns a condition seen on every tick into one alert, repeated
every ``repeat_s`` while it lasts. A fuller alert system (ack, escalation) plugs in here later.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from idc_ha.model.alert import Alert
from idc_ha.notify.mqtt import MqttPublisher

log = structlog.get_logger("idc_ha.alerts")


class AlertSink(Protocol):
    def emit(self, alert: Alert) -> None: ...


def alert_payload(alert: Alert, *, cluster: str, ts: float) -> dict[str, object]:
    raw = f"{cluster}|{alert.kind}|{alert.shard}|{alert.node}|{alert.idc}|{ts}"
    return {
        "id": hashlib.sha1(raw.encode()).hexdigest()[:16],
        "kind": str(alert.kind),
        "severity": str(alert.severity),
        "cluster": cluster,
        "idc": alert.idc,
        "shard": alert.shard,
        "node": alert.node,
        "reason": alert.reason,
        "hint": alert.hint,
        "epoch": alert.epoch,
        "ts": ts,
    }


class MqttAlertSink:
    """Publishes to ``<prefix>/<cluster>/alerts/<severity>/<kind>`` at QoS 1."""

    def __init__(self, publisher: MqttPublisher, *, prefix: str, cluster: str) -> None:
        self._pub, self._prefix, self._cluster = publisher, prefix, cluster

    def emit(self, alert: Alert) -> None:
        topic = f"{self._prefix}/{self._cluster}/alerts/{alert.severity}/{alert.kind}"
        self._pub.publish(topic, alert_payload(alert, cluster=self._cluster, ts=time.time()))


class LogAlertSink:
    def emit(self, alert: Alert) -> None:
        log.warning(
            "alert",
            kind=str(alert.kind),
            severity=str(alert.severity),
            shard=alert.shard,
            node=alert.node,
            idc=alert.idc,
            reason=alert.reason,
            hint=alert.hint,
        )


class MemoryAlertSink:
    """Keeps alerts in a list: for tests and for `status`."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def emit(self, alert: Alert) -> None:
        self.alerts.append(alert)


class Deduplicating:
    """Forwards an alert the first time its key is seen and again every ``repeat_s`` after."""

    def __init__(self, *sinks: AlertSink, repeat_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._sinks = sinks
        self._repeat = repeat_s
        self._clock = clock
        self._last: dict[tuple[str, str, str | None, str | None, str | None], float] = {}

    def emit(self, alert: Alert) -> None:
        now = self._clock()
        last = self._last.get(alert.key)
        if last is not None and now - last < self._repeat:
            return
        self._last[alert.key] = now
        if len(self._last) > 10000:  # forget conditions not seen for a while: bounded memory
            self._last = {k: t for k, t in self._last.items() if now - t < self._repeat}
        for s in self._sinks:
            s.emit(alert)
