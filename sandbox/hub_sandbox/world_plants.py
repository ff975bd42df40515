"""The planted discrepancies of the sandbox world: what each kind means and which keys carry it.

`pick_planted_keys` takes, for every kind, its keys from the ERP into a table `pick_<kind>`;
the derived systems (`world_systems.py`) then bend exactly those records, and the truth
(`world_truth.py`) lists them. Keys are ranked on `md5(seed, kind, key)`, so the same seed
and scale always plant the same keys.
"""

from __future__ import annotations

import duckdb

# Planted discrepancies: kind -> (what it means, share of the population, minimum count).
# Each is found by reconciliation (or identity resolution) with the key named in truth.
PLANTS = {
    # shop <-> ERP orders
    "shop_order_missing_in_erp": ("a web-shop order the ERP never received", 0.004, 3),
    "erp_order_missing_in_shop": ("an ERP web order the shop has no record of", 0.004, 3),
    "shop_amount_mismatch": ("shop total differs from the ERP total beyond tolerance", 0.004, 3),
    "shop_status_mismatch": ("shop says fulfilled, the ERP says open", 0.004, 3),
    # ERP fulfilled orders <-> billing invoices
    "invoice_missing": ("a fulfilled ERP order with no invoice", 0.002, 3),
    "invoice_duplicated": ("a fulfilled ERP order invoiced twice", 0.002, 3),
    "invoice_amount_mismatch": ("invoice amount differs from the order total beyond tolerance", 0.002, 3),
    # invoices <-> payments <-> settlement lines
    "invoice_unpaid": ("an open invoice with no payment", 0.002, 3),
    "invoice_partially_paid": ("payments cover only part of the invoice", 0.002, 3),
    "invoice_overpaid": ("payments exceed the invoice", 0.002, 3),
    "payment_not_settled": ("a payment that appears in no settlement file", 0.002, 3),
    # customers across ERP, CRM, shop
    "crm_account_missing": ("an ERP customer with no CRM account", 0.004, 3),
    "crm_duplicate_account": ("a second CRM account for one customer (case/spacing differ)", 0.004, 3),
    "shop_customer_unmatched": ("a shop customer who is no ERP customer", 0.004, 3),
}
# Planted look-alikes that must NOT be reported (tolerance and identity traps).
NON_FINDINGS = {
    "shop_amount_rounding": "shop total off by exactly the tolerance (a match)",
    "invoice_amount_rounding": "invoice off by exactly the tolerance (a match)",
    "invoice_in_eur": "invoice billed in EUR; equal after conversion at the recorded rate",
    "crm_account_number_missing": "CRM account without account number: same customer by email",
    "shop_customer_email_differs": "shop customer with another email: same customer by phone + name",
    "shared_phone_distinct_customers": "two ERP customers share a phone: distinct customers",
}

WEB_ORDERS = "SELECT order_id AS k FROM erp_orders WHERE channel = 'web'"
OPEN_WEB_ORDERS = "SELECT order_id AS k FROM erp_orders WHERE channel = 'web' AND status = 'open'"
FULFILLED_ORDERS = "SELECT order_id AS k FROM erp_orders WHERE status = 'fulfilled'"
CUSTOMERS = "SELECT customer_id AS k FROM erp_customers"
SHOP_CUSTOMERS = "SELECT DISTINCT customer_id AS k FROM erp_orders WHERE channel = 'web'"


def pick_planted_keys(db: duckdb.DuckDBPyConnection) -> None:
    """Fill `pick_<kind>` for every planted kind and look-alike; each kind takes its own keys.

    Kinds of one family never share a key (`taken` remembers what the family took).
    """
    db.execute("CREATE TABLE taken (family VARCHAR, k BIGINT)")
    for kind, population in [("erp_order_missing_in_shop", WEB_ORDERS), ("shop_amount_mismatch", WEB_ORDERS),
                             ("shop_amount_rounding", WEB_ORDERS), ("shop_status_mismatch", OPEN_WEB_ORDERS)]:  # fmt: skip
        _pick(db, kind, "shop_order", population)
    _pick(db, "shop_order_missing_in_erp", "shop_extra", WEB_ORDERS)  # templates for shop-only orders
    for kind in ["invoice_missing", "invoice_duplicated", "invoice_amount_mismatch", "invoice_amount_rounding",
                 "invoice_in_eur", "invoice_unpaid", "invoice_partially_paid", "invoice_overpaid",
                 "payment_not_settled"]:  # fmt: skip
        _pick(db, kind, "invoice", FULFILLED_ORDERS)
    # Customer plants: one family, so a customer carries at most one identity quirk.
    for kind, population in [("crm_account_missing", CUSTOMERS), ("crm_duplicate_account", CUSTOMERS),
                             ("crm_account_number_missing", CUSTOMERS),
                             ("shop_customer_email_differs", SHOP_CUSTOMERS),
                             ("shared_phone_distinct_customers", CUSTOMERS)]:  # fmt: skip
        _pick(db, kind, "customer", population)
    _pick(db, "shop_customer_unmatched", "shop_unmatched", CUSTOMERS)  # templates for strangers


def plant_shared_phones(db: duckdb.DuckDBPyConnection) -> None:
    """Two ERP customers share a phone: each picked customer copies the phone of its neighbour key.

    The pairs stay in `phone_pairs` (customer_id, twin_id) for the truth.
    """
    db.execute("""
        CREATE TABLE phone_pairs AS
        SELECT p.k AS customer_id, (SELECT min(customer_id) FROM erp_customers c
                                    WHERE c.customer_id > p.k AND c.customer_id NOT IN (SELECT k FROM taken)) AS twin_id
        FROM pick_shared_phone_distinct_customers p;
        UPDATE erp_customers SET phone = t.phone
        FROM (SELECT pp.customer_id, c.phone FROM phone_pairs pp JOIN erp_customers c ON c.customer_id = pp.twin_id) t
        WHERE erp_customers.customer_id = t.customer_id;
    """)


def _pick(db: duckdb.DuckDBPyConnection, kind: str, family: str, population_sql: str) -> None:
    """Take the first N keys of `population_sql` (one column `k`) ranked by md5(seed, kind, k) into `pick_<kind>`.

    N is the kind's share of the population (at least its minimum); a look-alike takes 0.2 %, at least 3.
    """
    total = db.execute(f"SELECT count(*) FROM ({population_sql})").fetchone()[0]
    if kind in PLANTS:
        _, share, minimum = PLANTS[kind]
        n = max(minimum, round(total * share))
    else:
        n = max(3, round(total * 0.002))
    db.execute(f"""
        CREATE OR REPLACE TABLE pick_{kind} AS
        SELECT k FROM ({population_sql}) p ANTI JOIN (SELECT k FROM taken WHERE family = '{family}') t USING (k)
        ORDER BY u('{kind}', k), k LIMIT {n};
        INSERT INTO taken SELECT '{family}', k FROM pick_{kind};""")  # fmt: skip
