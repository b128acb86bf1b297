"""What ``idc-ha status`` shows, from one probe round, the store and the daemon's tick view
(``idc_ha.view``).

``report()`` turns one snapshot plus what the store holds into a JSON-able dict; ``render()``
prints it as tables grouped by city, IDC and machine, then by shard.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from idc_ha.model.ids import NodeName, ShardName
from idc_ha.model.observation import NodeObservation, Snapshot
from idc_ha.model.state import Control, ShardRecord, home_record
from idc_ha.model.topology import Topology


def current_role(t: Topology, rec: ShardRecord, node: NodeName) -> str:
    if node == rec.primary:
        return "primary"
    if node in rec.ackers:
        return "acker"
    if node in rec.out:
        return "out"
    return str(t.node_by_name[node].role)


def _node_brief(o: NodeObservation | None) -> dict[str, Any]:
    if o is None:
        return {"reachable": False, "error": "not probed"}
    if not o.reachable:
        return {"reachable": False, "error": o.error, "failure": o.failure}
    r, m, s = o.replica, o.semisync_master, o.semisync_slave
    return {
        "reachable": True,
        "read_only": o.read_only,
        "latency_ms": round(o.latency_ms, 1),
        "gtid_current_pos": str(o.gtid_current_pos),
        "source": (r.source or f"{r.source_host}:{r.source_port}") if r else None,
        "io_running": r.io_running if r else None,
        "sql_running": r.sql_running if r else None,
        "lag_s": r.seconds_behind if r else None,
        "last_error": (r.last_io_error or r.last_sql_error) if r else "",
        "semisync_master": (
            {
                "enabled": m.enabled,
                "status": m.status,
                "clients": m.clients,
                "no_tx": m.no_tx,
                "wait_sessions": m.wait_sessions,
            }
            if m
            else None
        ),
        "semisync_slave": bool(s and s.status),
        "semisync_slave_enabled": bool(s and s.enabled),
    }


def report(
    t: Topology,
    snap: Snapshot,
    records: Mapping[ShardName, ShardRecord],
    *,
    control: Control | None,
    tick: dict[str, Any] | None,
    store_present: bool,
    wall: float,
) -> dict[str, Any]:
    recs = {s.name: records.get(s.name) or home_record(t, s.name, wall=wall) for s in t.shards}
    shards: list[dict[str, Any]] = []
    for s in t.shards:
        rec = recs[s.name]
        p = rec.primary
        host, port = t.address_of(p)
        replicas = []
        for n in t.nodes_by_shard[s.name]:
            if n.name == p:
                continue
            b = _node_brief(snap.nodes.get(n.name))
            replicas.append(
                {
                    "node": n.name,
                    "role": current_role(t, rec, n.name),
                    "home_role": str(n.role),
                    "idc": t.idc_of(n.name),
                    "upstream": rec.upstreams.get(n.name),
                    "semisync": b.get("semisync_slave", False),
                    "io_running": b.get("io_running"),
                    "sql_running": b.get("sql_running"),
                    "lag_s": b.get("lag_s"),
                    **{k: v for k, v in b.items() if k not in ("semisync_slave", "io_running", "sql_running", "lag_s")},
                }
            )
        home = home_record(t, s.name, wall=wall)
        shards.append(
            {
                "name": s.name,
                "meta": s.meta,
                "standby_idc": next((t.idc_of(a) for a in rec.ackers if t.idc_of(a) != t.idc_of(p)), None),
                "home": {
                    "primary": home.primary,
                    "primary_idc": t.idc_of(home.primary),
                    "ackers": list(home.ackers),
                    "standby_idc": next((t.idc_of(a) for a in home.ackers), None),
                },
                "epoch": rec.epoch,
                "sync": str(rec.sync),
                "sync_reason": rec.reason,
                "recorded": s.name in records,
                "ackers": list(rec.ackers),
                "op": rec.op.model_dump(mode="json") if rec.op else None,
                "out": list(rec.out),
                "fence_pending": list(rec.fence_pending),
                "needs_rebuild": list(rec.needs_rebuild),
                "promotion_point": str(rec.promotion_point) if rec.promotion_point else None,
                "primary": {
                    "node": p,
                    "host": host,
                    "port": port,
                    "idc": t.idc_of(p),
                    **_node_brief(snap.nodes.get(p)),
                },
                "replicas": replicas,
            }
        )
    layout = []
    for c in t.cities:
        idcs = []
        for i in t.idcs_in_city(c.name):
            machines = []
            for m in t.machines_in_idc(i.name):
                nodes = []
                for n in t.nodes_by_machine.get(m.name, ()):
                    b = _node_brief(snap.nodes.get(n.name))
                    nodes.append(
                        {
                            "node": n.name,
                            "shard": n.shard,
                            "port": n.port,
                            "role": current_role(t, recs[n.shard], n.name),
                            **b,
                        }
                    )
                machines.append({"name": m.name, "address": m.address, "nodes": nodes})
            idcs.append({"name": i.name, "role": str(i.role), "machines": machines})
        layout.append({"name": c.name, "idcs": idcs})
    daemon = None
    if tick is not None:
        daemon = {
            "pid": tick.get("pid"),
            "last_tick_age_s": round(wall - float(tick.get("wall", 0)), 2),
            "ticks": tick.get("tick"),
            "reasons": tick.get("reasons", {}),
            "verdicts": tick.get("verdicts", {}),
        }
    return {
        "cluster": t.cluster,
        "idcs": {
            # Where the shards' primaries and cross-IDC ackers are now, and where the config puts them.
            "primary": sorted({x["primary"]["idc"] for x in shards}),
            "standby": sorted({x["standby_idc"] for x in shards if x["standby_idc"]}),
            "home_primary": t.primary_idc.name,
            "home_standby": t.standby_idc.name,
        },
        "taken_at": snap.wall,
        "probe_ms": round(snap.duration_ms, 1),
        "store": {
            "present": store_present,
            "paused": bool(control and control.paused),
            "paused_shards": list(control.paused_shards) if control else [],
            "daemon": daemon,
        },
        "cities": layout,
        "shards": shards,
    }


def _yn(v: Any) -> str:
    return "-" if v is None else str(v)


def render(r: dict[str, Any]) -> str:
    out: list[str] = []
    st = r["store"]
    d = st["daemon"]
    at = time.strftime("%H:%M:%S", time.localtime(r["taken_at"]))
    head = f"cluster {r['cluster']}   probed at {at} in {r['probe_ms']} ms"
    if d:
        head += f"   daemon pid {d['pid']}, last tick {d['last_tick_age_s']} s ago"
    elif st["present"]:
        head += "   daemon: no tick recorded"
    else:
        head += "   store: none yet (showing the home layout)"
    if st["paused"] or st["paused_shards"]:
        head += f"   PAUSED: {'all' if st['paused'] else ', '.join(st['paused_shards'])}"
    out.append(head)
    out.append("")
    for c in r["cities"]:
        for i in c["idcs"]:
            verdict = (d or {}).get("verdicts", {}).get("idcs", {}).get(i["name"], "")
            out.append(f"{c['name']} / {i['name']} ({i['role']}){'  [' + verdict + ']' if verdict else ''}")
            for m in i["machines"]:
                out.append(f"  {m['name']:<10} {m['address']}")
                for n in m["nodes"]:
                    if not n["reachable"]:
                        state = f"UNREACHABLE ({n.get('error', '')[:60]})"
                    else:
                        rw = "ro" if n["read_only"] else "RW"
                        if n["role"] == "primary":
                            ms = n["semisync_master"] or {}
                            on = "ON" if ms.get("status") else "OFF"
                            state = f"{rw} semisync master {on} clients {ms.get('clients')}"
                        else:
                            state = (
                                f"{rw} IO {_yn(n['io_running'])} SQL {_yn(n['sql_running'])} lag {_yn(n['lag_s'])}s"
                                f"{' ACKS' if n['semisync_slave'] else ''}"
                            )
                    out.append(f"    {n['node']:<14} {n['shard']:<8} {n['role']:<16} {state}")
    out.append("")
    i = r["idcs"]
    standby = ", ".join(i["standby"]) or "none (no acker across IDCs)"
    home = f"(home: primary {i['home_primary']}, standby {i['home_standby']})"
    out.append(f"IDCs now: primary {', '.join(i['primary'])}, standby {standby}   {home}")
    out.append(f"{'SHARD':<10} {'EPOCH':>5} {'SYNC':<10} {'PRIMARY':<14} {'IDC':<6} {'ACKERS':<16} {'OP'}")
    for s in r["shards"]:
        p = s["primary"]
        op = s["op"]["kind"] + " -> " + s["op"]["target"] if s["op"] else "-"
        flag = "" if p.get("reachable") else "  (primary unreachable)"
        out.append(
            f"{s['name'] + ('*' if s['meta'] else ''):<10} {s['epoch']:>5} {s['sync']:<10} {p['node']:<14} "
            f"{p['idc']:<6} {','.join(s['ackers']):<16} {op}{flag}"
        )
        for rep in s["replicas"]:
            line = (
                f"    {rep['node']:<14} {rep['role']:<16} {rep['idc']:<6} IO {_yn(rep['io_running'])} "
                f"SQL {_yn(rep['sql_running'])} lag {_yn(rep['lag_s'])}s semisync {'yes' if rep['semisync'] else 'no'}"
            )
            if not rep.get("reachable"):
                line = f"    {rep['node']:<14} {rep['role']:<16} {rep['idc']:<6} UNREACHABLE"
            out.append(line)
        extra = []
        h = s["home"]
        if (h["primary"], h["ackers"]) != (p["node"], s["ackers"]):
            extra.append(f"home layout: primary {h['primary']} ({h['primary_idc']}), acker {', '.join(h['ackers'])}")
        if s["out"]:
            extra.append(f"out: {', '.join(s['out'])}")
        if s["fence_pending"]:
            extra.append(f"fence on return: {', '.join(s['fence_pending'])}")
        if s["needs_rebuild"]:
            extra.append(f"needs rebuild: {', '.join(s['needs_rebuild'])}")
        if extra:
            out.append("    " + "; ".join(extra))
        reason = (d or {}).get("reasons", {}).get(s["name"])
        out.append(f"    sync: {s['sync_reason']}")
        if reason:
            out.append(f"    daemon: {reason}")
    out.append("(* meta shard)")
    return "\n".join(out)
