"""The rules, one module each, run in this order for every adopted shard; the first that answers
wins. A new rule is one module here and one line in ``RULES`` (and a plan builder in ``plans`` if
it starts an operation):

1. ``resume``: an operation in flight is resumed, whatever else is true;
2. ``city_down``: every IDC of the main city failed -> no action (promote-city is a human's);
3. ``anti_flap``: a second failover soon after one needs its primary proven dead afresh;
4. ``idc_failover``: the primary's IDC is down -> move the shard to its acker, RPO=0 proven;
5. ``node_failover``: the primary is dead, its IDC up -> promote the local candidate (or the acker);
6. ``primary_health``: otherwise say why nothing happens (alive, suspect, dead, unreachable).
"""

from __future__ import annotations

from idc_ha.decide.rules import anti_flap, city_down, idc_failover, node_failover, primary_health, resume
from idc_ha.decide.rules.base import Outcome, Rule, ShardView

RULES: tuple[Rule, ...] = (
    resume.rule,
    city_down.rule,
    anti_flap.rule,
    idc_failover.rule,
    node_failover.rule,
    primary_health.rule,
)


def run_rules(view: ShardView) -> Outcome:
    for rule in RULES:
        out = rule(view)
        if out is not None:
            return out
    raise AssertionError("the last rule always answers")


__all__ = ["RULES", "Outcome", "ShardView", "run_rules"]
