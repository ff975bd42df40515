"""The canonical model's rules: documented fields, quarantined rows, blocking key checks."""

from __future__ import annotations

import json

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

import canonical
from canonical import docs
from integration_hub.engine import validation
from integration_hub.warehouse import Warehouse
from tests.raw_world import load_raw_world, materialize_transforms


def test_every_field_says_what_it_means_who_owns_it_and_whether_it_is_pii():
    for name, model in canonical.MODELS.items():
        for column, col in model.to_schema().columns.items():
            assert col.description, f"{name}.{column} has no meaning"
            assert col.metadata["owner"] in ("erp", "crm", "shop", "billing", "hub"), f"{name}.{column}"
            assert isinstance(col.metadata["pii"], bool)
    assert canonical.Customer.to_schema().columns["email"].metadata["pii"] is True


def test_the_business_page_is_generated_from_the_models():
    assert docs.README.read_text() == docs.render(), "run `python -m canonical.docs` and commit README.md"
    assert "| `amount_usd` |" in docs.README.read_text()


def test_rows_breaking_a_rule_are_quarantined_with_the_rule_and_left_out(tmp_path, sandbox_world):
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    load_raw_world(warehouse, sandbox_world)
    invoices = sandbox_world.tables["billing"]["invoices"]
    with warehouse.connect() as con:
        # Two planted bad invoices: an unknown currency and a negative total.
        con.execute(
            "UPDATE raw_billing.invoices SET currency_ref__value = 'us dollars' WHERE id = ?",
            [invoices["Id"][0].as_py()],
        )
        con.execute(
            "UPDATE raw_billing.invoices SET total_amt = -5 WHERE id = ?", [invoices["Id"][1].as_py()]
        )
    result = materialize_transforms(warehouse)
    assert result.success

    quarantined = {r[0]: r[1:] for r in _rows(warehouse, "SELECT source_key, reason, payload, run_id "
                                                         "FROM quarantine.canonical_invoice")}  # fmt: skip
    assert set(quarantined) == {invoices["Id"][0].as_py(), invoices["Id"][1].as_py()}
    assert "currency: str_matches" in quarantined[invoices["Id"][0].as_py()][0]
    assert "amount: greater_than_or_equal_to(0)" in quarantined[invoices["Id"][1].as_py()][0]
    assert json.loads(quarantined[invoices["Id"][1].as_py()][1])["amount"] == -5.0
    assert {r[2] for r in quarantined.values()} == {result.run_id}
    # ... and excluded: in = canonical + quarantined.
    assert warehouse.row_count("canonical", "invoice") == invoices.num_rows - 2
    check = next(
        e for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey(["canonical", "invoice"]) and e.check_name == "row_rules"
    )  # fmt: skip
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.metadata["quarantined"].value == 2
    assert len(check.metadata["sample"].value) == 2


def test_a_duplicate_key_fails_the_blocking_check(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    payments = pa.table({
        "payment_id": ["py_1", "py_1", "py_2"], "invoice_id": ["in_1", "in_1", "in_2"], "currency": ["USD"] * 3,
        "amount": pa.array([1, 1, 2], pa.decimal128(18, 2)), "fx_rate": [1.0] * 3,
        "amount_usd": pa.array([1, 1, 2], pa.decimal128(18, 2)), "method": ["card"] * 3,
        "status": ["succeeded"] * 3, "paid_at": pa.array([None] * 3, pa.timestamp("us")),
    })  # fmt: skip
    warehouse.write_arrow("canonical", "payment", payments, mode="replace")
    result = validation.keys_and_types(warehouse, "payment")
    assert not result.passed and result.severity == "ERROR"
    assert result.metadata["duplicate_keys"] == 1
    assert result.metadata["sample_duplicates"] == [["py_1", "2"]]

    warehouse.write_arrow("canonical", "payment", payments.filter(pc.field("payment_id") == "py_2")
                          .drop_columns(["method"]).set_column(0, "payment_id", pa.array([7])), mode="replace")  # fmt: skip
    problems = validation.keys_and_types(warehouse, "payment").metadata["problems"]
    assert "column method is missing" in problems
    assert any(p.startswith("column payment_id is BIGINT") for p in problems)


def _rows(warehouse, sql):
    with warehouse.connect() as con:
        return con.rows(sql)


def test_an_order_whose_lines_do_not_add_up_is_reported(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    money = pa.decimal128(18, 2)
    warehouse.write_arrow("canonical", "sales_order", pa.table({
        "order_id": ["SO-1", "SO-2"], "total_amount": pa.array([30, 10], money),
    }), mode="replace")  # fmt: skip
    warehouse.write_arrow("canonical", "order_line", pa.table({
        "order_id": ["SO-1", "SO-1", "SO-2"], "line_amount": pa.array([10, 20, 12], money),
    }), mode="replace")  # fmt: skip
    result = validation.order_totals(warehouse)
    assert not result.passed and result.severity == "WARN"
    assert result.metadata["orders_off"] == 1
    assert result.metadata["sample"] == [["SO-2", "10.00", "12.00"]]
