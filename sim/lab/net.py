"""Network namespaces as machines: one bridge and /24 per IDC, the root namespace routes between them.

The root namespace is the witness site: the controller, Mosquitto and etcd live there and reach
every machine over its IDC's bridge. Traffic between IDCs is forwarded by the root namespace, so
chaos can cut an IDC, a machine, or only IDC1<->IDC2 with nftables rules in one table per lab.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from sim.lab.shape import LabShape


class NetError(RuntimeError):
    pass


def run(args: list[str], *, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(args, capture_output=True, text=True, input=input, timeout=30)
    if check and p.returncode != 0:
        raise NetError(f"{' '.join(args)} failed: {p.stderr.strip() or p.stdout.strip()}")
    return p


def netns_supported() -> str | None:
    """None when network namespaces work here, else the reason they do not."""
    probe = "ihprobe-netns"
    p = run(["ip", "netns", "add", probe], check=False)
    if p.returncode != 0:
        return p.stderr.strip() or "ip netns add failed"
    run(["ip", "netns", "del", probe], check=False)
    return None


def used_octets() -> set[int]:
    """Second octets of 10.x.0.0/16 (and 127.x) networks already configured on this machine."""
    out: set[int] = set()
    p = run(["ip", "-j", "-4", "addr"], check=False)
    try:
        for link in json.loads(p.stdout or "[]"):
            for a in link.get("addr_info", []):
                ip = ipaddress.ip_address(a["local"])
                if ip in ipaddress.ip_network("10.0.0.0/8"):
                    out.add(int(str(ip).split(".")[1]))
    except (ValueError, KeyError):
        pass
    return out


def batch(cmds: list[str], *, netns: str | None = None) -> None:
    if not cmds:
        return
    prefix = ["ip", "-n", netns] if netns else ["ip"]
    run([*prefix, "-batch", "-"], input="\n".join(cmds) + "\n")


def create(shape: LabShape) -> None:
    """Bridges, namespaces and veths for every machine; forwarding on in the root namespace."""
    idcs = sorted({m.idc_index for m in shape.machines})
    root: list[str] = []
    for i in idcs:
        br = shape.bridge(i)
        root += [f"link add {br} type bridge", f"addr add {shape.gateway(i)}/24 dev {br}", f"link set {br} up"]
    for m in shape.machines:
        assert m.netns is not None
        run(["ip", "netns", "add", m.netns])
        v = shape.veth(m)
        root += [
            f"link add {v} type veth peer name {v}p",
            f"link set {v}p netns {m.netns}",
            f"link set {v} master {shape.bridge(m.idc_index)}",
            f"link set {v} up",
        ]
    batch(root)
    for m in shape.machines:
        assert m.netns is not None
        v = shape.veth(m)
        batch(
            [
                "link set lo up",
                f"link set {v}p name eth0",
                f"addr add {m.address}/24 dev eth0",
                "link set eth0 up",
                f"route add default via {shape.gateway(m.idc_index)}",
            ],
            netns=m.netns,
        )
    _create_client_site(shape)
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
    # The lab's own table: a forward chain that accepts by default; chaos adds drop rules to it.
    nft(
        f"add table inet {shape.nft_table}\n"
        f"add chain inet {shape.nft_table} forward {{ type filter hook forward priority -10; policy accept; }}\n"
        f"add chain inet {shape.nft_table} input {{ type filter hook input priority -10; policy accept; }}\n"
    )


def _create_client_site(shape: LabShape) -> None:
    """The client site's namespace, linked to the root namespace by a veth pair of its own."""
    ns, v = shape.client_netns, shape.client_veth
    assert ns is not None
    run(["ip", "netns", "add", ns])
    batch(
        [
            f"link add {v} type veth peer name {v}p",
            f"link set {v}p netns {ns}",
            f"addr add {shape.client_gateway}/24 dev {v}",
            f"link set {v} up",
        ]
    )
    batch(
        [
            "link set lo up",
            f"link set {v}p name eth0",
            f"addr add {shape.client_address}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {shape.client_gateway}",
        ],
        netns=ns,
    )


def nft(script: str) -> None:
    run(["nft", "-f", "-"], input=script)


def destroy(tag: str) -> list[str]:
    """Remove every namespace, bridge, veth and nft table whose name carries this lab's tag.

    Works from names alone, so it cleans up after a lab whose state files are gone. Returns what
    could not be removed (empty when all went)."""
    left: list[str] = []
    prefix = f"ih{tag}"
    for ns in list_netns():
        if ns.startswith(prefix + "-"):
            # Killing what still runs inside keeps `ip netns del` from leaving a busy namespace.
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                run(["kill", "-9", pid], check=False)
            if run(["ip", "netns", "del", ns], check=False).returncode != 0:
                left.append(f"netns {ns}")
    for link in list_links():
        if link.startswith(prefix):
            if run(["ip", "link", "del", link], check=False).returncode != 0 and link in list_links():
                left.append(f"link {link}")
    if run(["nft", "list", "table", "inet", prefix], check=False).returncode == 0:
        run(["nft", "delete", "table", "inet", prefix], check=False)
    return left


def list_netns() -> list[str]:
    p = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def list_links() -> list[str]:
    p = run(["ip", "-j", "link"], check=False)
    try:
        return [link["ifname"] for link in json.loads(p.stdout or "[]")]
    except (ValueError, KeyError):
        return []


def lab_tags_present() -> set[str]:
    """Tags of every lab whose namespaces or bridges exist on this machine."""
    tags: set[str] = set()
    for name in list_netns() + list_links():
        if name.startswith("ih") and len(name) >= 6 and all(c in "0123456789abcdef" for c in name[2:6]):
            if name == "ihprobe-netns":
                continue
            tags.add(name[2:6])
    return tags
