"""Alert sinks: deduplication over a fake clock, and the payload published for each alert."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from idc_ha.model.alert import Alert, AlertKind, Severity
from idc_ha.notify.alerts import Deduplicating, MemoryAlertSink, alert_payload


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def alert(kind: AlertKind = AlertKind.IDC_DOWN, *, reason: str = "IDC IDC1 is down", **kw: object) -> Alert:
    fields: dict[str, object] = {"severity": Severity.CRITICAL, "idc": "IDC1", **kw}
    return Alert(kind=kind, reason=reason, **fields)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sink() -> MemoryAlertSink:
    return MemoryAlertSink()


@pytest.fixture
def dedup(clock: FakeClock, sink: MemoryAlertSink) -> Deduplicating:
    return Deduplicating(sink, repeat_s=60.0, clock=clock)


def test_first_alert_goes_through(dedup: Deduplicating, sink: MemoryAlertSink) -> None:
    """The first alert of a condition is forwarded as is."""
    a = alert()
    dedup.emit(a)
    assert sink.alerts == [a]


@pytest.mark.parametrize(
    ("later_s", "forwarded"),
    [(0.0, 1), (59.9, 1), (60.0, 2), (600.0, 2)],
    ids=["same-tick", "just-before-repeat", "at-repeat", "much-later"],
)
def test_a_repeated_condition_is_forwarded_every_repeat_s(
    dedup: Deduplicating, sink: MemoryAlertSink, clock: FakeClock, later_s: float, forwarded: int
) -> None:
    """The same condition seen again is dropped until repeat_s has passed since it was last forwarded."""
    dedup.emit(alert())
    clock.now += later_s
    dedup.emit(alert())
    assert len(sink.alerts) == forwarded


def test_every_tick_gives_one_alert_per_repeat_period(
    dedup: Deduplicating, sink: MemoryAlertSink, clock: FakeClock
) -> None:
    """A condition seen every 0.2 s for 3 minutes is forwarded at 0, 60, 120 and 180 s."""
    for _ in range(901):
        dedup.emit(alert())
        clock.now += 0.2
    assert len(sink.alerts) == 4


def test_the_key_is_kind_severity_shard_node_and_idc(dedup: Deduplicating, sink: MemoryAlertSink) -> None:
    """Alerts differing in kind, severity, shard, node or IDC are separate conditions; reason and epoch are not."""
    dedup.emit(alert())
    dedup.emit(alert(AlertKind.MAIN_CITY_DOWN))
    dedup.emit(alert(shard="shard1"))
    dedup.emit(alert(node="shard1-m"))
    dedup.emit(alert(idc="IDC2"))
    dedup.emit(alert(severity=Severity.WARNING))
    assert len(sink.alerts) == 6
    dedup.emit(alert(reason="IDC IDC1 is down, still"))
    dedup.emit(alert(epoch=7))
    assert len(sink.alerts) == 6


def test_conditions_are_timed_independently(dedup: Deduplicating, sink: MemoryAlertSink, clock: FakeClock) -> None:
    """Each key has its own repeat timer."""
    dedup.emit(alert(shard="a"))
    clock.now += 30
    dedup.emit(alert(shard="b"))
    clock.now += 30
    dedup.emit(alert(shard="a"))
    dedup.emit(alert(shard="b"))
    assert [a.shard for a in sink.alerts] == ["a", "b", "a"]


def test_every_sink_gets_each_forwarded_alert(clock: FakeClock) -> None:
    """Deduplicating fans out to all its sinks, and drops for all of them alike."""
    s1, s2 = MemoryAlertSink(), MemoryAlertSink()
    d = Deduplicating(s1, s2, repeat_s=10.0, clock=clock)
    d.emit(alert())
    d.emit(alert())
    assert len(s1.alerts) == len(s2.alerts) == 1


# -- payload ----------------------------------------------------------------------------------------


def test_payload_fields() -> None:
    """The payload carries every field of the alert as plain JSON values, plus cluster, ts and an id."""
    a = alert(
        AlertKind.NOT_PROVEN_SAFE,
        shard="shard1",
        node="shard1-m",
        epoch=3,
        hint="restore the IDC",
        reason="IDC IDC1 is down but shard1 is not promoted: ASYNC",
    )
    p = alert_payload(a, cluster="prod", ts=12.5)
    assert set(p) == {
        "id",
        "kind",
        "severity",
        "cluster",
        "idc",
        "shard",
        "node",
        "reason",
        "hint",
        "epoch",
        "ts",
    }
    assert {k: v for k, v in p.items() if k != "id"} == {
        "kind": "not_proven_safe",
        "severity": "critical",
        "cluster": "prod",
        "idc": "IDC1",
        "shard": "shard1",
        "node": "shard1-m",
        "reason": "IDC IDC1 is down but shard1 is not promoted: ASYNC",
        "hint": "restore the IDC",
        "epoch": 3,
        "ts": 12.5,
    }
    assert type(p["kind"]) is str and type(p["severity"]) is str


def test_payload_id_is_short_hex_and_stable() -> None:
    """The id is 16 hex digits, the same for the same alert, cluster and time."""
    p = alert_payload(alert(), cluster="prod", ts=1.0)
    assert isinstance(p["id"], str) and len(p["id"]) == 16 and int(p["id"], 16) >= 0
    assert alert_payload(alert(), cluster="prod", ts=1.0)["id"] == p["id"]


@pytest.mark.parametrize(
    "other",
    [
        lambda: alert_payload(alert(), cluster="prod", ts=2.0),
        lambda: alert_payload(alert(), cluster="test", ts=1.0),
        lambda: alert_payload(alert(shard="shard1"), cluster="prod", ts=1.0),
        lambda: alert_payload(alert(AlertKind.PAUSED), cluster="prod", ts=1.0),
    ],
    ids=["other-time", "other-cluster", "other-shard", "other-kind"],
)
def test_payload_id_differs_between_alerts(other: Callable[[], dict[str, object]]) -> None:
    """Different time, cluster, shard or kind give a different id."""
    assert other()["id"] != alert_payload(alert(), cluster="prod", ts=1.0)["id"]


def test_alert_key() -> None:
    """An alert's key is (kind, severity, shard, node, idc): what makes it one ongoing condition."""
    assert alert(shard="s", node="n").key == ("idc_down", "critical", "s", "n", "IDC1")
