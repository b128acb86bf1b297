"""The one home-layout generator: the lab, the simulated fleet and the unit tests all use it.

The layout of domain.md: CITY1 holds IDC1 (primary) and IDC2 (standby), CITY2 holds IDC3
(backup_city); ``machines_per_idc`` machines per IDC; a meta shard and ``data_shards`` data shards,
each with ``<shard>-m`` (primary), ``-ms`` (local_candidate), ``-sx`` (acker), ``-cas`` (cascade)
and ``-rem`` (remote). M and MS sit on different machines of IDC1, Sx and the cascade on
different machines of IDC2; primaries rotate over IDC1's machines, so every machine carries a
primary whose death a replica elsewhere can witness. Ports count up from ``base_port`` + 1.

``home_layout`` returns the plain data a config file holds (``cities``, ``idcs``, ``machines``,
``shards``, ``nodes``), ready for ``Topology.model_validate`` or a TOML writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CITIES = (("CITY1", (("IDC1", "primary"), ("IDC2", "standby"))), ("CITY2", (("IDC3", "backup_city"),)))
ROLE_SUFFIX = {"primary": "m", "local_candidate": "ms", "acker": "sx", "cascade": "cas", "remote": "rem"}
UPSTREAM = {"primary": None, "local_candidate": "primary", "acker": "primary", "cascade": "acker", "remote": "acker"}
BASE_PORT = 4400


def test_address(idc_index: int, machine: int) -> str:
    """The addresses the unit tests and the fleet use: 10.0.<idc>.<10 + machine>."""
    return f"10.0.{idc_index}.{10 + machine}"


def shard_names(data_shards: int) -> list[str]:
    return ["meta", *(f"shard{i}" for i in range(1, data_shards + 1))]


def home_layout(
    *,
    data_shards: int = 2,
    machines_per_idc: int = 2,
    address: Callable[[int, int], str] = test_address,
    base_port: int = BASE_PORT,
    cluster: str = "test",
) -> dict[str, Any]:
    """The home layout as config data; ``address(idc_index, machine_number)`` places machines."""
    if machines_per_idc < 2:
        raise ValueError("machines_per_idc must be at least 2: M and MS, Sx and the cascade need machines of their own")
    raw: dict[str, Any] = {"cluster": cluster, "cities": [], "idcs": [], "machines": [], "shards": [], "nodes": []}
    by_idc: dict[str, list[str]] = {}
    for city, idcs in CITIES:
        raw["cities"].append({"name": city})
        for idc, role in idcs:
            raw["idcs"].append({"name": idc, "city": city, "role": role})
            k = int(idc.removeprefix("IDC"))
            for m in range(1, machines_per_idc + 1):
                name = f"{idc.lower()}-m{m}"
                raw["machines"].append({"name": name, "idc": idc, "address": address(k, m)})
                by_idc.setdefault(idc, []).append(name)
    port = base_port
    n = machines_per_idc
    for si, shard in enumerate(shard_names(data_shards)):
        raw["shards"].append({"name": shard, "meta": shard == "meta"})
        place = {
            "primary": by_idc["IDC1"][si % n],
            "local_candidate": by_idc["IDC1"][(si + 1) % n],
            "acker": by_idc["IDC2"][si % n],
            "cascade": by_idc["IDC2"][(si + 1) % n],
            "remote": by_idc["IDC3"][si % n],
        }
        for role, machine in place.items():
            port += 1
            node: dict[str, Any] = {
                "name": f"{shard}-{ROLE_SUFFIX[role]}",
                "shard": shard,
                "machine": machine,
                "port": port,
                "role": role,
            }
            up = UPSTREAM[role]
            if up is not None:
                node["upstream"] = f"{shard}-{ROLE_SUFFIX[up]}"
            raw["nodes"].append(node)
    return raw
