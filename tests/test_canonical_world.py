"""The canonical layer built from the world's raw tables holds exactly what the truth says."""

from __future__ import annotations

import dagster as dg
import pytest

from canonical import MODELS

# Each source resource, how many of its records a canonical table represents, and how
# many are deliberately filtered (the documented rule in docs/warehouse-tables.md).
ACCOUNTING = {
    "raw_erp.customers": ("SELECT count(*) FROM canonical.customer_xref x JOIN canonical.customer c "
                          "USING (customer_id) WHERE x.system = 'erp'", "SELECT 0"),
    "raw_crm.accounts": ("SELECT count(*) FROM canonical.customer_xref x JOIN canonical.customer c "
                         "USING (customer_id) WHERE x.system = 'crm'", "SELECT 0"),
    "raw_shop.customers": ("SELECT count(*) FROM canonical.customer_xref x JOIN canonical.customer c "
                           "USING (customer_id) WHERE x.system = 'shop'", "SELECT 0"),
    "raw_erp.products": ("SELECT count(*) FROM canonical.product WHERE source_system = 'erp'", "SELECT 0"),
    "raw_erp.sales_orders": ("SELECT count(*) FROM canonical.sales_order WHERE source_system = 'erp'", "SELECT 0"),
    # A shop order the ERP refers to is merged into the ERP's order.
    "raw_shop.orders": (
        "SELECT count(*) FROM canonical.sales_order WHERE source_system = 'shop'",
        "SELECT count(*) FROM staging.shop__sales_order s WHERE EXISTS (SELECT 1 FROM canonical.sales_order o "
        "WHERE o.shop_order_id = s.shop_order_id AND o.source_system = 'erp')",
    ),
    "raw_erp.sales_order_lines": ("SELECT count(*) FROM canonical.order_line WHERE source_system = 'erp'", "SELECT 0"),
    # ... and so are its lines: the ERP's lines stand for the order.
    "raw_shop.orders__line_items": (
        "SELECT count(*) FROM canonical.order_line WHERE source_system = 'shop'",
        "SELECT count(*) FROM staging.shop__order_line l WHERE EXISTS (SELECT 1 FROM canonical.sales_order o "
        "WHERE o.shop_order_id = l.shop_order_id AND o.source_system = 'erp')",
    ),
    "raw_billing.invoices": ("SELECT count(*) FROM canonical.invoice", "SELECT 0"),
    "raw_billing.payments": ("SELECT count(*) FROM canonical.payment", "SELECT 0"),
    # Not canonical entities: contacts are people at CRM accounts, settlement lines are
    # reconciled from raw (recon.payment_settlement).
    "raw_crm.contacts": ("SELECT 0", "SELECT count(*) FROM raw_crm.contacts"),
    "raw_payments.settlement": ("SELECT 0", "SELECT count(*) FROM raw_payments.settlement"),
}  # fmt: skip


def test_the_run_succeeds_and_every_blocking_check_passes(canonical_world):
    _, result = canonical_world
    assert result.success
    evaluations = {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}
    for entity in MODELS:
        assert evaluations[(entity, "keys_and_types")].passed, evaluations[
            (entity, "keys_and_types")
        ].metadata
    for entity in set(MODELS) - {"customer_xref"}:
        rows = evaluations[(entity, "row_rules")]
        assert rows.passed and rows.metadata["quarantined"].value == 0
    totals = evaluations[("sales_order", "total_matches_lines")]
    assert totals.passed and totals.metadata["orders_off"].value == 0


def test_canonical_tables_hold_exactly_the_expected_entities(canonical_world, sandbox_world):
    warehouse, _ = canonical_world
    expected = sandbox_world.truth["expected"]
    assert expected  # the truth names its canonical counts
    for table, count in expected.items():
        schema, name = table.split(".")
        assert warehouse.row_count(schema, name) == count, table
    counts = sandbox_world.truth["counts"]
    assert warehouse.row_count("canonical", "customer_xref") == (
        counts["erp.customers"] + counts["crm.accounts"] + counts["shop.customers"]
    )
    # ERP lines, plus the lines of shop orders the ERP never received.
    assert warehouse.row_count("canonical", "order_line") == counts[
        "erp.sales_order_lines"
    ] + _shop_only_lines(sandbox_world)


