"""Running an operator's command (a fence command; later, hooks): argv, no shell, bounded.

The command runs in its own session so that a timeout kills it and everything it started; its
output (stdout and stderr together) is kept, the tail of it, for the journal and the alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

OUTPUT_KEEP = 2000  # characters of output kept (the tail: the end says why it failed)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    rc: int | None  # None: it could not start, or was killed at its timeout
    elapsed_s: float
    output: str
    error: str = ""  # why it did not finish: "timed out after 60 s", "not found: ..."

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def summary(self) -> str:
        if self.ok:
            return f"exit 0 in {self.elapsed_s:.1f} s"
        why = self.error or f"exit {self.rc}"
        last = self.output.strip().splitlines()[-1:] or [""]
        return f"{why} after {self.elapsed_s:.1f} s{': ' + last[0][:200] if last[0] else ''}"


class SubprocessRunner:
    """The real ``CommandRunner``: ``asyncio`` subprocesses."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env) if env is not None else None

    async def run(self, argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> CommandResult:
        """``env``: the whole environment for this run (default: the runner's, else ours)."""
        t0 = time.monotonic()
        args = tuple(argv)
        # Output to a file, not a pipe: a command may leave a child holding its stdout (a server
        # it started), and the command's end is its exit, not the pipe's close.
        with tempfile.TemporaryFile() as out:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *args,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                    env=dict(env) if env is not None else self.env,
                )
            except OSError as e:
                return CommandResult(args, None, time.monotonic() - t0, "", f"cannot start {args[0]!r}: {e.strerror}")
            error = ""
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except (TimeoutError, asyncio.CancelledError) as e:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # it and everything it started
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 5)
                if isinstance(e, asyncio.CancelledError):
                    raise
                error = f"timed out after {timeout:g} s (killed)"
            out.seek(max(0, out.seek(0, os.SEEK_END) - OUTPUT_KEEP * 4))
            text = out.read().decode(errors="replace")[-OUTPUT_KEEP:]
        return CommandResult(args, None if error else proc.returncode, time.monotonic() - t0, text, error)
