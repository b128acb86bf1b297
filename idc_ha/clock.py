"""The controller's clock for decisions and timeouts.

``boottime`` is CLOCK_BOOTTIME: monotonic like CLOCK_MONOTONIC (``time.monotonic``), but it also
counts the time the host spent suspended. CLOCK_MONOTONIC stops then, so a controller resumed
after a suspend would count the spell it saw nothing as watched time, and the RPO=0 proof's
bound on blind spells (``proof.max_blind_s``) would not see it. Every time a decision compares
(snapshot times, boot times, streaks) comes from this one clock; wall time (``time.time``) is
for humans and durable records only.
"""

from __future__ import annotations

import time


def boottime() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)
