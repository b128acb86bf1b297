"""The policy: which automatic rules are on and the thresholds the decision core uses.

Loaded from a TOML file (``policies/default.toml`` is shipped and documented there); the config's
``policy`` setting names the file. Unknown keys are errors, so a misspelt switch cannot silently
leave a rule on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from idc_ha.errors import ConfigError
from idc_ha.model.config import read_toml
from idc_ha.model.problems import Problem


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Detection(Section):
    confirm_refused_s: float = Field(0.2, ge=0, le=60)
    confirm_other_s: float = Field(2.3, ge=0, le=600)
    min_rounds: int = Field(2, ge=1, le=100)
    idc_down_share: float = Field(1.0, gt=0, le=1)
    city_down_share: float = Field(1.0, gt=0, le=1)


class Proof(Section):
    """How much of its own watching the controller needs before it may promote without a human.

    ``min_watch_s``: the primary must have been watched without a break (no two answers further
    apart than ``max_blind_s``) for at least this long before it was lost.
    ``max_blind_s``: the longest the primary's semi-sync state may go unwatched before its loss
    is corroborated (the controller's failure streak and the acker's lost link both begun). In
    that blind spell semi-sync could have been weakened unseen; past the bound the shard is
    not_proven_safe. It must exceed how long an acker takes to notice a silent primary
    (3 heartbeat periods; ``slave_net_timeout`` without heartbeats): otherwise an IDC
    that goes silent, rather than refusing connections, can never be proven.
    """

    min_watch_s: float = Field(1.0, ge=0, le=600)
    max_blind_s: float = Field(10.0, gt=0, le=600)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lookback_s" in data:
            raise ValueError(
                "lookback_s was removed: the proof now rests on semi-sync counters watched up to the loss; "
                "use min_watch_s (same meaning as a minimum watch) and max_blind_s"
            )
        return data


class Rules(Section):
    auto_idc_failover: bool = True
    auto_node_failover: bool = True
    # Node failover promotes the local candidate (MS) only if it has at most this many
    # transactions left to apply (from its own relay log and from the acker); else the acker.
    node_failover_max_lag_tx: int = Field(10000, ge=0)
    # After a failover this process made, a second automatic one of the same shard within this
    # window needs the (new) primary proven dead by fresh evidence (rules/anti_flap.py).
    anti_flap_s: float = Field(600.0, ge=0, le=86400)
    # The MariaDB 10.11 ack-receiver deadlock (decide/wake.py): a binlog dump thread of a primary
    # with no semi-sync client registered has waited this long to finalize its termination ->
    # wake the ack receiver with a semi-sync client that never acks.
    wake_ack_receiver: bool = True
    wake_after_s: float = Field(2.0, ge=1, le=600)
    # IDC-safe again (decide/rearm.py): once a replica in another IDC of the main city is back in
    # the layout and at most rearm_max_lag_s behind, it becomes the acker in place of the one in
    # the primary's own IDC.
    rearm_acker: bool = True
    rearm_max_lag_s: float = Field(5.0, ge=0, le=3600)


class Execution(Section):
    relay_apply_timeout_s: float = Field(120.0, gt=0)
    semisync_verify_timeout_s: float = Field(10.0, gt=0)
    step_timeout_s: float = Field(5.0, gt=0)
    fence_redial_s: float = Field(0.3, gt=0, le=10)


class Fencing(Section):
    """Getting through a blocked fence (docs/fencing.md). A returning old primary, out of the
    layout, whose ``SET GLOBAL read_only=ON`` still waits after ``blocked_after_s`` (behind a
    commit waiting for an ack that cannot come) is fenced by its machine's ``fence_command``,
    which runs for at most ``command_timeout_s`` and not again within ``command_retry_s``.
    With no command (or after one failed), ``kill_waiters`` allows KILL of the waiting
    connections: the fence then goes through, but the killed commits stay in that node's binlog,
    so it must be rebuilt. With neither, ``fence_blocked`` stays critical and names what to run.
    """

    blocked_after_s: float = Field(2.0, gt=0, le=600)
    command_timeout_s: float = Field(60.0, gt=0, le=3600)
    command_retry_s: float = Field(30.0, ge=0, le=86400)
    kill_waiters: bool = False


class Alerts(Section):
    repeat_s: float = Field(60.0, ge=1)
    stuck_commit_s: float = Field(5.0, gt=0, le=3600)


class Policy(Section):
    detection: Detection = Detection()
    proof: Proof = Proof()
    rules: Rules = Rules()
    execution: Execution = Execution()
    fencing: Fencing = Fencing()
    alerts: Alerts = Alerts()


def load_policy(path: Path) -> Policy:
    """Read a policy file. Raises ConfigError naming each bad field and the fix."""
    raw = read_toml(path, field="policy", what="a policy TOML file (see policies/default.toml)")
    try:
        return Policy(**raw)
    except ValidationError as e:
        raise ConfigError(
            [
                Problem(
                    field=f"policy {'.'.join(str(p) for p in err['loc'])}",
                    message=err["msg"],
                    fix="see policies/default.toml for every setting and its range",
                )
                for err in e.errors()
            ]
        ) from e
