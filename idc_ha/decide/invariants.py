"""Safety invariants, checked on every decision before anything executes.

A violation is a bug in the decision core. ``decide`` checks each shard's plan with
``check_plan`` and drops a violating plan (with a critical alert) so other shards go on; ``check``
then re-checks the whole decision and raises InvariantViolation, so nothing from a bad tick runs. The invariants:

1. at most one plan per shard, and a plan opens writes on at most one node: its op's target;
2. a new promotion starts only from a last durable state of IDC_SAFE (the RPO=0 proof);
3. no automatic promotion crosses cities;
4. a plan never opens a node while another node of the shard is seen writable, unless it fences
   that node first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from idc_ha.decide.plan import Decision, Fence, OpenWrites, ShardPlan
from idc_ha.errors import InvariantViolation
from idc_ha.model.ids import ShardName, SyncState
from idc_ha.model.observation import Snapshot
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology


def check(
    d: Decision,
    before: Mapping[ShardName, ShardRecord],
    snap: Snapshot,
    t: Topology,
    *,
    plans_checked: bool = False,
) -> None:
    """Raise InvariantViolation if the decision as a whole breaks an invariant. With
    ``plans_checked`` (``decide`` has just run ``check_plan`` on each, against the same records),
    only what spans plans is checked again."""
    counts = Counter(p.shard for p in d.plans)
    for shard, n in counts.items():
        if n > 1:
            raise InvariantViolation(f"{n} plans for shard {shard}", shard=shard)
    if not plans_checked:
        for plan in d.plans:
            check_plan(plan, d.records, before, snap, t)


def check_plan(
    plan: ShardPlan,
    records: Mapping[ShardName, ShardRecord],
    before: Mapping[ShardName, ShardRecord],
    snap: Snapshot,
    t: Topology,
) -> None:
    """Raise InvariantViolation if one shard's plan breaks an invariant."""
    rec = records.get(plan.shard) or before.get(plan.shard)
    if rec is None or rec.op is None or rec.op.id != plan.op_id:
        raise InvariantViolation(f"plan {plan.op_id} has no operation recorded before it runs", shard=plan.shard)
    op = rec.op
    opens = [s for s in plan.steps if isinstance(s, OpenWrites)]
    if len(opens) > 1 or any(s.node != op.target for s in opens):
        raise InvariantViolation(
            f"plan {plan.op_id} opens writes on {[s.node for s in opens]}, not only {op.target}", shard=plan.shard
        )
    if t.city_of(op.target) != t.city_of(op.old_primary):
        raise InvariantViolation(
            f"plan {plan.op_id} promotes across cities ({op.old_primary} -> {op.target})", shard=plan.shard
        )
    prior = before.get(plan.shard)
    is_new = prior is None or prior.op is None
    if is_new and (prior is None or prior.sync != SyncState.IDC_SAFE):
        raise InvariantViolation(
            f"plan {plan.op_id} starts a promotion from sync state {prior.sync if prior else 'none'}, not IDC_SAFE",
            shard=plan.shard,
        )
    if opens:
        fenced_before_open = set()
        for s in plan.steps:
            if isinstance(s, Fence):
                fenced_before_open.add(s.node)
            if isinstance(s, OpenWrites):
                break
        for n in t.nodes_by_shard[plan.shard]:
            o = snap.nodes.get(n.name)
            if o is not None and o.writable and n.name != op.target and n.name not in fenced_before_open:
                raise InvariantViolation(
                    f"plan {plan.op_id} opens {op.target} while {n.name} is writable and not fenced first",
                    shard=plan.shard,
                )
