"""Plans are data: ordered, frozen steps, each with a one-line reason. Tests compare them with ==.

An IDC failover of one shard is, in order (see docs/failover.md for why each step is where it is):

1. ``Fence``                 old primary read_only=ON where reachable; else fence on return
2. ``StopReceiving``         the acker's IO thread stops: what it received is now fixed
3. ``WaitRelayApplied``      its SQL thread applies the whole relay log (never restart IO before)
4. ``RecordPromotionPoint``  its position is journaled before anything is reset
5. ``Detach``                STOP SLAVE; RESET SLAVE ALL on the acker
6. ``EnableMasterSemisync``  AFTER_SYNC, a timeout that never expires, on the new primary
7. ``ArmAcker``              the cascade acks: slave semi-sync on, IO thread reconnected
8. ``VerifySemisync``        both ends confirm semi-sync before anything opens
9. ``CommitLayout``          new epoch, NODE_SAFE, ackers={cascade}, written durably
10. ``OpenWrites``           read_only=OFF on the new primary
11. ``PublishRouting``       retained routing message with the new epoch

A node failover onto the local candidate (``plans.node_failover``) fixes and applies the acker's
relay log, then the candidate's, catches the candidate up from the acker (``CatchUp``), promotes
it and repoints the acker to it (``ArmAcker``) and any other replica (``Repoint``).

Every step is idempotent; the executor may run a plan again from the top after a crash.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from idc_ha.decide.contact import Contact
from idc_ha.decide.memory import Memory
from idc_ha.decide.verdicts import Verdicts
from idc_ha.model.alert import Alert
from idc_ha.model.gtid import GtidPos
from idc_ha.model.ids import NodeName, ShardName
from idc_ha.model.state import ShardRecord


class Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str


class Fence(Step):
    """Make ``node`` read-only, or hand it to the Fencer (fence on return) durably. ``dial`` False:
    the node was seen unreachable when the plan was made (the dead old primary), so it is handed
    over at once: no promotion step waits on a dead node's connect timeout."""

    kind: Literal["fence"] = "fence"
    node: NodeName
    dial: bool = True


class StopReceiving(Step):
    kind: Literal["stop_receiving"] = "stop_receiving"
    node: NodeName


class WaitRelayApplied(Step):
    kind: Literal["wait_relay_applied"] = "wait_relay_applied"
    node: NodeName


class RecordPromotionPoint(Step):
    kind: Literal["record_promotion_point"] = "record_promotion_point"
    node: NodeName


class Detach(Step):
    kind: Literal["detach"] = "detach"
    node: NodeName


class EnableMasterSemisync(Step):
    kind: Literal["enable_master_semisync"] = "enable_master_semisync"
    node: NodeName


class ArmAcker(Step):
    kind: Literal["arm_acker"] = "arm_acker"
    node: NodeName
    source: NodeName


class WakeAckReceiver(Step):
    """Attach a semi-sync client that never acks to ``node`` (a primary) and hold it until the
    ``acker`` has registered: wakes the deadlocked ack receiver (decide/wake.py)."""

    kind: Literal["wake_ack_receiver"] = "wake_ack_receiver"
    node: NodeName
    acker: NodeName


class VerifySemisync(Step):
    kind: Literal["verify_semisync"] = "verify_semisync"
    primary: NodeName
    ackers: tuple[NodeName, ...]


class CommitLayout(Step):
    kind: Literal["commit_layout"] = "commit_layout"
    primary: NodeName
    ackers: tuple[NodeName, ...]


class OpenWrites(Step):
    kind: Literal["open_writes"] = "open_writes"
    node: NodeName


class PublishRouting(Step):
    kind: Literal["publish_routing"] = "publish_routing"
    node: NodeName


class CatchUp(Step):
    """Node failover: the local candidate comes to hold everything ``source`` (the acker, whose IO
    thread is stopped) holds, replicating from it if it is behind; then stops replicating."""

    kind: Literal["catch_up"] = "catch_up"
    node: NodeName
    source: NodeName