def _shop_only_lines(world) -> int:
    only = {d["shop_order_id"] for d in world.truth["discrepancies"]["shop_order_missing_in_erp"]}
    orders = world.tables["shop"]["orders"]
    return sum(
        len(items)
        for oid, items in zip(
            orders.column("id").to_pylist(), orders.column("line_items").to_pylist(), strict=True
        )
        if oid in only
    )


@pytest.mark.parametrize("source", sorted(ACCOUNTING))
def test_every_source_record_is_canonical_quarantined_or_filtered(canonical_world, source):
    warehouse, _ = canonical_world
    represented_sql, filtered_sql = ACCOUNTING[source]
    schema, table = source.split(".")
    with warehouse.connect() as con:
        source_rows = con.scalar(f"SELECT count(*) FROM {source}")
        represented = con.scalar(represented_sql)
        filtered = con.scalar(filtered_sql)
    entity = {"customers": "customer", "accounts": "customer", "products": "product", "sales_orders": "sales_order",
              "orders": "sales_order", "sales_order_lines": "order_line", "orders__line_items": "order_line",
              "invoices": "invoice", "payments": "payment"}.get(table)  # fmt: skip
    quarantined = (
        warehouse.row_count("quarantine", f"canonical_{entity}")
        if entity and warehouse.table_exists("quarantine", f"canonical_{entity}")
        else 0
    )
    assert source_rows > 0
    assert source_rows == represented + quarantined + filtered, (source, represented, quarantined, filtered)


def test_eur_invoices_convert_at_the_recorded_rate(canonical_world, sandbox_world):
    warehouse, _ = canonical_world
    eur_orders = [f"SO-{d['order_id']:010d}" for d in sandbox_world.truth["non_findings"]["invoice_in_eur"]]
    with warehouse.connect() as con:
        rows = con.rows(
            "SELECT order_id, currency, fx_rate, amount, amount_usd FROM canonical.invoice WHERE currency <> 'USD'"
        )
        totals = dict(con.rows("SELECT order_id, total_amount FROM canonical.sales_order"))
    assert sorted(r[0] for r in rows) == sorted(eur_orders)
    for order_id, currency, rate, amount, amount_usd in rows:
        assert currency == "EUR" and float(rate) == 1.08
        assert amount_usd == round(amount * rate, 2)
        assert abs(amount_usd - totals[order_id]) <= 0.01  # equal after conversion: a non-finding


def test_materializations_carry_schema_lineage_and_row_counts(canonical_world):
    warehouse, result = canonical_world
    events = {
        e.asset_key.to_user_string(): e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }
    for key, meta in events.items():
        if key.startswith(("staging/", "canonical/")) and key != "canonical/customer_xref":
            columns = [c.name for c in meta["dagster/column_schema"].schema.columns]
            layer, name = key.split("/")
            assert columns == [n for n, _ in warehouse.columns(layer, name)]
            assert meta["dagster/row_count"].value == warehouse.row_count(layer, name)
    lineage = events["canonical/sales_order"]["dagster/column_lineage"].lineage.deps_by_column
    assert (
        dg.TableColumnDep(asset_key=dg.AssetKey(["staging", "erp__sales_order"]), column_name="total_amount")
        in (lineage["total_amount"])
    )
    staging = events["staging/erp__sales_order"]["dagster/column_lineage"].lineage.deps_by_column
    assert {(d.asset_key.to_user_string(), d.column_name) for d in staging["total_amount"]} == {
        ("raw/erp/sales_orders", "total_amount"), ("seeds/fx_rates", "rate_to_usd")
    }  # fmt: skip


def test_every_build_is_audited(canonical_world):
    warehouse, result = canonical_world
    with warehouse.connect() as con:
        rows = dict(
            con.rows(
                "SELECT asset, rows_out FROM audit.data_movement WHERE direction = 'transform' AND run_id = ?",
                [result.run_id],
            )
        )
    assert rows["canonical/sales_order"] == warehouse.row_count("canonical", "sales_order")
    assert {k for k in rows if k.startswith("staging/")} == {
        f"staging/{n}" for n in ["billing__invoice", "billing__payment", "crm__customer", "erp__customer",
                                 "erp__order_line", "erp__product", "erp__sales_order", "shop__customer",
                                 "shop__order_line", "shop__sales_order"]
    }  # fmt: skip
