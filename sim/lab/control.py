"""Lab life cycle: up, status, down, and node operations for tests and chaos.

``up`` builds the network, prepares datadirs, hands the servers to a supervisor daemon, wires
replication in the home layout, opens the primaries for writes and writes ``DIR/idc-ha.toml``.
``down`` stops everything the lab started (never anything else) and removes its namespaces,
bridges, nft table and data; it also sweeps leftovers of a lab whose supervisor died.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sim.lab import mysqld, net, services
from sim.lab.shape import LabShape, build_shape, controller_toml, lab_tag
from sim.lab.supervisor import socket_name


class LabError(RuntimeError):
    """A lab operation failed; the message says what to do."""


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ask(shape: LabShape, req: dict[str, Any], *, timeout: float = 60.0) -> dict[str, Any]:
    """Send one command to the lab's supervisor. Raises LabError when it is not running."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(socket_name(shape.tag))
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    except OSError as e:
        raise LabError(f"the lab supervisor for {shape.workdir} is not answering ({e})") from e
    finally:
        s.close()
    resp: dict[str, Any] = json.loads(buf or b"{}")
    if not resp.get("ok"):
        raise LabError(resp.get("error", "the supervisor refused the command"))
    return resp


def supervisor_alive(shape: LabShape) -> bool:
    try:
        ask(shape, {"cmd": "pids"}, timeout=2)
        return True
    except LabError:
        return False


def load(workdir: Path) -> LabShape:
    f = workdir / "lab.json"
    if not f.exists():
        raise LabError(f"no lab in {workdir} (no lab.json); start one with `python -m sim.lab up --workdir {workdir}`")
    return LabShape.load(f)


def pick_octet(tag: str, loopback: bool) -> int:
    used = net.used_octets() if not loopback else set()
    start = 64 + int(tag, 16) % 160
    for k in range(160):
        o = 64 + (start - 64 + k) % 160
        if o not in used:
            return o
    raise LabError("no free 10.x.0.0/16 range for the lab's subnets")


