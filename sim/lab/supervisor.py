"""The lab supervisor: a small daemon whose children are every server of one lab.

Keeping the servers as children means each death is reaped at once (a dead mariadbd otherwise
lingers as a zombie) and its pid leaves ``pids.json`` the moment it exits, whoever killed it.
The supervisor never restarts anything by itself: a test that kills a server expects it to stay
dead until it asks for ``start``.

Control: line-delimited JSON on an abstract unix socket named after the lab's tag.
``{"cmd": "start", "names": [...], "as_replica": bool}``, ``{"cmd": "stop", "names": [...],
"signal": "TERM"|"KILL"}``, ``{"cmd": "pids"}``, ``{"cmd": "shutdown"}``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sim.lab import mysqld, services
from sim.lab.shape import LabShape


def socket_name(tag: str) -> str:
    return f"\0idcha-lab-{tag}"


class Supervisor:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.shape = LabShape.load(workdir / "lab.json")
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.started: dict[str, float] = {}
        self.done = asyncio.Event()
        self._watchers: set[asyncio.Task[None]] = set()

    # -- children
    def _cmd(self, name: str, *, as_replica: bool) -> tuple[list[str], Path]:
        if name == "mosquitto":
            return services.mosquitto_cmd(self.shape, self.workdir), self.workdir / "logs" / "mosquitto.log"
        if name == "etcd":
            return services.etcd_cmd(self.shape, self.workdir), self.workdir / "logs" / "etcd.log"
        node = self.shape.node(name)
        mysqld.write_cnf(self.shape, self.workdir, node, as_replica=as_replica)
        return mysqld.command(self.workdir, node, self.shape), mysqld.node_dir(self.workdir, node) / "stdout.log"

    async def start(self, names: list[str], *, as_replica: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            p = self.procs.get(name)
            if p is not None and p.returncode is None:
                out[name] = p.pid
                continue
            cmd, log = self._cmd(name, as_replica=as_replica)
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as f:
                proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL, stdout=f, stderr=f)
            self.procs[name] = proc
            self.started[name] = time.time()
            t = asyncio.create_task(self._watch(name, proc), name=f"watch-{name}")
            self._watchers.add(t)
            t.add_done_callback(self._watchers.discard)
            out[name] = proc.pid
        self._write_pids()
        return out

    async def _watch(self, name: str, proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        print(f"{time.strftime('%H:%M:%S')} {name} pid {proc.pid} exited with {proc.returncode}", flush=True)
        self._write_pids()

    async def stop(self, names: list[str], *, sig: str = "TERM", timeout: float = 30.0) -> dict[str, Any]:
        signum = signal.SIGKILL if sig == "KILL" else signal.SIGTERM
        waiting = []
        for name in names:
            p = self.procs.get(name)
            if p is not None and p.returncode is None:
                try:
                    p.send_signal(signum)
                except ProcessLookupError:
                    pass
                waiting.append(p.wait())
        if waiting:
            try:
                await asyncio.wait_for(asyncio.gather(*waiting), timeout)
            except TimeoutError:
                for name in names:
                    p = self.procs.get(name)
                    if p is not None and p.returncode is None:
                        p.kill()
                await asyncio.gather(*(self.procs[n].wait() for n in names if n in self.procs))
        self._write_pids()
        return {"stopped": names}

    def pids(self) -> dict[str, int | None]:
        return {n: (p.pid if p.returncode is None else None) for n, p in self.procs.items()}

    def _write_pids(self) -> None:
        data = {"supervisor": os.getpid(), "procs": self.pids(), "ts": time.time()}
        tmp = self.workdir / "pids.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.workdir / "pids.json")

    # -- control socket
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            req = json.loads(line or b"{}")
            cmd = req.get("cmd")
            if cmd == "start":
                resp: dict[str, Any] = {
                    "ok": True,
                    "pids": await self.start(req["names"], as_replica=bool(req.get("as_replica"))),
                }
            elif cmd == "stop":
                resp = {"ok": True, **await self.stop(req["names"], sig=req.get("signal", "TERM"))}
            elif cmd == "pids":
                resp = {"ok": True, "pids": self.pids()}
            elif cmd == "shutdown":
                await self.stop(list(self.procs), sig="KILL")
                resp = {"ok": True}
                self.done.set()
            else:
                resp = {"ok": False, "error": f"unknown command {cmd!r}"}
        except Exception as e:  # the socket must answer whatever went wrong
            resp = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        writer.write(json.dumps(resp).encode() + b"\n")
        await writer.drain()
        writer.close()

    async def run(self) -> None:
        server = await asyncio.start_unix_server(self._handle, path=socket_name(self.shape.tag))
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, self.done.set)
        names = ["mosquitto", "etcd", *(n.name for n in self.shape.nodes)]
        await self.start(names)
        (self.workdir / "supervisor.ready").write_text(str(os.getpid()))
        async with server:
            await self.done.wait()
        await self.stop(list(self.procs), sig="KILL")
        (self.workdir / "supervisor.ready").unlink(missing_ok=True)


def main(workdir: str) -> None:
    asyncio.run(Supervisor(Path(workdir)).run())
    sys.exit(0)
