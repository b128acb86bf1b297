"""Shared scaffolding for integration tests and benchmarks: a lab, a daemon process, the store.

Everything here drives the real programs (``python -m sim.lab``, ``idc-ha run``) as a DBA would,
with a timeout on every wait so nothing can hang a test run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from idc_ha.coord.store import FileStore
from idc_ha.model.config import Config, load_config
from idc_ha.model.ids import SyncState
from idc_ha.model.state import ShardRecord

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Lab:
    """A lab in ``workdir``: ``up()`` starts it, ``down()`` removes it (also on context exit)."""

    def __init__(self, workdir: Path, *, shards: int = 2) -> None:
        self.workdir = workdir.resolve()
        self.shards = shards
        self.info: dict[str, Any] = {}

    def up(self, timeout: float = 90) -> Lab:
        p = subprocess.run(
            [sys.executable, "-m", "sim.lab", "up", "--workdir", str(self.workdir), "--shards", str(self.shards)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            env=_env(),
        )
        if p.returncode != 0:
            raise RuntimeError(f"sim.lab up failed: {p.stderr[-3000:]}")
        self.info = json.loads(p.stdout)
        return self

    def down(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "sim.lab", "down", "--workdir", str(self.workdir)],
            capture_output=True,
            text=True,
            timeout=90,
            cwd=ROOT,
            env=_env(),
        )

    def status(self) -> dict[str, Any]:
        p = subprocess.run(
            [sys.executable, "-m", "sim.lab", "status", "--workdir", str(self.workdir)],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=ROOT,
            env=_env(),
        )
        out: dict[str, Any] = json.loads(p.stdout)
        return out

    @property
    def config_path(self) -> Path:
        return Path(self.info["config"])

    def config(self) -> Config:
        return load_config(self.config_path)

    def node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.info["nodes"] if n["name"] == name)

    def nodes_in(self, idc: str) -> list[dict[str, Any]]:
        return [n for n in self.info["nodes"] if n["idc"] == idc]

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()


class Daemon:
    """``idc-ha run`` as a child process, its log in ``log``."""

    def __init__(self, config: Path, log: Path, *, env: dict[str, str] | None = None) -> None:
        self.config, self.log = config, log
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.store = FileStore(load_config(config).state_dir)

    def start(self) -> Daemon:
        f = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "idc_ha.cli", "run", "--config", str(self.config)],
            stdout=f,
            stderr=f,
            cwd=ROOT,
            env={**_env(), **self.extra_env},
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 15) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        if self.wait_exit(timeout) is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def records(self) -> dict[str, ShardRecord]:
        return dict(self.store.load_records())

    def wait_records(self, pred: Any, *, timeout: float, what: str) -> dict[str, ShardRecord]:
        """Poll the store until ``pred(records)`` holds; raises TimeoutError naming ``what``."""
        deadline = time.monotonic() + timeout
        recs: dict[str, ShardRecord] = {}
        while time.monotonic() < deadline:
            try:
                recs = self.records()
            except Exception:
                recs = {}
            if recs and pred(recs):
                return recs
            if self.proc is not None and self.proc.poll() is not None and not self.extra_env:
                raise RuntimeError(
                    f"the daemon exited ({self.proc.returncode}) while waiting for {what}; log: {self.log}"
                )
            time.sleep(0.05)
        raise TimeoutError(
            f"{what} not reached in {timeout} s; records: "
            f"{ {s: (r.sync, r.primary, r.op.id if r.op else None) for s, r in recs.items()} }"
        )

    def wait_safe(self, shards: int, timeout: float = 20) -> dict[str, ShardRecord]:
        return self.wait_records(
            lambda r: len(r) == shards and all(x.sync == SyncState.IDC_SAFE for x in r.values()),
            timeout=timeout,
            what="IDC_SAFE on every shard",
        )

    def journal(self) -> list[dict[str, Any]]:
        return list(self.store.journal())

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def kill_idc(lab: Lab, idc: str) -> tuple[float, float]:
    """SIGKILL every server of the IDC through the lab supervisor. Returns the wall times just
    before the first signal and once every server has exited: an ack after the second is
    certainly not from a killed server."""
    from sim.chaos import kill_idc as _kill

    t = time.time()
    _kill(lab.workdir, idc)
    return t, time.time()


def fresh_dir(base: Path, name: str) -> Path:
    d = base / name
    if d.exists():
        shutil.rmtree(d, ignore_errors=True)
    return d
