"""The sandbox world's ERP, made from TPC-H: customers, products, sales orders and their lines.

The ERP is the truth every other system is derived from. TPC-H has no people, so each
customer gets a name and an email from fixed lists; order dates are shifted so that the
newest order lands just before the anchor, and a share of the orders is marked as placed
in the web shop. The tables stay in the generator's DuckDB (`erp_customers`,
`erp_products`, `erp_orders`, `erp_lines`) for the later steps to derive from.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pyarrow as pa

# TPC-H order dates end on 1998-08-02: they are shifted so the newest lands yesterday.
TPCH_LAST_ORDER_DATE = dt.date(1998, 8, 3)
# Share of ERP orders that were placed in the web shop.
WEB_SHARE = 0.2

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


def make_erp(db: duckdb.DuckDBPyConnection, src: Path, anchor: dt.datetime) -> None:
    """Create the ERP tables in `db` from the TPC-H Parquet files in `src`."""
    _name_lists(db)
    _customers(db, src)
    _products(db, src)
    _order_lines(db, src)
    _orders(db, src, shift_days=(anchor.date() - TPCH_LAST_ORDER_DATE).days)
    # A line was last touched with its order.
    db.execute("ALTER TABLE erp_lines ADD COLUMN updated_at TIMESTAMP")
    db.execute(
        "UPDATE erp_lines SET updated_at = o.updated_at FROM erp_orders o WHERE o.order_id = erp_lines.order_id"
    )


def erp_tables(db: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    """The ERP's resources as it serves them (the name parts are only for deriving other systems)."""
    return {
        "customers": db.sql("SELECT * EXCLUDE (first_name, last_name) FROM erp_customers").to_arrow_table(),
        "products": db.sql("SELECT * FROM erp_products").to_arrow_table(),
        "sales_orders": db.sql("SELECT * FROM erp_orders").to_arrow_table(),
        "sales_order_lines": db.sql("SELECT * FROM erp_lines").to_arrow_table(),
    }


def _name_lists(db: duckdb.DuckDBPyConnection) -> None:
    db.execute(
        "CREATE TABLE first_names AS SELECT unnest(?) AS n, generate_subscripts(?, 1) - 1 AS i",
        [FIRST_NAMES, FIRST_NAMES],
    )
    db.execute(
        "CREATE TABLE last_names AS SELECT unnest(?) AS n, generate_subscripts(?, 1) - 1 AS i",
        [LAST_NAMES, LAST_NAMES],
    )


def _customers(db: duckdb.DuckDBPyConnection, src: Path) -> None:
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
    """)


def _products(db: duckdb.DuckDBPyConnection, src: Path) -> None:
    db.execute(f"""
        CREATE TABLE erp_products AS
        SELECT p_partkey AS product_id, 'SKU-' || lpad(p_partkey::VARCHAR, 8, '0') AS sku,
               p_name AS name, p_brand AS brand, p_type AS category,
               p_retailprice::DECIMAL(15, 2) AS unit_price, 'USD' AS currency,
               touched('prod_created', p_partkey) - INTERVAL 800 DAY AS created_at,
               touched('prod', p_partkey) AS updated_at
        FROM '{src}/part.parquet';
    """)


def _order_lines(db: duckdb.DuckDBPyConnection, src: Path) -> None:
    db.execute(f"""
        CREATE TABLE erp_lines AS
        SELECT l_orderkey AS order_id, l_linenumber AS line_number, l_partkey AS product_id,
               l_quantity::INTEGER AS quantity,
               round(l_extendedprice / l_quantity, 2)::DECIMAL(15, 2) AS unit_price,
               l_discount::DECIMAL(4, 2) AS discount, l_tax::DECIMAL(4, 2) AS tax,
               round(l_extendedprice * (1 - l_discount) * (1 + l_tax), 2)::DECIMAL(15, 2) AS line_amount
        FROM '{src}/lineitem.parquet';
    """)


def _orders(db: duckdb.DuckDBPyConnection, src: Path, shift_days: int) -> None:
    """Orders with the total of their lines; a web order carries the shop's order id as `external_ref`."""
    db.execute(f"""
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
