"""The RPO=0 proof for an automatic IDC failover of one shard.

A shard may be moved to its acker without a human only when all of these hold:

1. its last durable sync state is IDC_SAFE: every acknowledged commit was acked by the acker,
   and semi-sync could not have fallen back unseen;
2. the candidate is the one recorded acker, in another IDC of the same city;
3. the candidate is reachable, replicates from the recorded primary, has itself lost its link to
   it (its IO thread is not connected), and its SQL thread has no error;
4. this controller watched the primary answer (``Contact``) and the candidate has received
   everything the primary had written ``lookback_s`` before it was last seen (anything older had
   time to reach a connected acker; a gap means a commit went through without its ack);
5. the candidate has not restarted, nor gone back in what it received, since that last contact
   (a restart with its source dead discards its relay log);
6. every reachable node that stays in the layout (those replicating from the candidate) holds
   nothing the candidate lacks.

Anything else: no promotion for that shard, and an alert saying which condition failed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from idc_ha.decide.contact import Contact
from idc_ha.model.ids import NodeName, SyncState
from idc_ha.model.observation import Snapshot
from idc_ha.model.state import ShardRecord
from idc_ha.model.topology import Topology


class Proof(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    candidate: NodeName | None
    reason: str


BOOT_TOLERANCE_S = 5.0


def prove_idc_failover(
    rec: ShardRecord, snap: Snapshot, t: Topology, contact: Contact | None, *, lookback_s: float
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
    host, port = t.address_of(rec.primary)
    if o.replica is None or (o.replica.source_host, o.replica.source_port) != (host, port):
        return no(f"the acker {cand} does not replicate from the recorded primary {rec.primary}", cand)
    if o.replica.io_connected:
        return no(f"the acker {cand} is still connected to {rec.primary}: it does not see the primary gone", cand)
    if o.replica.last_sql_errno:
        return no(
            f"the acker {cand}'s SQL thread stopped with error {o.replica.last_sql_errno}: "
            f"{o.replica.last_sql_error[:120]}",
            cand,
        )
    received = o.received()
    if contact is None or contact.primary != rec.primary or contact.acker != cand:
        return no(
            f"this controller has not watched {rec.primary} answer since it started: nothing it saw "
            f"proves {cand} complete",
            cand,
        )
    settled = contact.settled(lookback_s)
    if settled is None:
        return no(f"{rec.primary} was watched for less than {lookback_s} s before it was lost", cand)
    if not received.contains(settled):
        return no(
            f"the acker {cand} ({received}) lacks what {rec.primary} had written {lookback_s} s before it "
            f"was lost ({settled}): a commit may have gone through without its ack",
            cand,
        )
    if contact.acker_boot_wall is None:
        return no(f"the acker {cand} was not seen when {rec.primary} was last seen", cand)
    if abs((snap.wall - o.uptime_s) - contact.acker_boot_wall) > BOOT_TOLERANCE_S:
        return no(f"the acker {cand} restarted after {rec.primary} was last seen: its relay log may be gone", cand)
    if not received.contains(contact.acker_received):
        return no(
            f"the acker {cand} went back from {contact.acker_received} to {received}: its relay log was lost", cand
        )
    chost, cport = t.address_of(cand)
    for name in t.nodes_by_shard[rec.shard]:
        r = snap.nodes.get(name.name)
        if r is None or not r.reachable or r.replica is None or name.name == cand:
            continue
        if (r.replica.source_host, r.replica.source_port) == (chost, cport) and not received.contains(
            r.gtid_current_pos
        ):
            return no(
                f"{name.name} holds {r.gtid_current_pos} which the acker {cand} ({received}) lacks: "
                "errant transactions",
                cand,
            )
    return Proof(
        ok=True, candidate=cand, reason=f"IDC_SAFE and the acker {cand} is reachable and holds all acked commits"
    )
