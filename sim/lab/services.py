"""The witness site's services, in the root namespace on ports away from the standard ones:
a Mosquitto broker (routing and alerts) and a single-member etcd (controller leases, later)."""

from __future__ import annotations

import socket
from pathlib import Path

from sim.lab.shape import LabShape

TAKEN = {1883, 2379, 2380, 3306, 4222, 5432, 5672, 6379}


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in TAKEN:
            return port


def mosquitto_cmd(shape: LabShape, workdir: Path) -> list[str]:
    conf = workdir / "mosquitto.conf"
    # Started as root, mosquitto drops to its own user: log to stderr, no pid file, no persistence.
    conf.write_text(
        f"listener {shape.mqtt_port} 127.0.0.1\n"
        + ("" if shape.loopback else f"listener {shape.mqtt_port} {shape.client_gateway}\n")
        + "allow_anonymous true\npersistence false\n"
        "log_dest stderr\nlog_type error\nlog_type warning\n"
    )
    return ["mosquitto", "-c", str(conf)]


def etcd_cmd(shape: LabShape, workdir: Path) -> list[str]:
    name = f"ih{shape.tag}"
    peer = f"http://127.0.0.1:{shape.etcd_peer_port}"
    client = f"http://127.0.0.1:{shape.etcd_client_port}"
    return [
        "etcd",
        f"--name={name}",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
        "--logger=zap",
        "--log-outputs=stderr",
        "--log-level=warn",
    ]
