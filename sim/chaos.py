"""Fault injection on a lab: ``python -m sim.chaos --workdir DIR ACTION TARGET [SECONDS]``

Actions (each fault has its healing verb):
  kill-idc IDC[,IDC]      SIGKILL every server of the IDC(s) at once (process death; machines stay up)
  restore-idc IDC         start them again, the old primaries read-only as replicas
  kill-node NAME          SIGKILL one server
  isolate-idc IDC         every link of the IDC down: the other IDCs and the controller get
                          timeouts; its machines still reach each other (bridged traffic passes nft
                          when br_netfilter is loaded, so the rules name both ends)
  heal-idc IDC            remove the drop rules of isolate-idc
  cut-controller IDC      only the controller's site (the root namespace) loses the IDC: the IDC
                          keeps replicating to the others, the controller sees it time out
  reconnect-controller IDC  remove the drop rules of cut-controller
  partition A,B           drop traffic between two IDCs only (both still reach the controller)
  heal-partition A,B      remove the drop rules of partition
  freeze-idc IDC [S]      SIGSTOP every server of the IDC; with S, SIGCONT after S seconds
  thaw-idc IDC            SIGCONT them
  freeze-machine M [S]    SIGSTOP every server on machine M; with S, SIGCONT after S seconds
  thaw-machine M          SIGCONT them
  flap-link M [S]         machine M's network link down; with S, up again after S seconds
  unflap-link M           the link up
Prints one JSON object: what was done and when (wall clock), for benchmarks to measure from.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable
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


def isolate_idc(workdir: Path, idc: str) -> dict[str, Any]:
    shape = control.load(workdir)
    if shape.loopback:
        raise control.LabError("isolate-idc needs a namespace lab (not --loopback)")
    sn = _subnet(shape, idc)
    tbl = shape.nft_table
    t = time.time()
    net.nft(
        f'add rule inet {tbl} forward ip saddr {sn} ip daddr != {sn} drop comment "cut-{idc}"\n'
        f'add rule inet {tbl} forward ip daddr {sn} ip saddr != {sn} drop comment "cut-{idc}"\n'
        f'add rule inet {tbl} input ip saddr {sn} drop comment "cut-{idc}"\n'
    )
    return {"action": "isolate-idc", "idc": idc, "subnet": sn, "at": t}


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


def cut_controller(workdir: Path, idc: str) -> dict[str, Any]:
    """The controller's site stops hearing the IDC (replies from it are dropped where they arrive):
    its probes time out while the IDC's servers keep replicating to the other IDCs."""
    shape = _namespace_lab(workdir, "cut-controller")
    sn = _subnet(shape, idc)
    t = time.time()
    net.nft(f'add rule inet {shape.nft_table} input ip saddr {sn} drop comment "ctl-{idc}"\n')
    return {"action": "cut-controller", "idc": idc, "subnet": sn, "at": t}


def reconnect_controller(workdir: Path, idc: str) -> dict[str, Any]:
    shape = control.load(workdir)
    t = time.time()
    return {"action": "reconnect-controller", "idc": idc, "rules_removed": _remove_rules(shape, f"ctl-{idc}"), "at": t}


def _pair(shape: LabShape, pair: str) -> tuple[str, str]:
    parts = pair.split(",")
    if len(parts) != 2 or parts[0] == parts[1]:
        raise control.LabError(f"partition takes two different IDCs as A,B (got {pair!r})")
    for idc in parts:
        idc_nodes(shape, idc)
    return parts[0], parts[1]


def partition(workdir: Path, pair: str) -> dict[str, Any]:
    """Drop traffic between two IDCs, both ways; each still reaches the controller and the others."""
    shape = _namespace_lab(workdir, "partition")
    a, b = _pair(shape, pair)
    sa, sb = _subnet(shape, a), _subnet(shape, b)
    tbl, tag = shape.nft_table, f"link-{a}-{b}"
    t = time.time()
    net.nft(
        f'add rule inet {tbl} forward ip saddr {sa} ip daddr {sb} drop comment "{tag}"\n'
        f'add rule inet {tbl} forward ip saddr {sb} ip daddr {sa} drop comment "{tag}"\n'
    )
    return {"action": "partition", "idcs": [a, b], "at": t}


def heal_partition(workdir: Path, pair: str) -> dict[str, Any]:
    shape = control.load(workdir)
    a, b = _pair(shape, pair)
    t = time.time()
    return {"action": "heal-partition", "idcs": [a, b], "rules_removed": _remove_rules(shape, f"link-{a}-{b}"), "at": t}


