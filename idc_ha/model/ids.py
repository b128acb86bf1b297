"""Names and closed vocabularies shared by every room.

The role, phase and sync-state names are the ones in docs/domain.md; config files, code, status
output and alerts all use exactly these strings.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NewType

CityName = NewType("CityName", str)
IdcName = NewType("IdcName", str)
MachineName = NewType("MachineName", str)
NodeName = NewType("NodeName", str)
ShardName = NewType("ShardName", str)


class IdcRole(StrEnum):
    """What an IDC is for in the home layout."""

    PRIMARY = "primary"
    STANDBY = "standby"  # the same-city standby IDC: target of automatic IDC failover
    BACKUP_CITY = "backup_city"  # in another city: only ever promoted by hand


class NodeRole(StrEnum):
    """A node's home role inside its shard (see the table in docs/domain.md)."""

    PRIMARY = "primary"  # M
    LOCAL_CANDIDATE = "local_candidate"  # MS: primary IDC, another machine, never acks
    ACKER = "acker"  # Sx: same-city standby IDC, the only semi-sync acker
    CASCADE = "cascade"  # replica of Sx; becomes the acker after an IDC failover
    REMOTE = "remote"  # backup city, replica of Sx, async


class SyncState(StrEnum):
    """How safe a shard's acknowledged commits are, as last proven by the controller.

    IDC_SAFE: every possible acker is in the standby IDC, semi-sync cannot time out, nothing went
    through without an ack -> node- and IDC-level automatic promotion allowed.
    NODE_SAFE: the acker sits in the primary's own IDC -> automatic promotion of that acker only.
    ASYNC: a commit went through without an ack (or semi-sync is off) -> no automatic promotion.
    UNKNOWN: not proven either way (new store, unreachable primary) -> no automatic promotion.
    """

    IDC_SAFE = "IDC_SAFE"
    NODE_SAFE = "NODE_SAFE"
    ASYNC = "ASYNC"
    UNKNOWN = "UNKNOWN"


# The largest value rpl_semi_sync_master_timeout takes: a timeout that can never expire.
SEMISYNC_TIMEOUT_NEVER = 18446744073709551615
