"""Reading a relay log to resume its SQL thread: where the first unapplied group starts, and
which groups are complete (a group cut off by the loss was never acknowledged)."""

from __future__ import annotations

import asyncio
from typing import Any

from idc_ha.act.relaylog import resume_point
from idc_ha.model.gtid import GtidPos
from idc_ha.model.observation import NodeObservation, ReplicaStatus

F = "relay.000002"


class Rows:
    """An Admin that answers SHOW RELAYLOG EVENTS from a fixed list of (type, info) events."""

    def __init__(self, events: list[tuple[str, str]]) -> None:
        self.rows = [{"Log_name": F, "Pos": 4 + 50 * k, "Event_type": e, "Info": i} for k, (e, i) in enumerate(events)]

    async def run(self, node: str, *statements: str, **kw: Any) -> list[list[dict[str, Any]]]:
        from idc_ha.errors import NodeError

        sql = statements[0]
        if f"'{F}'" not in sql:
            raise NodeError("1220 Could not find target log", node=node, code=1220)
        return [self.rows if "FROM" not in sql else []]

    async def observe(self, node: str) -> NodeObservation:
        raise AssertionError


def point(events: list[tuple[str, str]], applied: str = "") -> tuple[str | None, int | None, str]:
    o = NodeObservation(
        node="n",
        reachable=True,
        gtid_slave_pos=GtidPos.parse(applied),
        replica=ReplicaStatus(source_host="h", source_port=1, io_running="No", sql_running="No", relay_log_file=F),
    )
    r = asyncio.run(resume_point(Rows(events), "n", o))  # type: ignore[arg-type]
    return r.file, r.pos, str(r.last)


def test_transactional_ddl_xa_and_rollback_groups_end_where_mariadb_ends_them() -> None:
    events = [
        ("Format_desc", "Server ver"),
        ("Gtid", "GTID 0-1-1"),
        ("Query", "CREATE TABLE t (id INT)"),
        ("Gtid", "BEGIN GTID 0-1-2"),
        ("Write_rows_v1", "table_id: 1"),
        ("Xid", "COMMIT /* xid=9 */"),
        ("Gtid", "BEGIN GTID 0-1-3"),
        ("Query", "INSERT INTO myisam_t VALUES (1)"),
        ("Query", "ROLLBACK"),
        ("Gtid", "XA START X'31',X'',1 GTID 0-1-4"),
        ("Query", "XA END X'31',X'',1"),
        ("XA_prepare", "XA PREPARE X'31',X'',1"),
        ("Gtid", "GTID 0-1-5"),
        ("Query", "XA COMMIT X'31',X'',1"),
    ]
    assert point(events, "0-1-1") == (F, 154, "0-1-5")


def test_a_group_cut_off_half_way_is_not_counted() -> None:
    """The last BEGIN group has no Xid, the last XA group no XA_prepare: neither was acknowledged."""
    assert (
        point([("Gtid", "BEGIN GTID 0-1-1"), ("Xid", "COMMIT"), ("Gtid", "BEGIN GTID 0-1-2"), ("Write_rows_v1", "")])[2]
        == "0-1-1"
    )
    cut_xa = [
        ("Gtid", "BEGIN GTID 0-1-1"),
        ("Xid", "COMMIT"),
        ("Gtid", "XA START X'31',X'',1 GTID 0-1-2"),
        ("Query", "XA END X'31',X'',1"),
    ]
    assert point(cut_xa)[2] == "0-1-1"


def test_everything_applied_means_nothing_to_resume() -> None:
    assert point([("Gtid", "BEGIN GTID 0-1-1"), ("Xid", "COMMIT")], "0-1-1") == (None, None, "0-1-1")
