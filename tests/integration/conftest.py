"""Integration tests run against the real lab: mariadbd in network namespaces, Mosquitto, etcd.

They need root and `ip netns`; without them they fail with a clear message (they never fall back
to a loopback lab). Every wait has a timeout, so a hung server cannot hang the suite.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.harness import Daemon, Lab

pytestmark = pytest.mark.lab


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session", autouse=True)
def _need_lab_host() -> None:
    if (
        os.geteuid() != 0
        or shutil.which("ip") is None
        or (shutil.which("mariadbd") is None and not Path("/usr/sbin/mariadbd").exists())
    ):
        pytest.fail("integration tests need root, iproute2 and mariadb-server: run `make test` (it installs them)")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A fresh lab per test (3 shards in the home layout), removed afterwards."""
    lab = Lab(tmp_path / "lab").up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[Daemon]:
    """`idc-ha run` on the lab, every shard already proven IDC_SAFE and watched for a while (the
    RPO=0 proof rests on what the daemon itself saw: policy proof.lookback_s, 1 s)."""
    d = Daemon(lab.config_path, tmp_path / "daemon.log").start()
    try:
        d.wait_safe(3, timeout=20)
        time.sleep(2.0)
        yield d
    finally:
        d.stop()
