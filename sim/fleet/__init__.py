"""The simulated fleet: in-memory MariaDB servers behind the ``Prober`` and ``Admin`` ports, for
unit tests and scale benchmarks (one fake, not two). See ``fleet`` for what it models."""

from sim.fleet.fleet import Fleet
from sim.fleet.node import EVENT_BYTES, FakeNode, Replica, Sent
from sim.fleet.statements import FORBIDDEN, UnknownStatement

__all__ = ["EVENT_BYTES", "FORBIDDEN", "FakeNode", "Fleet", "Replica", "Sent", "UnknownStatement"]
