"""Running an operator's command: argv (no shell), bounded, its output kept, never raising."""

from __future__ import annotations

import asyncio
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
