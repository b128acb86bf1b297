"""Fault injection on a lab: ``python -m sim.chaos --workdir DIR ACTION ...``

Actions:
  kill-idc IDC[,IDC] SIGKILL every server of the IDC(s) at once (process death; machines stay up)
  restore-idc IDC    start them again, the old primaries read-only as replicas (init_rpl_role=SLAVE)
  kill-node NAME     SIGKILL one server
  cut-idc IDC        drop all traffic between the IDC and the rest (the witness included);
                     its machines still reach each other (bridged traffic passes nft when
                     br_netfilter is loaded, so the rules name both ends)
  heal-idc IDC       remove the drop rules of cut-idc
Prints one JSON object: what was done and when (wall clock), for benchmarks to measure from.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from sim.lab import control, net
from sim.lab.shape import LabShape


def idc_nodes(shape: LabShape, idc: str) -> list[str]:
    names = [n.name for n in shape.nodes if n.idc == idc]
    if not names:
        raise control.LabError(f"no nodes in {idc!r}; this lab has IDCs {', '.join(shape.idc_names())}")
    return names


def kill_idc(workdir: Path, idc: str) -> dict[str, Any]:
    """SIGKILL every server of the IDC (several IDCs: comma-separated, killed in one request)."""
    shape = control.load(workdir)
    names = [n for one in idc.split(",") for n in idc_nodes(shape, one)]
    t = time.time()
    control.ask(shape, {"cmd": "stop", "names": names, "signal": "KILL"})
    return {"action": "kill-idc", "idc": idc, "nodes": names, "at": t}


def restore_idc(workdir: Path, idc: str) -> dict[str, Any]:
    shape = control.load(workdir)
    names = idc_nodes(shape, idc)
    primaries = [n for n in names if shape.node(n).role == "primary"]
    others = [n for n in names if n not in primaries]
    t = time.time()
    if primaries:
        control.start_nodes(workdir, primaries, as_replica=True)
    if others:
        control.start_nodes(workdir, others)
    return {"action": "restore-idc", "idc": idc, "nodes": names, "at": t}


def kill_node(workdir: Path, name: str) -> dict[str, Any]:
    t = time.time()
    control.stop_nodes(workdir, [name], kill=True)
    return {"action": "kill-node", "node": name, "at": t}


def _subnet(shape: LabShape, idc: str) -> str:
    ii = int(idc.removeprefix("IDC"))
    return f"10.{shape.octet}.{ii}.0/24"


def cut_idc(workdir: Path, idc: str) -> dict[str, Any]:
    shape = control.load(workdir)
    if shape.loopback:
        raise control.LabError("cut-idc needs a namespace lab (not --loopback)")
    sn = _subnet(shape, idc)
    tbl = shape.nft_table
    t = time.time()
    net.nft(
        f'add rule inet {tbl} forward ip saddr {sn} ip daddr != {sn} drop comment "cut-{idc}"\n'
        f'add rule inet {tbl} forward ip daddr {sn} ip saddr != {sn} drop comment "cut-{idc}"\n'
        f'add rule inet {tbl} input ip saddr {sn} drop comment "cut-{idc}"\n'
    )
    return {"action": "cut-idc", "idc": idc, "subnet": sn, "at": t}


def heal_idc(workdir: Path, idc: str) -> dict[str, Any]:
    shape = control.load(workdir)
    tbl = shape.nft_table
    out = net.run(["nft", "-a", "list", "table", "inet", tbl]).stdout
    chain = ""
    cmds = []
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("chain "):
            chain = s.split()[1]
        if f'comment "cut-{idc}"' in s and "# handle" in s:
            cmds.append(f"delete rule inet {tbl} {chain} handle {s.rsplit('# handle', 1)[1].strip()}")
    t = time.time()
    if cmds:
        net.nft("\n".join(cmds) + "\n")
    return {"action": "heal-idc", "idc": idc, "rules_removed": len(cmds), "at": t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("action", choices=["kill-idc", "restore-idc", "kill-node", "cut-idc", "heal-idc"])
    ap.add_argument("target")
    a = ap.parse_args(argv)
    fn = {
        "kill-idc": kill_idc,
        "restore-idc": restore_idc,
        "kill-node": kill_node,
        "cut-idc": cut_idc,
        "heal-idc": heal_idc,
    }[a.action]
    try:
        out = fn(a.workdir.resolve(), a.target)
    except (control.LabError, net.NetError) as e:
        print(f"sim.chaos {a.action}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
