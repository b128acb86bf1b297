"""The RPO=0 proof for an automatic IDC failover of one shard.

A shard may be moved to its acker without a human only when all of these hold:

1. its last durable sync state is IDC_SAFE: semi-sync was in force with the recorded acker as the
   only possible acker, and ``Rpl_semi_sync_master_no_tx`` and ``Rpl_semi_sync_master_no_times``
   stayed at the baseline in every answer watched (``syncstate``). So every commit acknowledged to
   a client was acknowledged by the acker, and a commit the acker never received (one still
   waiting for its ack when the link or the primary went) was never acknowledged: it does not
   block the promotion;
2. the candidate is the one recorded acker, in another IDC of the same city;
3. the candidate is reachable, replicates from the recorded primary, no longer receives from it
   (its IO thread is not connected, or is but has received nothing, not even a heartbeat, for
   several heartbeat periods: ``contact``), and its SQL thread has no error;
4. this controller watched the primary (``Contact``) without a break for ``min_watch_s``, and the
   primary's blind spell (last answer -> loss corroborated by the acker's lost link, seen
   without a longer gap than ``ACKER_GAP_S``) is at most ``max_blind_s``: semi-sync could not
   have been weakened unseen for longer;
5. the candidate has not restarted, nor gone back in what it received, since that last answer
   (a restart may discard its relay log);
6. every reachable node that stays in the layout (those replicating from the candidate) holds
   nothing the candidate lacks.

Anything else: no promotion for that shard, and an alert saying which condition failed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from idc_ha.decide.contact import Contact
from idc_ha.model.ids import NodeName, SyncState
from idc_ha.model.observation import Snapshot
from idc_ha.model.policy import Proof as ProofPolicy
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology


class Proof(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    candidate: NodeName | None
    reason: str


def prove_idc_failover(
    rec: ShardRecord, snap: Snapshot, t: Topology, contact: Contact | None, *, policy: ProofPolicy
) -> Proof:
    def no(why: str, cand: NodeName | None = None) -> Proof:
        return Proof(ok=False, candidate=cand, reason=why)

    if rec.sync != SyncState.IDC_SAFE:
        return no(f"last durable sync state is {rec.sync}, not IDC_SAFE ({rec.reason})")
    if len(rec.ackers) != 1:
        return no(f"{len(rec.ackers)} ackers are recorded; the proof needs exactly one")
    cand = rec.ackers[0]
    if t.idc_of(cand) == t.idc_of(rec.primary):
        return no(f"the acker {cand} is in the primary's own IDC", cand)
    if t.city_of(cand) != t.city_of(rec.primary):
        return no(f"the acker {cand} is in another city: cross-city promotion is manual (promote-city)", cand)
    o = snap.nodes.get(cand)
    if o is None or not o.reachable:
        return no(f"the acker {cand} is unreachable ({o.error if o else 'not probed'})", cand)
    if o.replica is None or o.source != rec.primary:
        return no(f"the acker {cand} does not replicate from the recorded primary {rec.primary}", cand)
    if o.replica.last_sql_errno:
        return no(
            f"the acker {cand}'s SQL thread stopped with error {o.replica.last_sql_errno}: "
            f"{o.replica.last_sql_error[:120]}",
            cand,
        )
    if contact is None or contact.primary != rec.primary or contact.acker != cand:
        return no(
            f"this controller has not watched {rec.primary} answer since it started: nothing it saw "
            f"proves {cand} complete",
            cand,
        )
    watched = contact.seen_at - contact.watched_since
    if watched < policy.min_watch_s:
        return no(
            f"{rec.primary} was watched without a break for {watched:.1f} s before it was lost, "
            f"less than proof.min_watch_s ({policy.min_watch_s} s)",
            cand,
        )
    if o.replica.io_connected and contact.acker_cut_since is None:
        return no(f"the acker {cand} is still connected to {rec.primary}: it does not see the primary gone", cand)
    blind = contact.blind_s()
    if blind is None:
        return no(f"the loss of {rec.primary} is not corroborated by {cand} yet", cand)
    if blind > policy.max_blind_s:
        return no(
            f"{rec.primary}'s semi-sync state went unwatched for {blind:.1f} s before {cand} confirmed the loss "
            f"(proof.max_blind_s is {policy.max_blind_s} s): semi-sync may have been weakened unseen and "
            "commits acknowledged without the acker",
            cand,
        )
    if contact.acker_seen_at is None:
        return no(f"the acker {cand} was never seen while this controller watched {rec.primary}", cand)
    # Boot times are held per boot by the prober, on the controller's monotonic clock: any change
    # is a restart, and a step of the wall clock (NTP, a resumed VM) is none.
    if o.booted_at != contact.acker_booted_at:
        return no(f"the acker {cand} restarted after {rec.primary} was last seen: its relay log may be gone", cand)
    received = o.received()
    if not received.contains(contact.acker_received):
        return no(
            f"the acker {cand} went back from {contact.acker_received} to {received}: its relay log was lost", cand
        )
    for n in t.nodes_by_shard[rec.shard]:
        r = snap.nodes.get(n.name)
        if r is None or n.name == cand or r.source != cand:
            continue
        if not received.contains(r.gtid_current_pos):
            return no(
                f"{n.name} holds {r.gtid_current_pos} which the acker {cand} ({received}) lacks: errant transactions",
                cand,
            )
    return Proof(
        ok=True,
        candidate=cand,
        reason=f"IDC_SAFE, watched {watched:.1f} s with {blind:.1f} s blind, and the acker {cand} "
        "is reachable and holds every acknowledged commit",
    )
