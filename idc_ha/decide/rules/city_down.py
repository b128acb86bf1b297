"""Every IDC of the main city has failed: no automatic action anywhere. A cross-city promotion is
a human's call (``promote-city``, stating the possible loss); the alert is raised once per tick
by ``decide``, not per shard."""

from __future__ import annotations

from idc_ha.decide.rules.base import Outcome, ShardView


def rule(v: ShardView) -> Outcome | None:
    if not v.city_failed:
        return None
    return Outcome(reason=f"no action: main city {v.main_city} down; waiting for a human (promote-city)")
