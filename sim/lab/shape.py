"""The lab's shape: cities, IDCs, machines, nodes, names and addresses, derived from the workdir.

Everything that must not clash between two labs side by side (namespace, bridge and interface
names, the /16 the IDC subnets live in, the witness ports) is derived from the workdir's path and
then checked against what the machine already uses.

Home layout (domain.md): per shard, M and MS in IDC1 on different machines, Sx and a cascade in
IDC2 on different machines, a remote in IDC3. Primaries alternate between IDC1's machines so that
every machine carries at least one primary, whose death replicas can witness.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sim.layout import BASE_PORT, CITIES, home_layout


@dataclass
class MachineSpec:
    name: str  # e.g. idc1-m1
    idc: str
    city: str
    index: int  # 1-based within the lab, for interface names
    idc_index: int  # 1-based IDC number, the third octet of its subnet
    address: str
    netns: str | None  # None in loopback mode


@dataclass
class NodeSpec:
    name: str
    shard: str
    meta: bool
    role: str
    upstream: str | None
    machine: str
    idc: str
    city: str
    host: str
    port: int
    server_id: int


@dataclass
class LabShape:
    workdir: str
    tag: str
    loopback: bool
    octet: int  # 10.<octet>.<idc>.0/24 per IDC
    cluster: str
    machines: list[MachineSpec]
    nodes: list[NodeSpec]
    mqtt_port: int = 0
    etcd_client_port: int = 0
    etcd_peer_port: int = 0
    app_user: str = "app"
    app_password: str = field(default_factory=lambda: secrets.token_hex(8))
    ctl_user: str = "idcha"
    ctl_password: str = field(default_factory=lambda: secrets.token_hex(12))
    repl_user: str = "repl"
    repl_password: str = field(default_factory=lambda: secrets.token_hex(12))

    # -- names derived from the tag; all within Linux's 15-character interface limit
    def bridge(self, idc_index: int) -> str:
        return f"ih{self.tag}b{idc_index}"

    def veth(self, machine: MachineSpec) -> str:
        return f"ih{self.tag}v{machine.index}"

    @property
    def nft_table(self) -> str:
        return f"ih{self.tag}"

    @property
    def sock_dir(self) -> Path:
        # Unix socket paths are limited to 107 bytes: keep them short whatever the workdir.
        return Path(f"/tmp/idcha-{self.tag}")

    # The client site: one more namespace where the workload's writers run, routed through the
    # root namespace like an IDC but outside every IDC, so that cutting the controller's site off
    # (the root namespace's own input) does not cut the writers off.
    CLIENT_SUBNET = 200  # 10.<octet>.200.0/24

    @property
    def client_netns(self) -> str | None:
        return None if self.loopback else f"ih{self.tag}-client"

    @property
    def client_veth(self) -> str:
        return f"ih{self.tag}vc"

    @property
    def client_gateway(self) -> str:
        """The root namespace's address on the client link (Mosquitto listens there too)."""
        return "127.0.0.1" if self.loopback else f"10.{self.octet}.{self.CLIENT_SUBNET}.1"

    @property
    def client_address(self) -> str:
        return "127.0.0.1" if self.loopback else f"10.{self.octet}.{self.CLIENT_SUBNET}.2"

    def gateway(self, idc_index: int) -> str:
        return "127.0.0.1" if self.loopback else f"10.{self.octet}.{idc_index}.1"

    def machine(self, name: str) -> MachineSpec:
        return next(m for m in self.machines if m.name == name)

    def node(self, name: str) -> NodeSpec:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def idc_names(self) -> list[str]:
        return [idc for _, idcs in CITIES for idc, _ in idcs]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LabShape:
        d = dict(d)
        d["machines"] = [MachineSpec(**m) for m in d["machines"]]
        d["nodes"] = [NodeSpec(**n) for n in d["nodes"]]
        return cls(**d)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabShape:
        return cls.from_json(json.loads(path.read_text()))


def lab_tag(workdir: Path) -> str:
    return hashlib.sha1(str(workdir.resolve()).encode()).hexdigest()[:4]