def up(workdir: Path, *, shards: int = 2, machines_per_idc: int = 2, loopback: bool = False) -> dict[str, Any]:
    t0 = time.monotonic()
    workdir = workdir.resolve()
    if machines_per_idc < 2:
        raise LabError(
            "--machines-per-idc must be at least 2: M and MS (and Sx and the cascade) need their own machines"
        )
    if shards < 0:
        raise LabError("--shards must be 0 or more (the meta shard always exists)")
    if (workdir / "lab.json").exists():
        old = LabShape.load(workdir / "lab.json")
        if supervisor_alive(old):
            raise LabError(
                f"a live lab runs in {workdir}; stop it with `python -m sim.lab down --workdir {workdir}` "
                "or use another --workdir"
            )
        log("sweeping a dead lab left in this workdir")
        teardown(old, workdir)
    if not loopback:
        why = net.netns_supported()
        if why is not None:
            raise LabError(
                f"network namespaces are not available here ({why}); the lab needs root and `ip netns`. "
                "--loopback exists for development only"
            )
        if lab_tag(workdir) in net.lab_tags_present():
            net.destroy(lab_tag(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    # A new lab is a new cluster: a controller store left by an earlier lab here would describe
    # servers that no longer exist (and the daemon would rightly fence what contradicts it).
    shutil.rmtree(workdir / "state", ignore_errors=True)
    for sub in ("logs", "secrets", "state"):
        (workdir / sub).mkdir(exist_ok=True)
    shape = build_shape(
        workdir,
        shards=shards,
        machines_per_idc=machines_per_idc,
        loopback=loopback,
        octet=pick_octet(lab_tag(workdir), loopback),
    )
    shape.mqtt_port, shape.etcd_client_port, shape.etcd_peer_port = (services.free_port() for _ in range(3))
    shape.sock_dir.mkdir(parents=True, exist_ok=True)
    shape.save(workdir / "lab.json")
    (workdir / "secrets" / "controller.password").write_text(shape.ctl_password)
    (workdir / "secrets" / "replication.password").write_text(shape.repl_password)
    for f in (workdir / "secrets").iterdir():
        f.chmod(0o600)
    try:
        if not loopback:
            log(f"network: {len(shape.machines)} namespaces, subnets 10.{shape.octet}.{{1,2,3}}.0/24")
            net.create(shape)
        log("template datadir")
        tpl = mysqld.make_template(shape, workdir)
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda n: mysqld.prepare_node(shape, workdir, n, tpl), shape.nodes))
        log(f"starting {len(shape.nodes)} mariadbd, mosquitto and etcd under the supervisor")
        sup_log = open(workdir / "logs" / "supervisor.log", "ab")
        subprocess.Popen(
            [sys.executable, "-m", "sim.lab", "_supervise", "--workdir", str(workdir)],
            stdin=subprocess.DEVNULL,
            stdout=sup_log,
            stderr=sup_log,
            start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        deadline = time.monotonic() + 30
        while not (workdir / "supervisor.ready").exists():
            if time.monotonic() > deadline:
                raise LabError(f"the lab supervisor did not start; see {workdir / 'logs' / 'supervisor.log'}")
            time.sleep(0.02)
        mysqld.wait_ready(shape, shape.nodes)
        log("wiring replication in the home layout")
        mysqld.wire_replication(shape)
        mysqld.wait_replicating(shape)
        mysqld.open_primaries(shape)
        wait_port("127.0.0.1", shape.mqtt_port)
        wait_port("127.0.0.1", shape.etcd_client_port)
        shutil.rmtree(workdir / "template", ignore_errors=True)
    except BaseException:
        log("bring-up failed; tearing down what was started")
        teardown(shape, workdir)
        raise
    (workdir / "idc-ha.toml").write_text(controller_toml(shape, workdir))
    log(f"lab up in {time.monotonic() - t0:.1f} s")
    return describe(shape, workdir)


def wait_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError as e:
            if time.monotonic() > deadline:
                raise LabError(f"{host}:{port} did not open: {e}") from e
            time.sleep(0.05)


def current_pids(shape: LabShape, workdir: Path) -> dict[str, int | None]:
    try:
        pids: dict[str, int | None] = ask(shape, {"cmd": "pids"}, timeout=5)["pids"]
        return pids
    except LabError:
        return {}


def describe(shape: LabShape, workdir: Path) -> dict[str, Any]:
    pids = current_pids(shape, workdir)
    return {
        "config": str(workdir / "idc-ha.toml"),
        "workdir": str(workdir),
        "app_user": shape.app_user,
        "app_password": shape.app_password,
        "supervisor": supervisor_alive(shape),
        "nodes": [
            {
                "name": n.name,
                "shard": n.shard,
                "role": n.role,
                "idc": n.idc,
                "city": n.city,
                "machine": n.machine,
                "netns": shape.machine(n.machine).netns,
                "host": n.host,
                "port": n.port,
                "pid": pids.get(n.name),
            }
            for n in shape.nodes
        ],
        "mqtt": {"host": "127.0.0.1", "port": shape.mqtt_port, "pid": pids.get("mosquitto")},
        # Where the workload runs: its namespace (None: this one) and the broker's address from there.
        "client": {"netns": shape.client_netns, "address": shape.client_address, "mqtt_host": shape.client_gateway},
        "etcd": [f"http://127.0.0.1:{shape.etcd_client_port}"],
        "controllers": [],
        "etcd_members": [],
    }


def teardown(shape: LabShape, workdir: Path) -> list[str]:
    """Kill every process of the lab, remove its network and data. Returns what is left over."""
    if supervisor_alive(shape):
        try:
            ask(shape, {"cmd": "shutdown"}, timeout=30)
        except LabError:
            pass
    # Whatever the supervisor could not (or it was dead): pids it recorded, then anything still
    # running inside the lab's namespaces.
    pidfile = workdir / "pids.json"
    if pidfile.exists():
        try:
            data = json.loads(pidfile.read_text())
            for pid in [data.get("supervisor"), *data.get("procs", {}).values()]:
                if pid and is_ours(int(pid), workdir, shape):
                    _kill(int(pid))
        except (ValueError, OSError):
            pass
    left = [] if shape.loopback else net.destroy(shape.tag)
    for p in (shape.sock_dir, workdir / "template", workdir / "etcd"):
        shutil.rmtree(p, ignore_errors=True)
    for d in (workdir / "nodes").glob("*/data") if (workdir / "nodes").exists() else []:
        shutil.rmtree(d, ignore_errors=True)
    for f in ("supervisor.ready", "pids.json"):
        (workdir / f).unlink(missing_ok=True)
    return left


def is_ours(pid: int, workdir: Path, shape: LabShape) -> bool:
    """Only signal a process whose command line names this lab: never a server we did not start."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(workdir) in cmdline or f"ih{shape.tag}" in cmdline


def _kill(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass


def down(workdir: Path) -> dict[str, Any]:
    workdir = workdir.resolve()
    shape = load(workdir)
    left = teardown(shape, workdir)
    if left:
        raise LabError(f"could not remove: {', '.join(left)}")
    return {"down": str(workdir)}


def node_names(shape: LabShape, names: list[str]) -> list[str]:
    known = {n.name for n in shape.nodes}
    bad = [n for n in names if n not in known]
    if bad:
        raise LabError(f"unknown node(s) {', '.join(bad)}; this lab has {', '.join(sorted(known))}")
    return names


def stop_nodes(workdir: Path, names: list[str], *, kill: bool = False) -> dict[str, Any]:
    shape = load(workdir.resolve())
    return ask(shape, {"cmd": "stop", "names": node_names(shape, names), "signal": "KILL" if kill else "TERM"})


def start_nodes(workdir: Path, names: list[str], *, as_replica: bool = False, wait: bool = True) -> dict[str, Any]:
    shape = load(workdir.resolve())
    resp = ask(shape, {"cmd": "start", "names": node_names(shape, names), "as_replica": as_replica})
    if wait:
        mysqld.wait_ready(shape, [shape.node(n) for n in names])
    return resp


def restart_nodes(workdir: Path, names: list[str], *, as_replica: bool = False) -> dict[str, Any]:
    """SIGKILL, then start again: the lab's fence command. With ``as_replica`` the server comes
    back read-only with ``init_rpl_role=SLAVE``, whose crash recovery truncates a binlog tail the
    engine never committed (a commit that waited for a semi-sync ack under AFTER_SYNC). A clean
    shutdown would commit that tail instead (docs/fencing.md), hence the kill."""
    stopped = stop_nodes(workdir, names, kill=True)
    started = start_nodes(workdir, names, as_replica=as_replica)
    return {"restarted": names, "as_replica": as_replica, "stop": stopped, "start": started}


def sweep() -> list[str]:
    """Remove namespaces and bridges of every lab on this machine whose supervisor is gone."""
    removed = []
    for tag in sorted(net.lab_tags_present()):
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1)
            s.connect(socket_name(tag))
            s.close()
            continue  # a live lab: leave it alone
        except OSError:
            pass
        net.destroy(tag)
        removed.append(tag)
    return removed
