"""Fault injection on a lab: ``python -m sim.chaos --workdir DIR ACTION ...``

Actions:
  kill-idc IDC[,IDC] SIGKILL every server of the IDC(s) at once (process death; machines stay up)
  restore-idc IDC    start them again, the old primaries read-only as replicas (init_rpl_role=SLAVE)
  kill-node NAME     SIGKILL one server
  cut-idc IDC        drop all traffic between the IDC and the rest (the witness included);
                     its machines still reach each other (bridged traffic passes nft when
                     br_netfilter is loaded, so the rules name both ends)
  heal-idc IDC       remove the drop rules of cut-idc
  isolate-idc IDC    cut only the controller's site (the root namespace) off from the IDC: the
                     IDC keeps replicating to the others, the controller sees it time out
  unisolate-idc IDC  remove the drop rules of isolate-idc
  cut-link A,B       drop traffic between two IDCs only (both still reach the controller)
  heal-link A,B      remove the drop rules of cut-link
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


def _remove_rules(shape: LabShape, comment: str) -> int:
    """Delete every rule of the lab's table carrying ``comment``; how many went."""
    tbl = shape.nft_table
    out = net.run(["nft", "-a", "list", "table", "inet", tbl]).stdout
    chain = ""
    cmds = []
    for line in out.splitlines():
        s = line.strip()
        if s.startswith("chain "):
            chain = s.split()[1]
        if f'comment "{comment}"' in s and "# handle" in s:
            cmds.append(f"delete rule inet {tbl} {chain} handle {s.rsplit('# handle', 1)[1].strip()}")
    if cmds:
        net.nft("\n".join(cmds) + "\n")
    return len(cmds)


def heal_idc(workdir: Path, idc: str) -> dict[str, Any]:
    shape = control.load(workdir)
    t = time.time()
    return {"action": "heal-idc", "idc": idc, "rules_removed": _remove_rules(shape, f"cut-{idc}"), "at": t}


def _namespace_lab(workdir: Path, action: str) -> LabShape:
    shape = control.load(workdir)
    if shape.loopback:
        raise control.LabError(f"{action} needs a namespace lab (not --loopback)")
    return shape


def isolate_idc(workdir: Path, idc: str) -> dict[str, Any]:
    """The controller's site stops hearing the IDC (replies from it are dropped where they arrive):
    its probes time out while the IDC's servers keep replicating to the other IDCs."""
    shape = _namespace_lab(workdir, "isolate-idc")
    sn = _subnet(shape, idc)
    t = time.time()
    net.nft(f'add rule inet {shape.nft_table} input ip saddr {sn} drop comment "isolate-{idc}"\n')
    return {"action": "isolate-idc", "idc": idc, "subnet": sn, "at": t}


def unisolate_idc(workdir: Path, idc: str) -> dict[str, Any]:
    shape = control.load(workdir)
    t = time.time()
    return {"action": "unisolate-idc", "idc": idc, "rules_removed": _remove_rules(shape, f"isolate-{idc}"), "at": t}


def _pair(shape: LabShape, pair: str) -> tuple[str, str]:
    parts = pair.split(",")
    if len(parts) != 2 or parts[0] == parts[1]:
        raise control.LabError(f"cut-link takes two different IDCs as A,B (got {pair!r})")
    for idc in parts:
        idc_nodes(shape, idc)
    return parts[0], parts[1]


def cut_link(workdir: Path, pair: str) -> dict[str, Any]:
    """Drop traffic between two IDCs, both ways; each still reaches the controller and the others."""
    shape = _namespace_lab(workdir, "cut-link")
    a, b = _pair(shape, pair)
    sa, sb = _subnet(shape, a), _subnet(shape, b)
    tbl, tag = shape.nft_table, f"link-{a}-{b}"
    t = time.time()
    net.nft(
        f'add rule inet {tbl} forward ip saddr {sa} ip daddr {sb} drop comment "{tag}"\n'
        f'add rule inet {tbl} forward ip saddr {sb} ip daddr {sa} drop comment "{tag}"\n'
    )
    return {"action": "cut-link", "idcs": [a, b], "at": t}


def heal_link(workdir: Path, pair: str) -> dict[str, Any]:
    shape = control.load(workdir)
    a, b = _pair(shape, pair)
    t = time.time()
    return {"action": "heal-link", "idcs": [a, b], "rules_removed": _remove_rules(shape, f"link-{a}-{b}"), "at": t}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument(
        "action",
        choices=[
            "kill-idc",
            "restore-idc",
            "kill-node",
            "cut-idc",
            "heal-idc",
            "isolate-idc",
            "unisolate-idc",
            "cut-link",
            "heal-link",
        ],
    )
    ap.add_argument("target")
    a = ap.parse_args(argv)
    fn = {
        "kill-idc": kill_idc,
        "restore-idc": restore_idc,
        "kill-node": kill_node,
        "cut-idc": cut_idc,
        "heal-idc": heal_idc,
        "isolate-idc": isolate_idc,
        "unisolate-idc": unisolate_idc,
        "cut-link": cut_link,
        "heal-link": heal_link,
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
