"""The sandbox world: one truth (TPC-H at a scale factor), every system derived from it.

`build_world` generates the ERP from `tpchgen-cli`, then derives what the CRM, the web
shop, billing and the payment processor hold, planting a recorded set of discrepancies.
Everything is set-based SQL in an in-memory DuckDB; picks are made by ranking keys on
`md5(seed, kind, key)`, so a given `--seed` and `--scale` always plant the same keys.

The result is a set of Arrow tables per system plus the truth (see `truth.py`); `seed.py`
writes them into each system's own store.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from canonical import MONEY_TOLERANCE

# TPC-H order dates end on 1998-08-02: they are shifted so the newest lands yesterday.
TPCH_LAST_ORDER_DATE = dt.date(1998, 8, 3)
# Seeded records were last touched within this many days before the anchor.
UPDATED_SPREAD_DAYS = 14
# ...and at least this long before it, so that what derives from a record (its shop copy
# +3 min, invoice +5 min, payment +65 min) is before the anchor too. A tick stamps its
# changes with the wall clock; a seeded record after the anchor would put an incremental
# cursor ahead of the tick's records whenever seeding runs just after midnight.
UPDATED_MARGIN = dt.timedelta(hours=2)
# Share of ERP orders that were placed in the web shop.
WEB_SHARE = 0.2
EUR_USD = 1.08  # billing's EUR invoices convert at this rate (fx table in truth)

FIRST_NAMES = [
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Edsger", "Barbara", "Donald", "Frances", "Ken",
    "Radia", "Dennis", "Sophie", "Tim", "Hedy", "John", "Katherine", "Niklaus", "Anita", "Guido",
    "Lena", "Marco", "Aisha", "Chen", "Olga", "Pedro", "Yuki", "Noah", "Fatima", "Lars",
    "Mina", "Ravi", "Ines", "Tom", "Zara", "Omar", "Elena", "Jonas", "Priya", "Hugo",
]  # fmt: skip
LAST_NAMES = [
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Dijkstra", "Liskov", "Knuth", "Allen",
    "Thompson", "Perlman", "Ritchie", "Wilson", "Berners", "Lamarr", "McCarthy", "Johnson", "Wirth",
    "Borg", "Rossum", "Meyer", "Rossi", "Khan", "Wang", "Ivanova", "Silva", "Tanaka", "Weber",
    "Haddad", "Nilsen", "Park", "Iyer", "Moreau", "Novak", "Ali", "Farouk", "Petrova", "Becker",
    "Sharma", "Dubois", "Jansen", "Costa", "Ortiz", "Sato", "Fischer", "Nakamura", "Larsen",
]  # fmt: skip

# ISO 3166 codes of the 25 TPC-H nations (the ERP stores names, the shop codes).
NATION_ISO = {
    "ALGERIA": "DZ", "ARGENTINA": "AR", "BRAZIL": "BR", "CANADA": "CA", "EGYPT": "EG",
    "ETHIOPIA": "ET", "FRANCE": "FR", "GERMANY": "DE", "INDIA": "IN", "INDONESIA": "ID",
    "IRAN": "IR", "IRAQ": "IQ", "JAPAN": "JP", "JORDAN": "JO", "KENYA": "KE", "MOROCCO": "MA",
    "MOZAMBIQUE": "MZ", "PERU": "PE", "CHINA": "CN", "ROMANIA": "RO", "SAUDI ARABIA": "SA",
    "VIETNAM": "VN", "RUSSIA": "RU", "UNITED KINGDOM": "GB", "UNITED STATES": "US",
}  # fmt: skip

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


@dataclass
class World:
    scale: float
    seed: int
    anchor: dt.datetime
    tables: dict[str, dict[str, pa.Table]] = field(default_factory=dict)  # system -> resource -> table
    truth: dict = field(default_factory=dict)


def tpch_dir(cache: Path, scale: float) -> Path:
    """Generate (once) the TPC-H tables at `scale` as Parquet; reused across seeds."""
    out = cache / f"sf{scale:g}"
    tables = ["customer", "orders", "lineitem", "part", "nation"]
    if all((out / f"{t}.parquet").exists() for t in tables):
        return out
    out.mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("tpchgen-cli")
    cmd = [str(exe) if exe.exists() else "tpchgen-cli", "parquet", "-s", f"{scale:g}",
           "--tables", ",".join(tables), "-o", str(out)]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def build_world(scale: float, seed: int, cache: Path, anchor: dt.datetime | None = None) -> World:
    anchor = anchor or dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    src = tpch_dir(cache, scale)
    db = duckdb.connect()
    db.execute("SET threads TO 2")
    db.execute("SET enable_progress_bar = false")
    shift_days = (anchor.date() - TPCH_LAST_ORDER_DATE).days
    db.execute(f"""
        CREATE MACRO u(kind, k) AS (md5_number('{int(seed)}:' || kind || ':' || k::VARCHAR) % 1000000) / 1000000.0;
        CREATE MACRO initcap(x) AS array_to_string(
            list_transform(string_split(lower(x), ' '), lambda w: upper(w[1]) || w[2:]), ' ');
        CREATE MACRO ts(x) AS strftime(x, '%Y-%m-%dT%H:%M:%S');
        CREATE MACRO touched(kind, k) AS TIMESTAMP '{anchor:%Y-%m-%d %H:%M:%S}'
            - to_seconds((u(kind, k) * {UPDATED_SPREAD_DAYS} * 86400)::BIGINT)
            - to_seconds({int(UPDATED_MARGIN.total_seconds())});
    """)
    db.execute(
        "CREATE TABLE first_names AS SELECT unnest(?) AS n, generate_subscripts(?, 1) - 1 AS i",
        [FIRST_NAMES, FIRST_NAMES],
    )
    db.execute(
        "CREATE TABLE last_names AS SELECT unnest(?) AS n, generate_subscripts(?, 1) - 1 AS i",
        [LAST_NAMES, LAST_NAMES],
    )
    db.execute("CREATE TABLE nation_iso AS SELECT unnest(map_keys(m)) AS n_name, unnest(map_values(m)) AS iso FROM (SELECT MAP(?, ?) AS m)",
               [list(NATION_ISO), list(NATION_ISO.values())])  # fmt: skip

    # ---- ERP: the truth -------------------------------------------------------------------
    db.execute(f"""
        CREATE TABLE erp_customers AS
        SELECT c.c_custkey AS customer_id,
               'C' || lpad(c.c_custkey::VARCHAR, 9, '0') AS account_number,
               f.n || ' ' || l.n AS name, f.n AS first_name, l.n AS last_name,
               lower(f.n || '.' || l.n) || '.' || c.c_custkey || '@'
                 || ['example.com', 'mail.example.org', 'corp.example.net'][1 + (c.c_custkey % 3)] AS email,
               c.c_phone AS phone, n.n_name AS country, c.c_address AS address,
               c.c_mktsegment AS segment, c.c_acctbal::DECIMAL(15, 2) AS balance,
               touched('cust_created', c.c_custkey) - INTERVAL 400 DAY AS created_at,
               touched('cust', c.c_custkey) AS updated_at
        FROM '{src}/customer.parquet' c
        JOIN '{src}/nation.parquet' n ON n.n_nationkey = c.c_nationkey
        JOIN first_names f ON f.i = c.c_custkey % {len(FIRST_NAMES)}
        JOIN last_names l ON l.i = (c.c_custkey // {len(FIRST_NAMES)}) % {len(LAST_NAMES)};

        CREATE TABLE erp_products AS
        SELECT p_partkey AS product_id, 'SKU-' || lpad(p_partkey::VARCHAR, 8, '0') AS sku,
               p_name AS name, p_brand AS brand, p_type AS category,
               p_retailprice::DECIMAL(15, 2) AS unit_price, 'USD' AS currency,
               touched('prod_created', p_partkey) - INTERVAL 800 DAY AS created_at,
               touched('prod', p_partkey) AS updated_at
        FROM '{src}/part.parquet';

        CREATE TABLE erp_lines AS
        SELECT l_orderkey AS order_id, l_linenumber AS line_number, l_partkey AS product_id,
               l_quantity::INTEGER AS quantity,
               round(l_extendedprice / l_quantity, 2)::DECIMAL(15, 2) AS unit_price,
               l_discount::DECIMAL(4, 2) AS discount, l_tax::DECIMAL(4, 2) AS tax,
               round(l_extendedprice * (1 - l_discount) * (1 + l_tax), 2)::DECIMAL(15, 2) AS line_amount
        FROM '{src}/lineitem.parquet';

        CREATE TABLE erp_orders AS
        WITH o AS (
            SELECT o.*, sum_amount FROM '{src}/orders.parquet' o
            JOIN (SELECT order_id, sum(line_amount) AS sum_amount FROM erp_lines GROUP BY 1) s
              ON s.order_id = o.o_orderkey)
        SELECT o_orderkey AS order_id, 'SO-' || lpad(o_orderkey::VARCHAR, 10, '0') AS order_number,
               o_custkey AS customer_id, (o_orderdate + {shift_days})::DATE AS order_date,
               CASE o_orderstatus WHEN 'F' THEN 'fulfilled' WHEN 'O' THEN 'open' ELSE 'partially_fulfilled' END AS status,
               sum_amount::DECIMAL(15, 2) AS total_amount, 'USD' AS currency,
               CASE WHEN u('web', o_orderkey) < {WEB_SHARE} THEN 'web' ELSE 'direct' END AS channel,
               CASE WHEN u('web', o_orderkey) < {WEB_SHARE} THEN (4500000000 + o_orderkey)::VARCHAR END AS external_ref,
               o_orderpriority AS priority,
               (o_orderdate + {shift_days})::TIMESTAMP + INTERVAL 9 HOUR AS created_at,
               greatest((o_orderdate + {shift_days})::TIMESTAMP + INTERVAL 10 HOUR, touched('order', o_orderkey)) AS updated_at
        FROM o;
    """)
    db.execute("ALTER TABLE erp_lines ADD COLUMN updated_at TIMESTAMP")
    db.execute(
        "UPDATE erp_lines SET updated_at = o.updated_at FROM erp_orders o WHERE o.order_id = erp_lines.order_id"
    )

    # ---- Picks: each planted kind takes its own keys, never shared with another kind -------
    db.execute("CREATE TABLE taken (family VARCHAR, k BIGINT)")

    def pick(kind: str, family: str, population_sql: str, n_override: int | None = None) -> None:
        """Take the first N keys of `population_sql` (one column `k`) ranked by md5(seed, kind, k) into `pick_<kind>`."""
        total = db.execute(f"SELECT count(*) FROM ({population_sql})").fetchone()[0]
        if kind in PLANTS:
            _, share, minimum = PLANTS[kind]
            n = max(minimum, round(total * share))
        else:
            n = n_override or max(3, round(total * 0.002))
        db.execute(f"""
            CREATE OR REPLACE TABLE pick_{kind} AS
            SELECT k FROM ({population_sql}) p ANTI JOIN (SELECT k FROM taken WHERE family = '{family}') t USING (k)
            ORDER BY u('{kind}', k), k LIMIT {n};
            INSERT INTO taken SELECT '{family}', k FROM pick_{kind};""")  # fmt: skip

    web = "SELECT order_id AS k FROM erp_orders WHERE channel = 'web'"
    web_open = "SELECT order_id AS k FROM erp_orders WHERE channel = 'web' AND status = 'open'"
    fulfilled = "SELECT order_id AS k FROM erp_orders WHERE status = 'fulfilled'"
    customers = "SELECT customer_id AS k FROM erp_customers"
    for kind, pop in [("erp_order_missing_in_shop", web), ("shop_amount_mismatch", web),
                      ("shop_amount_rounding", web), ("shop_status_mismatch", web_open)]:  # fmt: skip
        pick(kind, "shop_order", pop)
    pick("shop_order_missing_in_erp", "shop_extra", web)  # templates for shop-only orders
    for kind in ["invoice_missing", "invoice_duplicated", "invoice_amount_mismatch", "invoice_amount_rounding",
                 "invoice_in_eur", "invoice_unpaid", "invoice_partially_paid", "invoice_overpaid",
                 "payment_not_settled"]:  # fmt: skip
        pick(kind, "invoice", fulfilled)
    # Customer plants: one family, so a customer carries at most one identity quirk.
    shop_customers = "SELECT DISTINCT customer_id AS k FROM erp_orders WHERE channel = 'web'"
    for kind, pop in [("crm_account_missing", customers), ("crm_duplicate_account", customers),
                      ("crm_account_number_missing", customers), ("shop_customer_email_differs", shop_customers),
                      ("shared_phone_distinct_customers", customers)]:  # fmt: skip
        pick(kind, "customer", pop)
    pick("shop_customer_unmatched", "shop_unmatched", customers)  # templates for strangers

    # Two ERP customers share a phone: each picked customer copies the phone of its neighbour key.
    db.execute("""
        CREATE TABLE phone_pairs AS
        SELECT p.k AS customer_id, (SELECT min(customer_id) FROM erp_customers c
                                    WHERE c.customer_id > p.k AND c.customer_id NOT IN (SELECT k FROM taken)) AS twin_id
        FROM pick_shared_phone_distinct_customers p;
        UPDATE erp_customers SET phone = t.phone
        FROM (SELECT pp.customer_id, c.phone FROM phone_pairs pp JOIN erp_customers c ON c.customer_id = pp.twin_id) t
        WHERE erp_customers.customer_id = t.customer_id;
    """)

    # ---- Web shop ---------------------------------------------------------------------------
    tol = MONEY_TOLERANCE
    db.execute(f"""
        CREATE TABLE shop_customers AS
        SELECT 7000000000 + c.customer_id AS id,
               CASE WHEN c.customer_id IN (SELECT k FROM pick_shop_customer_email_differs)
                    THEN lower(c.first_name) || '_' || lower(c.last_name) || c.customer_id * 7 || '@personal.example'
                    WHEN u('email_case', c.customer_id) < 0.3 THEN '  ' || upper(c.email[1]) || c.email[2:] || ' '
                    ELSE c.email END AS email,
               CASE WHEN u('name_case', c.customer_id) < 0.2 THEN upper(c.first_name) ELSE c.first_name END AS first_name,
               c.last_name,
               '+' || replace(c.phone, '-', ' ') AS phone,
               n.iso AS country_code,
               c.created_at + INTERVAL 3 DAY AS created_at, touched('shop_cust', c.customer_id) AS updated_at
        FROM erp_customers c JOIN nation_iso n ON n.n_name = c.country
        WHERE c.customer_id IN (SELECT customer_id FROM erp_orders WHERE channel = 'web')
        UNION ALL  -- strangers: a signup whose name, email and phone match nobody in the ERP
        SELECT 7900000000 + p.k, 'newsletter.' || p.k || '@signup.example', 'Visitor', 'Number' || p.k,
               '+99 000 ' || lpad((p.k % 1000)::VARCHAR, 3, '0') || ' ' || lpad((p.k % 10000)::VARCHAR, 4, '0'),
               'US', TIMESTAMP '{anchor:%Y-%m-%d}' - INTERVAL 20 DAY, touched('shop_stranger', p.k)
        FROM pick_shop_customer_unmatched p;

        CREATE TABLE shop_orders_flat AS
        SELECT (4500000000 + o.order_id) AS id, o.order_id AS template_order_id, o.customer_id,
               CASE WHEN o.order_id IN (SELECT k FROM pick_shop_amount_mismatch) THEN o.total_amount + 5 + (o.order_id % 45)
                    WHEN o.order_id IN (SELECT k FROM pick_shop_amount_rounding) THEN o.total_amount + {tol}
                    ELSE o.total_amount END AS total,
               CASE WHEN o.order_id IN (SELECT k FROM pick_shop_status_mismatch) THEN 'fulfilled'
                    WHEN o.status = 'fulfilled' THEN 'fulfilled'
                    WHEN o.status = 'partially_fulfilled' THEN 'partial' END AS fulfillment_status,
               o.created_at, o.updated_at + INTERVAL 2 MINUTE AS updated_at
        FROM erp_orders o
        WHERE o.channel = 'web' AND o.order_id NOT IN (SELECT k FROM pick_erp_order_missing_in_shop)
        UNION ALL  -- orders the ERP never received: a copy of a template order under a new id
        SELECT 4600000000 + o.order_id, o.order_id, o.customer_id, o.total_amount, NULL,
               o.created_at, o.updated_at + INTERVAL 3 MINUTE
        FROM erp_orders o WHERE o.order_id IN (SELECT k FROM pick_shop_order_missing_in_erp);
    """)
    # ERP orders whose shop record is absent keep their external_ref (the ERP thinks they came from the web).
    shop_orders = db.sql("""
        SELECT s.id, '#' || (s.id - 4500000000 + 1000) AS name,
               sc.email, ts(s.created_at) || 'Z' AS created_at, ts(s.updated_at) || 'Z' AS updated_at,
               'USD' AS currency, printf('%.2f', s.total) AS total_price,
               CASE WHEN s.fulfillment_status = 'fulfilled' THEN 'paid' ELSE 'pending' END AS financial_status,
               s.fulfillment_status,
               {'id': sc.id, 'email': sc.email, 'first_name': sc.first_name, 'last_name': sc.last_name, 'phone': sc.phone} AS customer,
               list({'id': s.id * 100 + l.line_number, 'sku': 'SKU-' || lpad(l.product_id::VARCHAR, 8, '0'),
                      'quantity': l.quantity, 'price': printf('%.2f', l.unit_price),
                      'total_discount': printf('%.2f', round(l.unit_price * l.quantity * l.discount, 2)),
                      'line_total': printf('%.2f', l.line_amount)} ORDER BY l.line_number) AS line_items
        FROM shop_orders_flat s
        JOIN shop_customers sc ON sc.id = 7000000000 + s.customer_id
        JOIN erp_lines l ON l.order_id = s.template_order_id
        GROUP BY s.id, sc.email, s.created_at, s.updated_at, s.total, s.fulfillment_status,
                 sc.id, sc.first_name, sc.last_name, sc.phone
        ORDER BY s.id
    """).to_arrow_table()

    # ---- CRM ---------------------------------------------------------------------------------
    db.execute("""
        CREATE TABLE crm_accounts AS
        SELECT '001' || lpad(c.customer_id::VARCHAR, 15, '0') AS Id, c.name AS Name,
               CASE WHEN c.customer_id IN (SELECT k FROM pick_crm_account_number_missing) THEN NULL
                    ELSE c.account_number END AS AccountNumber,
               c.email AS Email__c,
               '(' || split_part(c.phone, '-', 1) || ') ' || split_part(c.phone, '-', 2) || '-'
                   || split_part(c.phone, '-', 3) || split_part(c.phone, '-', 4) AS Phone,
               initcap(c.country) AS BillingCountry, initcap(c.segment) AS Industry,
               NULL::DOUBLE AS Lifetime_Value__c, NULL::VARCHAR AS Last_Order_Date__c,
               ts(c.created_at) || 'Z' AS CreatedDate, ts(touched('crm', c.customer_id)) || 'Z' AS LastModifiedDate,
               'crm-user' AS LastModifiedById
        FROM erp_customers c WHERE c.customer_id NOT IN (SELECT k FROM pick_crm_account_missing)
        UNION ALL  -- the duplicate: no account number, the name shouted and padded, email in capitals
        SELECT '001D' || lpad(c.customer_id::VARCHAR, 14, '0'), '  ' || upper(c.name) || ' ', NULL,
               upper(c.email), NULL, initcap(c.country), initcap(c.segment), NULL, NULL,
               ts(c.created_at) || 'Z', ts(touched('crm_dup', c.customer_id)) || 'Z', 'crm-user'
        FROM erp_customers c WHERE c.customer_id IN (SELECT k FROM pick_crm_duplicate_account);

        CREATE TABLE crm_contacts AS
        SELECT '003' || substr(a.Id, 4) AS Id, a.Id AS AccountId, c.first_name AS FirstName, c.last_name AS LastName,
               a.Email__c AS Email, a.Phone, a.CreatedDate, a.LastModifiedDate
        FROM crm_accounts a JOIN erp_customers c ON c.customer_id = substr(a.Id, 5)::BIGINT
        WHERE a.Id NOT LIKE '001D%';
    """)

    # ---- Billing -------------------------------------------------------------------------------
    db.execute(f"""
        CREATE TABLE billing_invoices AS
        WITH base AS (
            SELECT o.order_id, o.order_number, c.email, o.order_date, o.updated_at,
                   CASE WHEN o.order_id IN (SELECT k FROM pick_invoice_amount_mismatch) THEN o.total_amount + 1 + (o.order_id % 90)
                        WHEN o.order_id IN (SELECT k FROM pick_invoice_amount_rounding) THEN o.total_amount - {tol}
                        ELSE o.total_amount END AS usd
            FROM erp_orders o JOIN erp_customers c USING (customer_id)
            WHERE o.status = 'fulfilled' AND o.order_id NOT IN (SELECT k FROM pick_invoice_missing)),
        inv AS (
            SELECT 'in_' || lpad(order_id::VARCHAR, 10, '0') AS id, 'INV-' || lpad(order_id::VARCHAR, 10, '0') AS number, *
            FROM base
            UNION ALL
            SELECT 'in_' || lpad(order_id::VARCHAR, 10, '0') || 'd', 'INV-' || lpad(order_id::VARCHAR, 10, '0') || '-2', *
            FROM base WHERE order_id IN (SELECT k FROM pick_invoice_duplicated))
        SELECT id, number, order_id, order_number AS order_ref, email AS customer_email,
               CASE WHEN order_id IN (SELECT k FROM pick_invoice_in_eur) THEN 'eur' ELSE 'usd' END AS currency,
               CASE WHEN order_id IN (SELECT k FROM pick_invoice_in_eur) THEN round(usd / {EUR_USD} * 100)
                    ELSE round(usd * 100) END::BIGINT AS amount_due,
               order_date + 1 AS invoice_date, updated_at + INTERVAL 5 MINUTE AS updated_at
        FROM inv;

        CREATE TABLE billing_payments AS
        SELECT 'py_' || substr(i.id, 4) AS id, i.id AS invoice, i.currency,
               CASE WHEN i.order_id IN (SELECT k FROM pick_invoice_partially_paid) THEN i.amount_due // 2
                    WHEN i.order_id IN (SELECT k FROM pick_invoice_overpaid) THEN i.amount_due + 1000
                    ELSE i.amount_due END AS amount,
               ['card', 'sepa_debit', 'bank_transfer'][1 + i.order_id % 3] AS method,
               i.order_id, i.updated_at + INTERVAL 1 HOUR AS updated_at
        FROM billing_invoices i WHERE i.order_id NOT IN (SELECT k FROM pick_invoice_unpaid);
    """)
    invoices = db.sql("""
        SELECT i.id, i.number, i.order_ref, i.customer_email, i.currency, i.amount_due,
               coalesce(p.amount, 0)::BIGINT AS amount_paid,
               CASE WHEN coalesce(p.amount, 0) >= i.amount_due THEN 'paid' ELSE 'open' END AS status,
               strftime(i.invoice_date, '%Y-%m-%d') AS invoice_date,
               ts(i.updated_at) || 'Z' AS updated_at
        FROM billing_invoices i LEFT JOIN billing_payments p ON p.invoice = i.id ORDER BY i.id
    """).to_arrow_table()
    payments = db.sql("""
        SELECT id, invoice, currency, amount, method, 'succeeded' AS status, ts(updated_at) || 'Z' AS created,
               ts(updated_at) || 'Z' AS updated_at
        FROM billing_payments ORDER BY id
    """).to_arrow_table()
    # Settlement lines: every payment except the unsettled ones, on the day after it was taken.
    settlement = db.sql("""
        SELECT strftime(p.updated_at + INTERVAL 1 DAY, '%Y-%m-%d') AS settlement_date,
               p.id AS payment_id, p.invoice AS invoice_id, upper(p.currency) AS currency,
               printf('%.2f', p.amount / 100) AS gross_amount,
               printf('%.2f', round(p.amount * 0.029 + 30) / 100) AS fee_amount,
               printf('%.2f', (p.amount - round(p.amount * 0.029 + 30)) / 100) AS net_amount
        FROM billing_payments p WHERE p.order_id NOT IN (SELECT k FROM pick_payment_not_settled)
        ORDER BY 1, 2
    """).to_arrow_table()

    def erp_table(name: str) -> pa.Table:
        return db.sql(f"SELECT * EXCLUDE (first_name, last_name) FROM {name}" if name == "erp_customers"
                          else f"SELECT * FROM {name}").to_arrow_table()  # fmt: skip

    world = World(scale=scale, seed=seed, anchor=anchor)
    world.tables = {
        "erp": {
            "customers": erp_table("erp_customers"),
            "products": erp_table("erp_products"),
            "sales_orders": erp_table("erp_orders"),
            "sales_order_lines": erp_table("erp_lines"),
        },
        "shop": {
            "orders": shop_orders,
            "customers": db.sql("""
            SELECT id, email, first_name, last_name, phone, country_code,
                   ts(created_at) || 'Z' AS created_at, ts(updated_at) || 'Z' AS updated_at
            FROM shop_customers ORDER BY id""").to_arrow_table(),
        },
        "crm": {
            "accounts": db.sql("SELECT * FROM crm_accounts ORDER BY Id").to_arrow_table(),
            "contacts": db.sql("SELECT * FROM crm_contacts ORDER BY Id").to_arrow_table(),
        },
        "billing": {"invoices": invoices, "payments": payments},
        "payments": {"settlement": settlement},
    }
    world.truth = _truth(db, world)
    db.close()
    return world


def _truth(db: duckdb.DuckDBPyConnection, world: World) -> dict:
    """The record of every planted discrepancy, by kind and key, plus expected counts."""

    def keys(kind: str) -> list:
        return [r[0] for r in db.execute(f"SELECT k FROM pick_{kind} ORDER BY k").fetchall()]

    def q(sql: str) -> list:
        return [r[0] for r in db.execute(sql).fetchall()]

    discrepancies = {
        "shop_order_missing_in_erp": [
            {"shop_order_id": 4600000000 + k} for k in keys("shop_order_missing_in_erp")
        ],
        "erp_order_missing_in_shop": [{"order_id": k} for k in keys("erp_order_missing_in_shop")],
        "shop_amount_mismatch": [{"order_id": k} for k in keys("shop_amount_mismatch")],
        "shop_status_mismatch": [{"order_id": k} for k in keys("shop_status_mismatch")],
        "invoice_missing": [{"order_id": k} for k in keys("invoice_missing")],
        "invoice_duplicated": [{"order_id": k} for k in keys("invoice_duplicated")],
        "invoice_amount_mismatch": [{"order_id": k} for k in keys("invoice_amount_mismatch")],
        "invoice_unpaid": [{"invoice_id": f"in_{k:010d}"} for k in keys("invoice_unpaid")],
        "invoice_partially_paid": [{"invoice_id": f"in_{k:010d}"} for k in keys("invoice_partially_paid")],
        "invoice_overpaid": [{"invoice_id": f"in_{k:010d}"} for k in keys("invoice_overpaid")],
        "payment_not_settled": [{"payment_id": f"py_{k:010d}"} for k in keys("payment_not_settled")],
        "crm_account_missing": [{"customer_id": k} for k in keys("crm_account_missing")],
        "crm_duplicate_account": [
            {"customer_id": k, "crm_account_id": f"001D{k:014d}"} for k in keys("crm_duplicate_account")
        ],
        "shop_customer_unmatched": [
            {"shop_customer_id": 7900000000 + k} for k in keys("shop_customer_unmatched")
        ],
    }
    # Dependent invoices: a duplicated invoice is paid in full, so it adds no payment finding.
    non_findings = {
        "shop_amount_rounding": [{"order_id": k} for k in keys("shop_amount_rounding")],
        "invoice_amount_rounding": [{"order_id": k} for k in keys("invoice_amount_rounding")],
        "invoice_in_eur": [{"order_id": k} for k in keys("invoice_in_eur")],
        "crm_account_number_missing": [
            {"customer_id": k, "crm_account_id": f"001{k:015d}"} for k in keys("crm_account_number_missing")
        ],
        "shop_customer_email_differs": [
            {"customer_id": k, "shop_customer_id": 7000000000 + k}
            for k in keys("shop_customer_email_differs")
        ],
        "shared_phone_distinct_customers": [
            {"customer_id": r[0], "twin_customer_id": r[1]}
            for r in db.execute("SELECT * FROM phone_pairs ORDER BY 1").fetchall()
        ],
    }
    t = world.tables
    counts = {
        f"{system}.{res}": tbl.num_rows for system, resources in t.items() for res, tbl in resources.items()
    }
    counts["shop.order_line_items"] = sum(
        len(x) for x in t["shop"]["orders"].column("line_items").to_pylist()
    )
    expected = {
        # ERP customers plus shop-only strangers: one canonical customer each.
        "canonical.customer": t["erp"]["customers"].num_rows + len(discrepancies["shop_customer_unmatched"]),
        # ERP orders plus shop orders the ERP never received.
        "canonical.sales_order": t["erp"]["sales_orders"].num_rows
        + len(discrepancies["shop_order_missing_in_erp"]),
        "canonical.product": t["erp"]["products"].num_rows,
        "canonical.invoice": t["billing"]["invoices"].num_rows,
        "canonical.payment": t["billing"]["payments"].num_rows,
    }
    return {
        "seed": world.seed,
        "scale": world.scale,
        "anchor": world.anchor.strftime("%Y-%m-%d"),
        "money_tolerance_usd": MONEY_TOLERANCE,
        "fx_rates_to_usd": {"USD": 1.0, "EUR": EUR_USD},
        "kinds": {k: v[0] for k, v in PLANTS.items()},
        "non_finding_kinds": NON_FINDINGS,
        "discrepancies": discrepancies,
        "non_findings": non_findings,
        "counts": counts,
        "expected": expected,
        "multi_invoice_orders": q("SELECT k FROM pick_invoice_duplicated ORDER BY k"),
    }
