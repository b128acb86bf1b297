"""Running an operator's command: argv (no shell), bounded, its output kept, never raising."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from idc_ha.act.commands import SubprocessRunner
from idc_ha.model.command import FENCE_FIELDS, expand, unknown_placeholders


async def test_a_command_that_succeeds_and_one_that_fails() -> None:
    r = SubprocessRunner()
    ok = await r.run([sys.executable, "-c", "print('restarted')"], timeout=10)
    assert ok.ok and ok.rc == 0 and "restarted" in ok.output
    bad = await r.run([sys.executable, "-c", "import sys; print('no such node'); sys.exit(4)"], timeout=10)
    assert not bad.ok and bad.rc == 4 and bad.summary().startswith("exit 4") and "no such node" in bad.summary()


async def test_a_command_past_its_timeout_is_killed_with_what_it_started() -> None:
    r = SubprocessRunner()
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    )
    async with asyncio.timeout(10):
        res = await r.run([sys.executable, "-c", code], timeout=0.5)
    assert res.rc is None and "timed out after 0.5 s" in res.error and not res.ok


async def test_a_missing_program_is_a_result_not_an_exception() -> None:
    res = await SubprocessRunner().run(["/nonexistent/fence", "x"], timeout=5)
    assert res.rc is None and "cannot start '/nonexistent/fence'" in res.error


def test_placeholders_are_checked_and_expanded_word_by_word() -> None:
    argv = ["fence", "--node={node}", "{address}:{port}", "{{literal}}"]
    assert unknown_placeholders(argv, FENCE_FIELDS) == []
    assert expand(argv, {"node": "a b; rm -rf /", "address": "10.0.0.1", "port": 3306}) == [
        "fence",
        "--node=a b; rm -rf /",  # one word, never split or interpreted by a shell
        "10.0.0.1:3306",
        "{literal}",
    ]
    assert unknown_placeholders(["{nodes}", "{0}", "{node.x}"], FENCE_FIELDS) == ["{nodes}", "{0}", "{node.x}"]


async def test_the_end_of_a_command_is_its_exit_not_the_close_of_its_output(tmp_path: object) -> None:
    """A command that starts a server in the background (holding its stdout) and exits 0 is done
    at its exit, with its output, and the server it started is left running."""
    code = (
        "import subprocess, sys; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
        "print('started', p.pid, flush=True)"
    )
    async with asyncio.timeout(10):
        res = await SubprocessRunner().run([sys.executable, "-c", code], timeout=5)
    assert res.ok and res.elapsed_s < 5 and res.output.startswith("started"), res
    pid = int(res.output.split()[1])
    os.kill(pid, 0)  # still alive: not killed with a timed-out command
    os.kill(pid, signal.SIGKILL)
