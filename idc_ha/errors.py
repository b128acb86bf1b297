"""The exception tree. Every error says by its type whether retrying can help.

::

    IdcHaError                    .hint for the operator; .shard/.node/.idc where known
    ├── PermanentError            retrying the same thing cannot help
    │   ├── ConfigError           .problems: every problem in the config, with field and fix
    │   ├── StoreLocked           another daemon holds the store's lock
    │   ├── StoreCorrupt          a store file cannot be read back
    │   └── InvariantViolation    a plan broke a safety invariant (a bug: nothing was executed)
    └── TemporaryError            retrying later may help
        ├── NodeError             a database call failed; driver errors are translated here
        │   └── NodeUnreachable   .cause is "refused", "timeout" or "other"
        └── StepFailed            an executor step could not finish yet (journaled, resumable)

Driver exceptions (pymysql, aiomqtt) never cross a room's edge untranslated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from idc_ha.model.problems import Problem


class IdcHaError(Exception):
    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        shard: str | None = None,
        node: str | None = None,
        idc: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.shard = shard
        self.node = node
        self.idc = idc

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class PermanentError(IdcHaError):
    """Retrying the same call cannot help; a human or a code change must."""


class TemporaryError(IdcHaError):
    """Retrying later may help (the daemon retries a paused operation with backoff)."""


class ConfigError(PermanentError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        first = self.problems[0] if self.problems else None
        super().__init__(
            f"{len(self.problems)} problem(s) in the config"
            + (f"; first: {first.field}: {first.message}" if first else ""),
            hint=first.fix if first else "",
        )


class StoreLocked(PermanentError):
    pass


class StoreCorrupt(PermanentError):
    pass


class StoreFailed(PermanentError):
    """A write could not be made durable (fsync failed). What the OS holds of it is unknown, so
    the daemon stops and its successor reads what the disk has (as databases do since 2018)."""


class InvariantViolation(PermanentError):
    pass


class NodeError(TemporaryError):
    def __init__(self, message: str, *, node: str, code: int | None = None, hint: str = "") -> None:
        super().__init__(message, node=node, hint=hint)
        self.code = code


class NodeUnreachable(NodeError):
    def __init__(self, message: str, *, node: str, cause: str, code: int | None = None) -> None:
        super().__init__(message, node=node, code=code)
        self.cause = cause


class StepFailed(TemporaryError):
    pass