def build_shape(workdir: Path, *, shards: int, machines_per_idc: int, loopback: bool, octet: int) -> LabShape:
    """The lab's machines and nodes, placed by the one home-layout generator (``sim.layout``).
    ``shards`` counts data shards; the meta shard comes on top."""
    tag = lab_tag(workdir)

    def address(ii: int, m: int) -> str:
        return f"127.{octet}.{ii}.{10 + m}" if loopback else f"10.{octet}.{ii}.{10 + m}"

    raw = home_layout(data_shards=shards, machines_per_idc=machines_per_idc, address=address, base_port=BASE_PORT)
    city_of = {i["name"]: i["city"] for i in raw["idcs"]}
    machines: list[MachineSpec] = []
    for k, m in enumerate(raw["machines"], 1):
        idc, num = m["idc"], m["name"].rsplit("-m", 1)[1]
        machines.append(
            MachineSpec(
                name=m["name"],
                idc=idc,
                city=city_of[idc],
                index=k,
                idc_index=int(idc.removeprefix("IDC")),
                address=m["address"],
                netns=None if loopback else f"ih{tag}-{idc.lower()}-m{num}",
            )
        )
    by_name = {m.name: m for m in machines}
    nodes = [
        NodeSpec(
            name=n["name"],
            shard=n["shard"],
            meta=n["shard"] == "meta",
            role=n["role"],
            upstream=n.get("upstream"),
            machine=n["machine"],
            idc=by_name[n["machine"]].idc,
            city=by_name[n["machine"]].city,
            host=by_name[n["machine"]].address,
            port=n["port"],
            server_id=n["port"],
        )
        for n in raw["nodes"]
    ]
    return LabShape(
        workdir=str(workdir.resolve()),
        tag=tag,
        loopback=loopback,
        octet=octet,
        cluster=f"lab-{tag}",
        machines=machines,
        nodes=nodes,
    )


def controller_toml(shape: LabShape, workdir: Path) -> str:
    """A valid controller config for this lab, with its state inside the workdir."""
    q = json.dumps  # TOML basic strings accept JSON string escapes
    lines = [
        f"# written by `python -m sim.lab up` for the lab in {workdir}",
        f"cluster = {q(shape.cluster)}",
        f"state_dir = {q(str(workdir / 'state'))}",
        'policy = "policies/default.toml"',
        "",
        "[credentials]",
        f"user = {q(shape.ctl_user)}",
        f"password_file = {q(str(workdir / 'secrets' / 'controller.password'))}",
        f"replication_user = {q(shape.repl_user)}",
        f"replication_password_file = {q(str(workdir / 'secrets' / 'replication.password'))}",
        "",
        "[mqtt]",
        'host = "127.0.0.1"',
        f"port = {shape.mqtt_port}",
        "",
    ]
    for city, _ in CITIES:
        lines += ["[[cities]]", f"name = {q(city)}", ""]
    for city, idcs in CITIES:
        for idc, role in idcs:
            lines += ["[[idcs]]", f"name = {q(idc)}", f"city = {q(city)}", f"role = {q(role)}", ""]
    # The lab's fence command (docs/fencing.md): SIGKILL, then a start as a replica, which truncates
    # a commit that waited for an ack; run by the controller on an old primary whose fence is blocked.
    fence = [sys.executable, "-m", "sim.lab", "restart-node", "{node}", "--as-replica", "--workdir", str(workdir)]
    for m in shape.machines:
        lines += ["[[machines]]", f"name = {q(m.name)}", f"idc = {q(m.idc)}", f"address = {q(m.address)}"]
        lines += [f"fence_command = [{', '.join(q(a) for a in fence)}]", ""]
    for s in dict.fromkeys(n.shard for n in shape.nodes):
        lines += ["[[shards]]", f"name = {q(s)}", f"meta = {'true' if s == 'meta' else 'false'}", ""]
    for n in shape.nodes:
        lines += [
            "[[nodes]]",
            f"name = {q(n.name)}",
            f"shard = {q(n.shard)}",
            f"machine = {q(n.machine)}",
            f"port = {n.port}",
            f"role = {q(n.role)}",
        ]
        if n.upstream:
            lines.append(f"upstream = {q(n.upstream)}")
        lines.append("")
    return "\n".join(lines)
