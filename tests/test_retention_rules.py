"""Retention deletes exactly what expired (by table timestamp, or by dlt load), and audits it."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import dagster as dg
import dlt
import pyarrow as pa
import pytest

from assets.retention import retention as retention_asset
from integration_hub.engine import audit, quarantine
from integration_hub.engine import retention_rules as retention
from integration_hub.warehouse import Warehouse

NOW = audit.now()
OLD, RECENT = NOW - dt.timedelta(days=45), NOW - dt.timedelta(days=2)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    if request.param == "duckdb":
        return Warehouse()
    return request.getfixturevalue("pg_warehouse")


def _load_shop_orders(warehouse: Warehouse, first_id: int) -> str:
    """One real dlt load of two shop orders (with nested line items) into raw_shop."""
    orders = [
        {
            "id": first_id + i,
            "total_price": "10.00",
            "line_items": [{"sku": "A", "quantity": 1}, {"sku": "B", "quantity": 2}],
        }
        for i in range(2)
    ]
    pipeline = dlt.pipeline(
        pipeline_name=f"retention_test_{uuid.uuid4().hex[:6]}",
        destination=warehouse.dlt_destination(),
        dataset_name="raw_shop",
        pipelines_dir=str(warehouse.duckdb_path.parent / "dlt"),
    )
    info = pipeline.run(orders, table_name="orders")
    return info.loads_ids[0]


def _seed(warehouse: Warehouse) -> None:
    old_load = _load_shop_orders(warehouse, 1)
    _load_shop_orders(warehouse, 100)
    with warehouse.connect() as con:
        con.execute(
            "UPDATE raw_shop._dlt_loads SET inserted_at = ? WHERE load_id = ?",
            [OLD.replace(tzinfo=dt.UTC), old_load],
        )
    audit.record(
        warehouse,
        audit.Movement(
            "r-ancient", "raw/shop/orders", "shop", "extract", finished_at=NOW - dt.timedelta(days=8 * 365)
        ),
        audit.Movement("r-old", "raw/shop/orders", "shop", "extract", finished_at=OLD),
    )
    quarantine.quarantine(
        warehouse, "shop__orders", "r-old", [("1", "total_price is not a number", {"id": 1})]
    )
    with warehouse.connect() as con:
        con.execute("UPDATE quarantine.shop__orders SET quarantined_at = ?", [OLD])
    quarantine.quarantine(warehouse, "shop__orders", "r-new", [("2", "missing id", {})])
    changelog = pa.table(
        {"run_id": ["a", "b", "c"], "sync": ["support_orders"] * 3, "key": ["SO-1", "SO-2", "SO-3"],
         "status": ["delivered"] * 3, "changed_at": [NOW - dt.timedelta(days=120), OLD, RECENT]}
    )  # fmt: skip
    warehouse.write_arrow("sync", "changelog", changelog)
    letters = pa.table(
        {"sync": ["support_orders"] * 3, "key": ["SO-7", "SO-8", "SO-9"], "status": ["open", "discarded", "replayed"],
         "first_failure_at": [NOW - dt.timedelta(days=200)] * 3,
         "resolved_at": pa.array([None, NOW - dt.timedelta(days=100), RECENT], pa.timestamp("us"))}
    )  # fmt: skip
    warehouse.write_arrow("sync", "dead_letter", letters)


def test_retention_asset_deletes_expired_rows_and_audits_them(warehouse):
    _seed(warehouse)
    result = dg.materialize([retention_asset], resources={"warehouse": warehouse})
    assert result.success

    with warehouse.connect() as con:
        assert sorted(r[0] for r in con.rows("SELECT id FROM raw_shop.orders")) == [100, 101]
        # child rows of the expired load went with their parents
        assert con.scalar("SELECT count(*) FROM raw_shop.orders__line_items") == 4
        assert sorted(r[0] for r in con.rows("SELECT key FROM sync.changelog")) == ["SO-2", "SO-3"]
        assert sorted(r[0] for r in con.rows("SELECT key FROM sync.dead_letter")) == ["SO-7", "SO-9"]
        assert [r[0] for r in con.rows("SELECT source_key FROM quarantine.shop__orders")] == ["2"]
        trail = con.rows(
            "SELECT resource, rows_in, rows_out, details FROM audit.data_movement "
            "WHERE direction = 'retention' AND run_id = ? ORDER BY resource",
            [result.run_id],
        )
        assert con.scalar("SELECT count(*) FROM audit.data_movement WHERE run_id = 'r-ancient'") == 0
        assert (
            con.scalar(
                "SELECT count(*) FROM audit.data_movement WHERE run_id = 'r-old' AND direction = 'extract'"
            )
            == 1
        )

    assert [(r[0], r[1], r[2]) for r in trail] == [
        ("audit.data_movement", 4, 1),  # the two extracts and the seed's two quarantine writes (recent)
        ("quarantine.shop__orders", 2, 1),
        ("raw_shop.orders", 4, 2),
        ("raw_shop.orders__line_items", 8, 4),
        ("sync.changelog", 3, 1),
        ("sync.dead_letter", 3, 1),
    ]
    assert json.loads(trail[0][3])["days"] == 7 * 365
    mat = result.asset_materializations_for_node("audit__retention")[0]
    assert mat.metadata["rows_deleted"].value == 10

    # Idempotent: a second pass finds nothing more to delete (and audits nothing).
    assert sum(d.rows_deleted for d in retention.apply_retention(warehouse)) == 0


def test_every_declared_table_contract_has_a_rule():
    expected = {
        ("raw_shop", "orders"): 30, ("raw_erp", "sales_orders"): 30, ("sync", "changelog"): 90,
        ("audit", "data_movement"): 7 * 365, ("quarantine", "canonical_invoice"): 30,
        ("recon", "order_to_invoice__results"): 400, ("recon", "summary"): 400,
    }  # fmt: skip
    assert {k: retention.rule_for(*k).days for k in expected} == expected
    assert retention.rule_for("canonical", "sales_order") is None


def test_a_rule_naming_a_missing_column_says_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    warehouse = Warehouse()
    warehouse.write_arrow("recon", "summary", pa.table({"flow": ["x"]}))
    with pytest.raises(ValueError, match="names column 'run_at'.*fix the rule"):
        retention.apply_retention(warehouse)
    assert warehouse.row_count("recon", "summary") == 1


def _load_merged_accounts(warehouse: Warehouse) -> str:
    """One real dlt merge load (current state: accounts by primary key, with nested contacts)."""
    pipeline = dlt.pipeline(
        pipeline_name=f"retention_merge_{uuid.uuid4().hex[:6]}",
        destination=warehouse.dlt_destination(),
        dataset_name="raw_crm",
        pipelines_dir=str(warehouse.duckdb_path.parent / "dlt"),
    )
    accounts = [
        {"id": f"001{i}", "name": f"Account {i}", "contacts": [{"email": f"c{i}@x.test"}]} for i in range(3)
    ]
    info = pipeline.run(accounts, table_name="accounts", write_disposition="merge", primary_key="id")
    return info.loads_ids[0]


def test_current_state_never_expires_by_age_and_a_dry_run_deletes_nothing(warehouse):
    """A merge-loaded raw table is the current state of its records: a record unchanged for longer
    than the rule's age is still live, so it stays; appended history expires as before."""
    _seed(warehouse)
    merged_load = _load_merged_accounts(warehouse)
    with warehouse.connect() as con:
        con.execute("UPDATE raw_crm._dlt_loads SET inserted_at = ? WHERE load_id = ?",
                    [OLD.replace(tzinfo=dt.UTC), merged_load])  # fmt: skip

    planned = {(d.schema, d.table): d for d in retention.apply_retention(warehouse, dry_run=True)}
    assert planned[("raw_crm", "accounts")].rows_deleted == 0
    assert planned[("raw_crm", "accounts__contacts")].rows_deleted == 0
    assert "current state" in planned[("raw_crm", "accounts")].to_dict()["rule"]
    # the appended shop orders: the old load's two orders and their four line items would go
    assert planned[("raw_shop", "orders")].rows_deleted == 2
    assert planned[("raw_shop", "orders__line_items")].rows_deleted == 4
    with warehouse.connect() as con:
        assert con.scalar("SELECT count(*) FROM raw_shop.orders") == 4, "a dry run deletes nothing"

    done = {(d.schema, d.table): d.rows_deleted for d in retention.apply_retention(warehouse)}
    assert done == {key: d.rows_deleted for key, d in planned.items()}, "the dry run said what the run does"
    with warehouse.connect() as con:
        assert con.scalar("SELECT count(*) FROM raw_crm.accounts") == 3
        assert con.scalar("SELECT count(*) FROM raw_crm.accounts__contacts") == 3


def test_hub_retention_apply_dry_run_prints_each_tables_rule_cutoff_and_rows(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from integration_hub.cli import app

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    warehouse = Warehouse()
    _seed(warehouse)
    _load_merged_accounts(warehouse)
    as_of = (NOW + dt.timedelta(days=31)).strftime("%Y-%m-%d")
    out = CliRunner().invoke(app, ["retention", "apply", "--as-of", as_of, "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    rows = {(r["schema"], r["table"]): r for r in json.loads(out.output)}
    assert set(next(iter(rows.values()))) == {"schema", "table", "rule", "cutoff", "rows_deleted"}
    assert rows[("raw_crm", "accounts")]["rows_deleted"] == 0
    assert rows[("raw_shop", "orders")]["rows_deleted"] == 4, "31 days on, both appended loads expired"
    assert rows[("raw_shop", "orders")]["cutoff"].startswith(
        (NOW + dt.timedelta(days=1)).strftime("%Y-%m-%d")
    )
    with warehouse.connect() as con:
        assert con.scalar("SELECT count(*) FROM raw_shop.orders") == 4
