"""The ``idc-ha`` command.

    idc-ha check  --config FILE [--live] [--json]   validate the config (and reality, with --live)
    idc-ha status --config FILE [--json]            one probe round, what the store holds
    idc-ha run    --config FILE                     the daemon
    idc-ha pause  --config FILE [--shard S] [--json]
    idc-ha resume --config FILE [--shard S] [--json]

Exit codes: 0 fine, 1 problems found or the command failed, 2 bad usage or config.
Every error names what is wrong and what to do; nothing is changed when input is bad.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from idc_ha.errors import ConfigError, IdcHaError
from idc_ha.model.config import Config, config_problems, load_config
from idc_ha.model.policy import Policy, load_policy


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, default=str, indent=1))
    else:
        print(text)


def _fail(args: argparse.Namespace, e: IdcHaError, code: int = 1) -> int:
    problems = [p.model_dump() for p in getattr(e, "problems", [])]
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": e.message, "hint": e.hint, "problems": problems}, indent=1))
    else:
        print(f"idc-ha {args.cmd}: {e.message}", file=sys.stderr)
        for p in getattr(e, "problems", []):
            print(f"  {p}", file=sys.stderr)
        if e.hint and not problems:
            print(f"  hint: {e.hint}", file=sys.stderr)
    return code


def _load(args: argparse.Namespace, *, allow_problems: bool = False) -> tuple[Config, Policy]:
    cfg = load_config(args.config, allow_problems=allow_problems)
    return cfg, load_policy(cfg.policy)


async def _probe_once(cfg: Config) -> Any:
    from idc_ha.observe.snapshot import Observer

    ob = Observer(cfg)
    try:
        return await ob.round()
    finally:
        await ob.close()


def cmd_check(args: argparse.Namespace) -> int:
    from idc_ha.model.problems import Problem

    try:
        cfg = load_config(args.config, allow_problems=True)
    except ConfigError as e:
        return _fail(args, e, 1)
    problems: list[Problem] = config_problems(cfg)
    policy: Policy | None = None
    try:
        policy = load_policy(cfg.policy)
    except ConfigError as e:
        problems += e.problems
    live_ran = False
    if args.live and not any(p.severity == "error" for p in problems):
        from idc_ha.check import live_problems
        from idc_ha.coord.store import FileStore

        snap = asyncio.run(_probe_once(cfg))
        problems += live_problems(
            cfg.topology,
            snap,
            FileStore(cfg.state_dir).load_records(),
            wall=time.time(),
            max_blind_s=policy.proof.max_blind_s if policy else None,
        )
        live_ran = True
    errors = [p for p in problems if p.severity == "error"]
    t = cfg.topology
    summary = (
        f"{len(t.cities)} cities, {len(t.idcs)} IDCs, {len(t.machines)} machines, {len(t.shards)} shards, "
        f"{len(t.nodes)} nodes"
    )
    lines = [str(p) for p in problems]
    verdict = "OK" if not errors else f"{len(errors)} error(s)"
    lines.append(f"{args.config}: {summary}; {verdict}" + (" (live check done)" if live_ran else ""))
    _emit(
        args,
        {"ok": not errors, "live": live_ran, "summary": summary, "problems": [p.model_dump() for p in problems]},
        "\n".join(lines),
    )
    return 0 if not errors else 1


def cmd_status(args: argparse.Namespace) -> int:
    from idc_ha.coord.store import FileStore
    from idc_ha.status import render, report

    try:
        cfg, _ = _load(args)
    except ConfigError as e:
        return _fail(args, e, 2)
    store = FileStore(cfg.state_dir)
    snap = asyncio.run(_probe_once(cfg))
    try:
        records = store.load_records()
        control = store.load_control()
    except IdcHaError as e:
        return _fail(args, e, 1)
    r = report(
        cfg.topology,
        snap,
        records,
        control=control,
        tick=store.read_tick(),
        store_present=store.exists(),
        wall=time.time(),
    )
    _emit(args, r, render(r))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from idc_ha import logs
    from idc_ha.daemon import Daemon
    from idc_ha.process import settle_memory

    logs.setup()
    try:
        cfg, policy = _load(args)
    except ConfigError as e:
        return _fail(args, e, 2)
    crash_after = os.environ.get("IDC_HA_TEST_CRASH_AFTER") or None

    async def main() -> None:
        d = Daemon.from_config(cfg, policy, crash_after=crash_after)
        settle_memory()
        await d.run()

    try:
        asyncio.run(main())
    except IdcHaError as e:
        return _fail(args, e, 1)
    return 0


def cmd_pause(args: argparse.Namespace, *, pause: bool) -> int:
    from idc_ha.coord.store import FileStore

    try:
        cfg, _ = _load(args)
    except ConfigError as e:
        return _fail(args, e, 2)
    shards = {s.name for s in cfg.topology.shards}
    if args.shard and args.shard not in shards:
        err = IdcHaError(f"unknown shard {args.shard!r}", hint=f"use one of {', '.join(sorted(shards))}")
        return _fail(args, err, 2)
    store = FileStore(cfg.state_dir)
    c = store.load_control()
    if args.shard:
        ps = set(c.paused_shards)
        ps = ps | {args.shard} if pause else ps - {args.shard}
        c = c.model_copy(update={"paused_shards": tuple(sorted(ps)), "updated_wall": time.time()})
    else:
        c = c.model_copy(
            update={"paused": pause, "updated_wall": time.time(), "paused_shards": c.paused_shards if pause else ()}
        )
    store.write_control(c)
    store.append("pause" if pause else "resume", shard=args.shard, by=os.environ.get("USER", "?"))
    what = f"shard {args.shard}" if args.shard else "all shards"
    text = (
        f"{'paused' if pause else 'resumed'} automatic actions for {what}"
        f"{'; the daemon only alerts now' if pause else ''}"
    )
    _emit(args, {"ok": True, **c.model_dump(mode="json")}, text)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="idc-ha", description="IDC disaster-recovery controller for MySQL-protocol shards"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name, help_ in (
        ("check", "validate the config; --live compares reality with the layout"),
        ("status", "one probe round and what the store holds"),
        ("run", "run the daemon"),
        ("pause", "stop automatic actions (alerts continue)"),
        ("resume", "restart automatic actions"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", required=True, type=Path, help="the controller's TOML config")
        p.add_argument("--json", action="store_true", help="print JSON instead of text")
        if name == "check":
            p.add_argument("--live", action="store_true", help="also connect and compare reality with the layout")
        if name in ("pause", "resume"):
            p.add_argument("--shard", help="only this shard")
    args = ap.parse_args(argv)
    if args.cmd == "check":
        return cmd_check(args)
    if args.cmd == "status":
        return cmd_status(args)
    if args.cmd == "run":
        return cmd_run(args)
    return cmd_pause(args, pause=args.cmd == "pause")


if __name__ == "__main__":
    sys.exit(main())
