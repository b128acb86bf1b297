"""python -m sim.lab up|down|status|stop-node|start-node|restart-node|sweep --workdir DIR

Progress goes to stderr; each command prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sim.lab import control
from sim.lab.net import NetError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim.lab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="bring up a lab in DIR")
    p_up.add_argument("--shards", type=int, default=2, help="data shards (the meta shard comes on top)")
    p_up.add_argument("--machines-per-idc", type=int, default=2)
    p_up.add_argument("--loopback", action="store_true", help="127.x addresses, no namespaces (development only)")
    for name in ("up", "down", "status"):
        p = p_up if name == "up" else sub.add_parser(name)
        p.add_argument("--workdir", required=True, type=Path)
    for name in ("stop-node", "start-node", "restart-node"):
        p = sub.add_parser(name)
        p.add_argument("names", nargs="+")
        p.add_argument("--workdir", required=True, type=Path)
        if name == "stop-node":
            p.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean shutdown")
        else:
            p.add_argument(
                "--as-replica",
                action="store_true",
                help="bring a demoted primary back read-only as a replica (init_rpl_role=SLAVE: a tail the "
                "engine never committed is truncated)",
            )
    sub.add_parser("sweep", help="remove namespaces and bridges of labs whose supervisor is gone")
    p_sup = sub.add_parser("_supervise")
    p_sup.add_argument("--workdir", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "_supervise":
            from sim.lab.supervisor import main as supervise

            supervise(a.workdir)
            return 0
        if a.cmd == "up":
            out = control.up(a.workdir, shards=a.shards, machines_per_idc=a.machines_per_idc, loopback=a.loopback)
        elif a.cmd == "down":
            out = control.down(a.workdir)
        elif a.cmd == "status":
            wd = a.workdir.resolve()
            out = control.describe(control.load(wd), wd)
        elif a.cmd == "stop-node":
            out = control.stop_nodes(a.workdir, a.names, kill=a.kill)
        elif a.cmd == "start-node":
            out = control.start_nodes(a.workdir, a.names, as_replica=a.as_replica)
        elif a.cmd == "restart-node":
            out = control.restart_nodes(a.workdir, a.names, as_replica=a.as_replica)
        else:
            out = {"swept": control.sweep()}
    except (control.LabError, NetError) as e:
        print(f"sim.lab {a.cmd}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