def _signal(workdir: Path, names: list[str], signum: int) -> list[str]:
    """Send ``signum`` to the lab's servers ``names`` (only processes of this lab); the ones sent."""
    shape = control.load(workdir)
    pids = control.current_pids(shape, workdir)
    done = []
    for n in names:
        pid = pids.get(n)
        if pid and control.is_ours(pid, workdir, shape):
            try:
                os.kill(pid, signum)
                done.append(n)
            except ProcessLookupError:
                pass
    return done


def machine_nodes(shape: LabShape, machine: str) -> list[str]:
    names = [n.name for n in shape.nodes if n.machine == machine]
    if not names:
        known = ", ".join(m.name for m in shape.machines)
        raise control.LabError(f"no servers on machine {machine!r}; this lab has machines {known}")
    return names


def _stop_or_continue(workdir: Path, action: str, target: str, signum: int) -> dict[str, Any]:
    """SIGSTOP (freeze-*) or SIGCONT (thaw-*) every server of an IDC or of a machine."""
    shape = control.load(workdir)
    key = "idc" if action.endswith("-idc") else "machine"
    names = idc_nodes(shape, target) if key == "idc" else machine_nodes(shape, target)
    t = time.time()
    return {"action": action, key: target, "nodes": _signal(workdir, names, signum), "at": t}


def freeze_idc(workdir: Path, idc: str) -> dict[str, Any]:
    """SIGSTOP every server of the IDC: connections stay open and nothing answers (a hung host)."""
    return _stop_or_continue(workdir, "freeze-idc", idc, signal.SIGSTOP)


def thaw_idc(workdir: Path, idc: str) -> dict[str, Any]:
    return _stop_or_continue(workdir, "thaw-idc", idc, signal.SIGCONT)


def freeze_machine(workdir: Path, machine: str) -> dict[str, Any]:
    return _stop_or_continue(workdir, "freeze-machine", machine, signal.SIGSTOP)


def thaw_machine(workdir: Path, machine: str) -> dict[str, Any]:
    return _stop_or_continue(workdir, "thaw-machine", machine, signal.SIGCONT)


def _link(workdir: Path, machine: str, state: str) -> dict[str, Any]:
    shape = _namespace_lab(workdir, f"{'flap' if state == 'down' else 'unflap'}-link")
    machine_nodes(shape, machine)
    t = time.time()
    net.batch([f"link set {shape.veth(shape.machine(machine))} {state}"])
    return {"action": "flap-link" if state == "down" else "unflap-link", "machine": machine, "at": t}


def flap_link(workdir: Path, machine: str) -> dict[str, Any]:
    """Machine M's link down (its bridge side): every packet to and from it is lost."""
    return _link(workdir, machine, "down")


def unflap_link(workdir: Path, machine: str) -> dict[str, Any]:
    return _link(workdir, machine, "up")


# fault -> its healing verb, for the actions that take SECONDS
TIMED = {"freeze-idc": thaw_idc, "freeze-machine": thaw_machine, "flap-link": unflap_link}

ACTIONS: dict[str, Callable[[Path, str], dict[str, Any]]] = {
    "kill-idc": kill_idc,
    "restore-idc": restore_idc,
    "kill-node": kill_node,
    "isolate-idc": isolate_idc,
    "heal-idc": heal_idc,
    "cut-controller": cut_controller,
    "reconnect-controller": reconnect_controller,
    "partition": partition,
    "heal-partition": heal_partition,
    "freeze-idc": freeze_idc,
    "thaw-idc": thaw_idc,
    "freeze-machine": freeze_machine,
    "thaw-machine": thaw_machine,
    "flap-link": flap_link,
    "unflap-link": unflap_link,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m sim.chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--workdir", required=True, type=Path)
    ap.add_argument("action", choices=list(ACTIONS))
    ap.add_argument("target")
    ap.add_argument("seconds", nargs="?", type=float, help="for freeze-idc, freeze-machine, flap-link: heal after")
    a = ap.parse_args(argv)
    if a.seconds is not None and a.action not in TIMED:
        ap.error(f"{a.action} takes no SECONDS; only {', '.join(TIMED)} do")
    if a.seconds is not None and not 0 < a.seconds <= 3600:
        ap.error(f"SECONDS must be in (0, 3600], got {a.seconds}")
    workdir = a.workdir.resolve()
    try:
        out = ACTIONS[a.action](workdir, a.target)
        if a.seconds is not None:
            try:
                time.sleep(a.seconds)
            finally:  # an interrupted sleep still heals: never leave a lab frozen by accident
                out["healed"] = TIMED[a.action](workdir, a.target)
    except (control.LabError, net.NetError) as e:
        print(f"sim.chaos {a.action}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
