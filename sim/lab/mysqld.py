"""mariadbd instances for the lab: template datadir, per-node config files, replication wiring.

Users are created once in a template datadir (``mariadb-install-db --extra-file``) that every
node copies, so no user-management statement ever reaches a binlog. Each node has its own tmpdir
(parallel servers sharing /tmp crash at random), its own short unix socket, and a config file
that carries what the node must be after a restart: ``read_only=ON`` everywhere, semi-sync master
settings on the home primary only, semi-sync slave on the acker only.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pymysql

from idc_ha.act.admin import change_master_sql
from sim.lab.shape import LabShape, NodeSpec

SEMISYNC_NEVER = 18446744073709551615

APP_GRANTS = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER, CREATE TEMPORARY TABLES, LOCK TABLES, "
    "EXECUTE, CREATE VIEW, SHOW VIEW, CREATE ROUTINE, ALTER ROUTINE, EVENT, TRIGGER, REFERENCES"
)
# What the controller needs on MariaDB 10.11 (lab-facts.md): SUPER no longer implies READ ONLY ADMIN.
CTL_GRANTS = (
    "READ ONLY ADMIN, REPLICATION SLAVE ADMIN, REPLICATION MASTER ADMIN, SLAVE MONITOR, BINLOG MONITOR, "
    "CONNECTION ADMIN, PROCESS, RELOAD"
)


def users_sql(shape: LabShape) -> str:
    q = pymysql.converters.escape_string
    return "\n".join(
        [
            "FLUSH PRIVILEGES;",
            f"CREATE USER '{shape.app_user}'@'%' IDENTIFIED BY '{q(shape.app_password)}';",
            f"GRANT {APP_GRANTS} ON *.* TO '{shape.app_user}'@'%';",
            f"CREATE USER '{shape.ctl_user}'@'%' IDENTIFIED BY '{q(shape.ctl_password)}';",
            f"GRANT {CTL_GRANTS} ON *.* TO '{shape.ctl_user}'@'%';",
            f"GRANT SELECT ON mysql.* TO '{shape.ctl_user}'@'%';",
            # The routing table in the meta shard (act/routing_table.py).
            f"GRANT SELECT, INSERT, UPDATE, CREATE ON idc_ha.* TO '{shape.ctl_user}'@'%';",
            f"CREATE USER '{shape.repl_user}'@'%' IDENTIFIED BY '{q(shape.repl_password)}';",
            f"GRANT REPLICATION SLAVE ON *.* TO '{shape.repl_user}'@'%';",
            "",
        ]
    )


def make_template(shape: LabShape, workdir: Path) -> Path:
    tpl = workdir / "template"
    if tpl.exists():
        shutil.rmtree(tpl)
    extra = workdir / "users.sql"
    extra.write_text(users_sql(shape))
    tmp = workdir / "tmp-template"
    tmp.mkdir(exist_ok=True)
    p = subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={tpl}",
            "--user=root",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--skip-name-resolve",
            f"--extra-file={extra}",
            f"--tmpdir={tmp}",
            "--innodb-buffer-pool-size=16M",
            "--innodb-log-file-size=4M",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    extra.unlink()
    if p.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed: {p.stderr[-2000:]}")
    return tpl


def node_dir(workdir: Path, node: NodeSpec) -> Path:
    return workdir / "nodes" / node.name


def socket_path(shape: LabShape, node: NodeSpec) -> Path:
    return shape.sock_dir / f"{node.name}.sock"


def write_cnf(shape: LabShape, workdir: Path, node: NodeSpec, *, as_replica: bool = False) -> Path:
    """The node's config file. ``as_replica`` is for a demoted primary coming back: no master
    semi-sync, and ``init_rpl_role=SLAVE`` so the server truncates a binlog tail no acker received."""
    d = node_dir(workdir, node)
    bind = node.host
    primary_home = node.role == "primary" and not as_replica
    lines = [
        "[mariadbd]",
        f"datadir={d / 'data'}",
        f"tmpdir={d / 'tmp'}",
        f"socket={socket_path(shape, node)}",
        f"pid-file={d / 'mariadbd.pid'}",
        f"log-error={d / 'error.log'}",
        f"port={node.port}",
        f"bind-address={bind}",
        f"server_id={node.server_id}",
        "user=root",
        "skip-name-resolve",
        "read_only=ON",
        f"log_bin={d / 'data' / 'binlog'}",
        f"relay_log={d / 'data' / 'relay'}",
        "binlog_format=ROW",
        "gtid_strict_mode=ON",
        "log_slave_updates=ON",
        "sync_binlog=1",
        "innodb_flush_log_at_trx_commit=1",
        "innodb_buffer_pool_size=16M",
        "innodb_log_file_size=4M",
        "performance_schema=OFF",
        # Heartbeats every 0.1 s (MASTER_HEARTBEAT_PERIOD, act/admin.py) show a silent source within
        # 0.3 s; the controller confirms a silent IDC ~2.5-2.8 s after it went quiet. Until this
        # timeout the acker's IO thread still waits to read: KILL then STOP SLAVE IO_THREAD ends it
        # at once (most of the time; else the killed read ends at this timeout). Once it has timed
        # out it is reconnecting, and a stop takes MariaDB's 2 s resend (act/relaylog.py). So it
        # outlasts the confirmation with a margin for slow rounds on a loaded machine (at 3 s, one
        # trial in ten confirmed at 3.3 s and paid the 2 s). It also bounds how long a reconnect
        # that receives nothing after a partition heals goes unnoticed.
        "slave_net_timeout=4",
        "max_connections=200",
    ]
    if primary_home:
        lines += [
            "rpl_semi_sync_master_enabled=ON",
            "rpl_semi_sync_master_wait_point=AFTER_SYNC",
            f"rpl_semi_sync_master_timeout={SEMISYNC_NEVER}",
            "rpl_semi_sync_master_wait_no_slave=ON",
        ]
    if node.role == "acker":
        lines.append("rpl_semi_sync_slave_enabled=ON")
    if node.role in ("acker", "cascade"):
        # A restart must never START SLAVE by itself: in GTID mode that deletes the relay log,
        # which on an acker whose primary is dead holds the only copy of acknowledged commits
        # (measured: 0 of 100 kept). The controller starts the threads, relay log first.
        lines.append("skip-slave-start")
    if as_replica:
        lines.append("init_rpl_role=SLAVE")
    cnf = d / "my.cnf"
    cnf.write_text("\n".join(lines) + "\n")
    return cnf


def prepare_node(shape: LabShape, workdir: Path, node: NodeSpec, template: Path) -> None:
    d = node_dir(workdir, node)
    if d.exists():
        shutil.rmtree(d)
    (d / "tmp").mkdir(parents=True)
    subprocess.run(["cp", "-a", str(template), str(d / "data")], check=True, timeout=60)
    write_cnf(shape, workdir, node)


def command(workdir: Path, node: NodeSpec, shape: LabShape) -> list[str]:
    cnf = node_dir(workdir, node) / "my.cnf"
    base = ["mariadbd", f"--defaults-file={cnf}"]
    if shape.loopback:
        return base
    netns = shape.machine(node.machine).netns
    return ["ip", "netns", "exec", str(netns), *base]


def root_conn(shape: LabShape, node: NodeSpec, *, timeout: float = 5.0) -> pymysql.connections.Connection:
    return pymysql.connect(
        unix_socket=str(socket_path(shape, node)),
        user="root",
        connect_timeout=timeout,
        read_timeout=30,
        write_timeout=30,
        autocommit=True,
    )


def wait_ready(shape: LabShape, nodes: list[NodeSpec], *, timeout: float = 60.0) -> None:
    pending = list(nodes)
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for n in pending:
            try:
                root_conn(shape, n, timeout=1).close()
            except pymysql.MySQLError:
                still.append(n)
        pending = still
        if pending:
            if time.monotonic() > deadline:
                raise RuntimeError(f"servers not ready after {timeout:.0f} s: {[n.name for n in pending]}")
            time.sleep(0.05)


def wire_replication(shape: LabShape) -> None:
    """Point every replica at its home upstream and start it; primaries stay read-only."""
    for n in shape.nodes:
        if n.upstream is None:
            continue
        c = root_conn(shape, n)
        try:
            with c.cursor() as cur:
                src = shape.node(n.upstream)
                cur.execute(change_master_sql(src.host, src.port, user=shape.repl_user, password=shape.repl_password))
                cur.execute("START SLAVE")
        finally:
            c.close()


def wait_replicating(shape: LabShape, *, timeout: float = 30.0) -> None:
    """Until every replica's threads run and every primary has its acker connected."""
    deadline = time.monotonic() + timeout
    while True:
        bad: list[str] = []
        for n in shape.nodes:
            c = root_conn(shape, n)
            try:
                with c.cursor(pymysql.cursors.DictCursor) as cur:
                    if n.upstream is not None:
                        cur.execute("SHOW SLAVE STATUS")
                        row = cur.fetchone()
                        if not row or row["Slave_IO_Running"] != "Yes" or row["Slave_SQL_Running"] != "Yes":
                            bad.append(f"{n.name}: replication not running ({row and row['Last_IO_Error']})")
                    else:
                        cur.execute("SHOW GLOBAL STATUS LIKE 'Rpl_semi_sync_master_clients'")
                        row = cur.fetchone()
                        if not row or int(row["Value"]) < 1:
                            bad.append(f"{n.name}: no semi-sync acker connected")
            finally:
                c.close()
        if not bad:
            return
        if time.monotonic() > deadline:
            raise RuntimeError("replication did not come up: " + "; ".join(bad))
        time.sleep(0.05)


def open_primaries(shape: LabShape) -> None:
    for n in shape.nodes:
        if n.role == "primary":
            c = root_conn(shape, n)
            try:
                with c.cursor() as cur:
                    cur.execute("SET GLOBAL read_only=OFF")
            finally:
                c.close()
