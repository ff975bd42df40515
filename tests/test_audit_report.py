"""`hub audit report`: the evidence pack read from `audit.data_movement`, and the audit rows of
quarantine and dead-letter transitions that feed it.

The end-to-end proof, the report's counts against the tables after a whole build, is in
tests/test_drills_world.py (movements) and tests/test_drill_refused_rows.py (rejected rows and
dead letters); here the pack's grouping, period, links and access section, on small warehouses.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid

import pytest
from typer.testing import CliRunner

from integration_hub.cli import app
from integration_hub.engine import audit, audit_report, quarantine
from integration_hub.engine import sync_engine as rs
from integration_hub.engine.sync_engine.declaration import DEAD_LETTER
from integration_hub.warehouse import Warehouse

DAY = dt.datetime(2026, 11, 20, 9, 0)
RUN = str(uuid.UUID(int=1))  # a Dagster run id
CLI_RUN = "0" * 32  # a hub CLI run outside Dagster


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("HUB_UI_URL", "https://dagster.example.com/")
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    return Warehouse()


def _movement(direction: str, at: dt.datetime, run_id: str = RUN, **fields) -> audit.Movement:
    fields.setdefault("system", "shop")
    return audit.Movement(run_id=run_id, asset=f"x/{direction}", direction=direction, started_at=at,
                          finished_at=at + dt.timedelta(seconds=5), **fields)  # fmt: skip


def _pack(*args: str) -> dict:
    out = CliRunner().invoke(app, ["audit", "report", "--json", *args])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_the_pack_groups_the_periods_movements_and_links_their_runs(warehouse):
    audit.record(
        warehouse,
        _movement("load", DAY, resource="orders", rows_in=10, rows_out=9, rows_rejected=1),
        _movement("load", DAY + dt.timedelta(hours=1), resource="orders", rows_in=5, rows_out=5),
        _movement("push", DAY, system="support", resource="orders", rows_in=4, rows_out=3, rows_rejected=1),
        _movement("retention", DAY, run_id=CLI_RUN, system="hub", resource="raw_shop.orders", rows_in=20,
                  rows_out=6, details={"rule": "raw_*.* after 90 days by _dlt_load_id"}),
        _movement("dead_letter", DAY, system="support", details={"sync": "support_orders", "opened": 1}),
        _movement("dead_letter", DAY, run_id=CLI_RUN, system="support",
                  details={"sync": "support_orders", "discarded": 1}),
        _movement("load", DAY - dt.timedelta(days=1), resource="orders", rows_out=100),  # before the period
        _movement("load", DAY + dt.timedelta(days=1), resource="orders", rows_out=100),  # after it
    )  # fmt: skip
    quarantine.quarantine(
        warehouse, "shop__orders", RUN, [("1", "id missing", {}), ("2", "id missing", {}), ("3", "bad date", {})],
        asset="raw/shop/orders", system="shop",
    )  # fmt: skip
    pack = _pack("--from", "2026-11-20", "--to", "2026-11-20")
    by = {(g["system"], g["direction"], g["resource"]): g for g in pack["movements"]}
    assert by[("shop", "load", "orders")] | {"runs": None} == {
        "system": "shop", "direction": "load", "resource": "orders", "movements": 2,
        "rows_in": 15, "rows_out": 14, "rows_rejected": 1, "runs": None,
    }  # fmt: skip
    # The quarantine write above is "now", outside the period: only a wider period shows it.
    assert ("shop", "quarantine", "quarantine.shop__orders") not in by
    assert pack["retention_by_rule"] == [
        {"rule": "raw_*.* after 90 days by _dlt_load_id", "table": "raw_shop.orders", "rows_deleted": 6}
    ]
    assert pack["dead_letters"] == [
        {"sync": "support_orders", "system": "support", "opened": 1, "delivered": 0, "discarded": 1}
    ]
    runs = {r["run_id"]: r for r in pack["runs"]}
    assert runs[RUN]["url"] == f"https://dagster.example.com/runs/{RUN}"
    assert runs[CLI_RUN]["url"] is None and runs[CLI_RUN]["origin"] == "hub CLI"
    assert runs[RUN]["directions"] == ["load", "push", "dead_letter"]

    today = dt.datetime.now(dt.UTC).date().isoformat()
    now = _pack("--from", today, "--to", today)
    assert now["rejected_by_reason"] == [
        {"table": "quarantine.shop__orders", "reason": "bad date", "rows": 1},
        {"table": "quarantine.shop__orders", "reason": "id missing", "rows": 2},
    ]
    (q,) = now["movements"]
    assert (q["system"], q["direction"], q["rows_in"], q["rows_out"]) == ("shop", "quarantine", 3, 3)


def test_the_html_pack_is_one_page_with_every_section(warehouse, tmp_path):
    audit.record(warehouse, _movement("load", DAY, resource="orders", rows_out=9))
    page = tmp_path / "pack" / "audit.html"
    out = CliRunner().invoke(app, ["audit", "report", "--from", "2026-11-01", "--to", "2026-11-30", "--html",
                                   str(page)], env={"COLUMNS": "200"})  # fmt: skip
    assert out.exit_code == 0, out.output
    text = page.read_text()
    for section in (
        "Movements per system and direction",
        "Rejected rows by reason",
        "Retention deletions by rule",
        "Dead letters opened and resolved",
        "Access grants in force",
        "Runs behind these movements",
    ):
        assert section in text, section  # fmt: skip
    assert f"href='https://dagster.example.com/runs/{RUN}'" in text
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")
    assert "movements per system and direction" in out.output and RUN in out.output


def test_a_period_backwards_or_not_a_date_is_refused(warehouse):
    out = CliRunner().invoke(app, ["audit", "report", "--from", "2026-11-20", "--to", "2026-11-01"])
    assert out.exit_code == 2 and "before --from" in out.output
    out = CliRunner().invoke(app, ["audit", "report", "--from", "20/11/2026"])
    assert out.exit_code == 2 and "--from must be a date like" in out.output


def test_on_duckdb_the_grants_are_the_files_permissions(warehouse):
    audit.record(warehouse, _movement("load", DAY))
    os.chmod(warehouse.duckdb_path, 0o640)
    access = audit_report.access_grants(warehouse)
    assert access["note"].startswith("embedded DuckDB: file permissions")
    (grant,) = access["grants"]
    assert (grant["mode"], grant["readable_by"], grant["writable_by"]) == (
        "0640",
        ["owner", "group"],
        ["owner"],
    )


def test_a_discarded_dead_letter_is_a_dead_letter_movement(warehouse):
    rs.ensure_tables(warehouse)
    with warehouse.connect() as con:
        con.execute(
            f"INSERT INTO {DEAD_LETTER} VALUES ('L1', 'support_orders', 'SO-1', 'upsert', 'h', '{{}}', '422', 1, "
            "now(), now(), 'open', NULL, NULL)"
        )
    from assets.syncs import SYNCS

    rs.discard(warehouse, "L1", "customer asked us to stop", SYNCS)
    with warehouse.connect() as con:
        (row,) = con.rows("SELECT system, direction, resource, rows_out, details FROM audit.data_movement")
    assert row[:4] == ("support", "dead_letter", "sync.dead_letter", 1)
    assert json.loads(row[4]) == {"sync": "support_orders", "discarded": 1, "letter": "L1",
                                  "reason": "customer asked us to stop"}  # fmt: skip


@pytest.mark.postgres
def test_on_postgres_the_pack_reads_the_grants_from_the_catalog(pg_warehouse):
    role = f"hub_test_reader_{uuid.uuid4().hex[:8]}"
    audit.record(pg_warehouse, _movement("load", DAY))
    with pg_warehouse.connect() as con:
        con.execute(f'CREATE ROLE "{role}" NOLOGIN')
        con.execute(f'GRANT USAGE ON SCHEMA audit TO "{role}"')
        con.execute(f'GRANT SELECT ON audit.data_movement TO "{role}"')
    try:
        pack = audit_report.build_report(pg_warehouse, DAY.date(), DAY.date(), "http://ui")
    finally:
        with pg_warehouse.connect() as con:
            con.execute(f'REVOKE ALL ON audit.data_movement FROM "{role}"')
            con.execute(f'REVOKE ALL ON SCHEMA audit FROM "{role}"')
            con.execute(f'DROP ROLE "{role}"')
    (moved,) = pack["movements"]
    assert (moved["system"], moved["direction"], moved["movements"]) == ("shop", "load", 1)
    access = pack["access"]
    grants = {(g["role"], g["schema"]): g["privileges"] for g in access["grants"]}
    assert grants[(role, "audit")] == {"SELECT": 1}
    owner = pg_warehouse.resolved_url.split("//", 1)[1].split("@", 1)[0].split(":", 1)[0]
    assert grants[(owner, "audit")]["INSERT"] == 1  # the owner's implicit rights are shown too
    assert access["kind"] == "postgres"
