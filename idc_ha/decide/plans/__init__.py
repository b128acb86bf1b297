"""One plan builder per kind of operation: an ``Operation`` in, an ordered ``ShardPlan`` out, the
same for a fresh start and for a resume (every step is idempotent)."""

from idc_ha.decide.plans.idc_failover import failover_plan

__all__ = ["failover_plan"]
