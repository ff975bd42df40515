"""Canonical-shaped tables derived straight from the sandbox world, for reconciliation tests.

Follows docs/warehouse-tables.md: what the staging and canonical layers would produce from
the systems' data, with identity resolution by account number, then normalised email, then
phone + last name. It lets the reconciliation flows be checked against the truth without
running ingestion.
"""

from __future__ import annotations

import duckdb

from integration_hub.sandbox.world import EUR_USD, World
from resources.warehouse import Warehouse

TABLES = {
    ("canonical", "sales_order"): """
        SELECT order_number AS order_id, order_id AS erp_order_id, external_ref::BIGINT AS shop_order_id,
               customer_id::VARCHAR AS customer_id, order_date, status, total_amount::DECIMAL(18, 2) AS total_amount,
               currency, channel, 'erp' AS source_system
        FROM erp_orders
        UNION ALL
        SELECT 'SHOP-' || s.id, NULL, s.id, NULL, s.created_at[1:10]::DATE, 'open', s.total_price::DECIMAL(18, 2),
               'USD', 'web', 'shop'
        FROM shop_orders s WHERE s.id NOT IN (SELECT external_ref::BIGINT FROM erp_orders WHERE external_ref IS NOT NULL)""",
    ("staging", "shop__sales_order"): """
        SELECT id AS shop_order_id, name AS order_name, lower(trim(email)) AS email,
               total_price::DECIMAL(18, 2) AS total_amount, currency, 1.0 AS fx_rate,
               CASE fulfillment_status WHEN 'fulfilled' THEN 'fulfilled' WHEN 'partial' THEN 'partially_fulfilled'
                    ELSE 'open' END AS status
        FROM shop_orders""",
    ("canonical", "invoice"): f"""
        SELECT id AS invoice_id, number AS invoice_number, order_ref AS order_id, upper(currency) AS currency,
               (amount_due / 100)::DECIMAL(18, 2) AS amount,
               CASE currency WHEN 'eur' THEN {EUR_USD} ELSE 1.0 END AS fx_rate,
               round(amount_due / 100 * CASE currency WHEN 'eur' THEN {EUR_USD} ELSE 1.0 END, 2)::DECIMAL(18, 2) AS amount_usd,
               status, invoice_date::DATE AS invoice_date
        FROM invoices""",
    ("canonical", "payment"): f"""
        SELECT id AS payment_id, invoice AS invoice_id, upper(currency) AS currency,
               (amount / 100)::DECIMAL(18, 2) AS amount,
               CASE currency WHEN 'eur' THEN {EUR_USD} ELSE 1.0 END AS fx_rate,
               round(amount / 100 * CASE currency WHEN 'eur' THEN {EUR_USD} ELSE 1.0 END, 2)::DECIMAL(18, 2) AS amount_usd,
               method, status
        FROM payments""",
    ("staging", "payments__settlement"): f"""
        SELECT settlement_date::DATE AS settlement_date, payment_id, invoice_id, currency,
               gross_amount::DECIMAL(18, 2) AS gross_amount, fee_amount::DECIMAL(18, 2) AS fee_amount,
               net_amount::DECIMAL(18, 2) AS net_amount, CASE currency WHEN 'EUR' THEN {EUR_USD} ELSE 1.0 END AS fx_rate
        FROM settlement""",
    ("canonical", "customer_xref"): """
        WITH erp AS (SELECT customer_id::VARCHAR AS customer_id, account_number, lower(trim(email)) AS email,
                            regexp_replace(phone, '[^0-9]', '', 'g') AS phone, lower(split_part(name, ' ', 2)) AS last_name
                     FROM erp_customers),
        crm AS (SELECT a.Id, coalesce(e1.customer_id, e2.customer_id) AS customer_id,
                       CASE WHEN e1.customer_id IS NOT NULL THEN 'external_id' ELSE 'email' END AS rule
                FROM crm_accounts a
                LEFT JOIN erp e1 ON e1.account_number = a.AccountNumber
                LEFT JOIN erp e2 ON a.AccountNumber IS NULL AND e2.email = lower(trim(a.Email__c))),
        shop AS (SELECT s.id::VARCHAR AS id, coalesce(e1.customer_id, e2.customer_id, 'SHOP-' || s.id) AS customer_id,
                        CASE WHEN e1.customer_id IS NOT NULL THEN 'email' WHEN e2.customer_id IS NOT NULL
                             THEN 'phone_name' ELSE 'anchor' END AS rule
                 FROM shop_customers s
                 LEFT JOIN erp e1 ON e1.email = lower(trim(s.email))
                 LEFT JOIN erp e2 ON e1.customer_id IS NULL AND e2.phone = regexp_replace(s.phone, '[^0-9]', '', 'g')
                                 AND e2.last_name = lower(s.last_name))
        SELECT 'erp' AS system, customer_id AS source_id, customer_id, 'anchor' AS match_rule, 1.0 AS confidence FROM erp
        UNION ALL SELECT 'crm', Id, customer_id, rule, 0.9 FROM crm
        UNION ALL SELECT 'shop', id, customer_id, rule, 0.9 FROM shop""",
}


def load_canonical(warehouse: Warehouse, world: World) -> dict[tuple[str, str], int]:
    """Write the canonical/staging tables the flows read; returns rows per table."""
    db = duckdb.connect()
    sources = {
        "erp_orders": world.tables["erp"]["sales_orders"],
        "erp_customers": world.tables["erp"]["customers"],
        "shop_orders": world.tables["shop"]["orders"],
        "shop_customers": world.tables["shop"]["customers"],
        "crm_accounts": world.tables["crm"]["accounts"],
        "invoices": world.tables["billing"]["invoices"],
        "payments": world.tables["billing"]["payments"],
        "settlement": world.tables["payments"]["settlement"],
    }
    for name, table in sources.items():
        db.register(name, table)
    counts = {}
    for (schema, table), sql in TABLES.items():
        data = db.sql(sql).to_arrow_table()
        counts[(schema, table)] = warehouse.write_arrow(schema, table, data, mode="replace")
    db.close()
    return counts


def test_derived_tables_have_the_truths_expected_counts(tmp_path, sandbox_world):
    from tests.test_recon_truth import FileWarehouse

    counts = load_canonical(FileWarehouse(path=str(tmp_path / "w.duckdb")), sandbox_world)
    for table in ("sales_order", "invoice", "payment"):
        assert counts[("canonical", table)] == sandbox_world.truth["expected"][f"canonical.{table}"]