class Repoint(Step):
    """A replica of the old primary that stays in the layout (not an acker) replicates from the
    new primary; its relay log was applied first (``WaitRelayApplied``)."""

    kind: Literal["repoint"] = "repoint"
    node: NodeName
    source: NodeName


class StartReplica(Step):
    """Start a replica a restart left stopped (``skip-slave-start``): relay log first, then both
    threads in GTID mode on ``source``. A reconcile step, never part of a failover plan."""

    kind: Literal["start_replica"] = "start_replica"
    node: NodeName
    source: NodeName


class Rejoin(Step):
    """A returning node out of the layout, fenced and holding nothing past ``point`` (the promotion
    point of the failover that put it out), becomes a replica of ``source`` (the primary), acking
    off. A reconcile step: checked again after its replication is stopped, recorded in the layout
    before it starts replicating (whatever it then applies lies past the point)."""

    kind: Literal["rejoin"] = "rejoin"
    node: NodeName
    source: NodeName
    point: GtidPos
    # Past the point only by what it replicated from this node of the layout (decide/rejoin.py,
    # ``through_layout``): then it must hold nothing the primary lacks instead.
    via: NodeName | None = None


class Rearm(Step):
    """IDC-safe again (``decide/rearm.py``): ``node``, a caught-up replica of ``source`` (the
    primary) in another IDC of its city, becomes the only acker in place of ``old`` (ackers in the
    primary's own IDC). The record (epoch+1, sync UNKNOWN: the sync state machine proves
    IDC_SAFE) is written before anything changes. A reconcile step."""

    kind: Literal["rearm"] = "rearm"
    node: NodeName
    source: NodeName
    old: tuple[NodeName, ...]


class Rewire(Step):
    """A replica of the primary moves behind ``source`` (the acker, or the node about to become
    it): it stops, waits until ``source`` holds all it applied, replicates from ``source``, and
    the record says so before it starts. A reconcile step."""

    kind: Literal["rewire"] = "rewire"
    node: NodeName
    source: NodeName


class Disarm(Step):
    """A replica that is not a recorded acker has semi-sync slave on: switched off (its IO thread
    reconnects as an async replica). Only while the recorded acker acks, so no commit is held."""

    kind: Literal["disarm"] = "disarm"
    node: NodeName


AnyStep = (
    Fence
    | StopReceiving
    | WaitRelayApplied
    | RecordPromotionPoint
    | Detach
    | EnableMasterSemisync
    | ArmAcker
    | VerifySemisync
    | CommitLayout
    | OpenWrites
    | PublishRouting
    | CatchUp
    | Repoint
    | StartReplica
    | WakeAckReceiver
    | Rejoin
    | Rearm
    | Rewire
    | Disarm
)


class ShardPlan(BaseModel):
    """The steps of one operation on one shard; ``op_id`` ties them to the record's operation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    shard: ShardName
    op_id: str
    steps: tuple[Annotated[AnyStep, Field(discriminator="kind")], ...]  # by kind: no trying each type
    reason: str


class Decision(BaseModel):
    """Everything one tick decided. The daemon writes ``records`` durably, then sends ``alerts``,
    runs ``plans`` and hands ``reconcile`` steps out (fences to the Fencer, the rest to a task per
    shard); ``reasons`` is one line per shard for the log; ``memory`` goes back into the next
    tick's ``decide``."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    records: dict[ShardName, ShardRecord]  # new or changed records only
    plans: tuple[ShardPlan, ...]
    alerts: tuple[Alert, ...]
    reasons: dict[ShardName, str]
    verdicts: Verdicts
    reconcile: dict[ShardName, tuple[AnyStep, ...]] = {}  # drift corrections for shards without an operation
    memory: Memory = Memory()

    @property
    def contacts(self) -> dict[ShardName, Contact]:
        return self.memory.contacts
