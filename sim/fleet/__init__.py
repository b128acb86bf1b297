"""The simulated fleet: in-memory MariaDB servers behind the ``Prober`` and ``Admin`` ports, for
unit tests and scale benchmarks (one fake, not two). See ``fleet`` for what it models."""

from idc_ha.act.routing import RoutingPublisher
from idc_ha.coord.store import FileStore
from idc_ha.daemon import Daemon
from idc_ha.model.config import Config
from idc_ha.model.policy import Policy
from idc_ha.ports import AlertSink
from sim.fleet.commands import FleetRunner
from sim.fleet.fleet import Fleet
from sim.fleet.node import EVENT_BYTES, FakeNode, Replica, Sent
from sim.fleet.statements import FORBIDDEN, UnknownStatement


def daemon_on(fleet: Fleet, config: Config, policy: Policy, alerts: AlertSink) -> Daemon:
    """The real daemon with the fleet as its prober, admin and clock, the file store of
    ``config``, no broker (routing goes nowhere)."""
    return Daemon(
        config,
        policy,
        prober=fleet,
        admin=fleet,
        store=FileStore(config.state_dir),
        alerts=alerts,
        routing=RoutingPublisher(None, config.topology, prefix="idc-ha"),
        clock=fleet,
        runner=FleetRunner(fleet),
    )


__all__ = [
    "EVENT_BYTES",
    "FORBIDDEN",
    "FakeNode",
    "Fleet",
    "FleetRunner",
    "Replica",
    "Sent",
    "UnknownStatement",
    "daemon_on",
]
