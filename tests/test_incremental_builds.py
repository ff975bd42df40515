"""Incremental models: a build by changed keys equals a full build, survives a kill mid-merge,
and says when and why it builds in full."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from integration_hub.engine import incremental, model_build, sql_models
from integration_hub.warehouse import Warehouse

STAGING = """-- Orders, one row per order, amounts in cents.
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT 'O-' || CAST(o.id AS VARCHAR) AS order_id, o.customer, CAST(o.cents AS BIGINT) AS cents,
       o._hub_deleted_at IS NOT NULL AS is_deleted
FROM raw_shop.orders AS o

{% changed_keys %}
SELECT 'O-' || CAST(id AS VARCHAR) AS order_id FROM {{ changes('raw_shop.orders') }}
"""
CANONICAL = """-- Totals per customer of its live orders.
{{ config(materialized='incremental', unique_key='customer') }}
SELECT customer, sum(cents) AS cents, count(*) AS orders
FROM staging.shop__order WHERE NOT is_deleted GROUP BY customer

{% changed_keys %}
-- the customers of changed orders (an order keeps its customer)
SELECT o.customer FROM staging.shop__order AS o
WHERE o.order_id IN (SELECT order_id FROM {{ changes('staging.shop__order') }})
"""


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "sql"
    for layer, name, sql in (("staging", "shop__order", STAGING), ("canonical", "order_total", CANONICAL)):
        (root / layer).mkdir(parents=True, exist_ok=True)
        (root / layer / f"{name}.sql").write_text(sql)
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.ensure_schema("raw_shop")
    with warehouse.connect() as con:
        con.execute(
            "CREATE TABLE raw_shop.orders (id BIGINT, customer VARCHAR, cents BIGINT, "
            "_dlt_load_id VARCHAR, _hub_deleted_at TIMESTAMP)"
        )
    return root, warehouse


class Source:
    """A raw table that changes as dlt loads it: upserts and tombstones under newer load ids."""

    def __init__(self, warehouse: Warehouse, seed: int):
        self.warehouse, self.rng, self.load = warehouse, random.Random(seed), 1_700_000_000

    def step(self, n: int = 20) -> None:
        self.load += 1
        load = f"{self.load}.000001"
        with self.warehouse.connect() as con, con.transaction():
            for _ in range(n):
                oid, action = self.rng.randrange(60), self.rng.random()
                if action < 0.1:  # a tombstone: the source deleted it
                    con.execute(
                        "UPDATE raw_shop.orders SET _hub_deleted_at = now(), _dlt_load_id = ? WHERE id = ?",
                        [load, oid],
                    )
                elif action > 0.2:  # an upsert: new, changed, or back after a deletion
                    con.execute("DELETE FROM raw_shop.orders WHERE id = ?", [oid])
                    customer = f"c{oid % 8}"
                    con.execute(
                        "INSERT INTO raw_shop.orders VALUES (?, ?, ?, ?, NULL)",
                        [oid, customer, self.rng.randrange(100, 10_000), load],
                    )


def models(root: Path) -> list[sql_models.SqlModel]:
    return sql_models.in_build_order(sql_models.discover(root))


def rows(warehouse: Warehouse, table: str) -> Counter:
    with warehouse.connect() as con:
        return Counter(con.rows(f"SELECT * FROM {table}"))


def test_builds_by_changed_keys_equal_full_builds(world, tmp_path):
    root, warehouse = world
    source = Source(warehouse, seed=7)
    source.step(60)
    built = [model_build.build(warehouse, m) for m in models(root)]
    assert [b.incremental for b in built] == [False, False] and built[0].reason == "first build"
    for _ in range(12):
        source.step()
        built = [model_build.build(warehouse, m) for m in models(root)]
        assert all(b.incremental for b in built), [b.reason for b in built]
        assert 0 < built[0].keys_changed <= 20
        incremental_rows = {t: rows(warehouse, t) for t in ("staging.shop__order", "canonical.order_total")}
        for m in models(root):
            model_build.build(warehouse, m, full=True)
        assert {t: rows(warehouse, t) for t in incremental_rows} == incremental_rows
    assert any(r[3] for r in rows(warehouse, "staging.shop__order")), "tombstones were carried"


def _killed_in_merge(path: str, root: str) -> None:
    """In a child process: build, and die by SIGKILL inside the merge's transaction."""

    def die(*_args, **_kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    incremental.finish = die
    for m in models(Path(root)):
        model_build.build(Warehouse(path=path), m)


def test_a_build_killed_mid_merge_leaves_the_tables_and_the_next_build_catches_up(world):
    root, warehouse = world
    source = Source(warehouse, seed=11)
    source.step(60)
    for m in models(root):
        model_build.build(warehouse, m)
    before = {t: rows(warehouse, t) for t in ("staging.shop__order", "canonical.order_total")}
    source.step()
    child = multiprocessing.get_context("fork").Process(
        target=_killed_in_merge, args=(str(warehouse.duckdb_path), str(root))
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert {t: rows(warehouse, t) for t in before} == before, "the killed merge changed nothing"
    caught_up = [model_build.build(warehouse, m) for m in models(root)]
    assert all(b.incremental for b in caught_up) and caught_up[0].keys_changed > 0
    after = {t: rows(warehouse, t) for t in before}
    for m in models(root):
        model_build.build(warehouse, m, full=True)
    assert {t: rows(warehouse, t) for t in before} == after
    with warehouse.connect() as con:  # no scratch table of the killed build is left
        left = con.rows("SELECT table_name FROM information_schema.tables WHERE table_name LIKE '_build_%'")
    assert left == []


def test_a_full_build_is_taken_when_incremental_cannot_be_trusted(world):
    root, warehouse = world
    source = Source(warehouse, seed=3)
    source.step(60)
    staging, canonical = models(root)
    model_build.build(warehouse, staging)
    model_build.build(warehouse, canonical)
    assert model_build.build(warehouse, staging, full=True).reason == "asked for a full build"
    assert model_build.build(warehouse, canonical).reason == "staging.shop__order was rebuilt in full since"
    with warehouse.connect() as con:  # the raw table reloaded whole, as a replace load does
        con.execute("UPDATE raw_shop.orders SET _dlt_load_id = '1800000000.000001'")
    assert model_build.build(warehouse, staging).reason == "raw_shop.orders was reloaded whole since"
    (root / "staging" / "shop__order.sql").write_text(STAGING.replace("AS cents", "AS cents "))
    changed = sql_models.discover(root)[0]
    assert model_build.build(warehouse, changed).reason == "its SQL file or a seed it reads changed"


@pytest.mark.parametrize(
    "sql, message",
    [
        ("{{ config(materialized='incremental') }}\nSELECT 1 AS a", "needs unique_key"),
        ("{{ config(materialized='incremental', unique_key='a') }}\nSELECT 1 AS a", "changed_keys"),
        ("{{ config(materialized='view') }}\nSELECT 1 AS a", "'table' or 'incremental'"),
        ("{{ config(unique=1) }}\nSELECT 1 AS a", "unknown config"),
    ],
)
def test_a_wrong_config_says_what_to_write(sql, message):
    with pytest.raises(incremental.IncrementalError, match=message):
        incremental.parse(sql, "x.sql")


LATE_STAGING = """-- Orders with their customer's name: the customer's record may land after its orders.
{{ config(materialized='incremental', unique_key='order_id') }}
SELECT o.id AS order_id, o.customer, c.name AS customer_name, o.changed_at
FROM raw_shop.orders AS o LEFT JOIN raw_shop.customers AS c ON c.id = o.customer

{% changed_keys %}
SELECT id AS order_id FROM {{ changes('raw_shop.orders') }}
UNION ALL
SELECT o.id FROM raw_shop.orders AS o WHERE o.customer IN (SELECT id FROM {{ changes('raw_shop.customers') }})
"""


def test_late_arriving_records_are_picked_up_by_their_load_not_their_timestamp(tmp_path):
    """Orders land before their customer, and a record changed at its source before the last
    build lands after it (a backdated `changed_at`): each reaches the model on the build after
    its load, and every build equals a full one."""
    root = tmp_path / "sql"
    (root / "staging").mkdir(parents=True)
    (root / "staging" / "shop__order_named.sql").write_text(LATE_STAGING)
    warehouse = Warehouse(path=str(tmp_path / "w.duckdb"))
    warehouse.ensure_schema("raw_shop")
    with warehouse.connect() as con:
        con.execute(
            "CREATE TABLE raw_shop.orders (id BIGINT, customer VARCHAR, changed_at TIMESTAMP, _dlt_load_id VARCHAR)"
        )
        con.execute("CREATE TABLE raw_shop.customers (id VARCHAR, name VARCHAR, _dlt_load_id VARCHAR)")
    (model,) = models(root)

    def load(n: int, orders=(), customers=()) -> None:
        with warehouse.connect() as con, con.transaction():
            for oid, customer, changed_at in orders:
                con.execute("DELETE FROM raw_shop.orders WHERE id = ?", [oid])
                con.execute(
                    "INSERT INTO raw_shop.orders VALUES (?, ?, ?, ?)",
                    [oid, customer, changed_at, f"17000000{n}.0"],
                )
            for cid, name in customers:
                con.execute("DELETE FROM raw_shop.customers WHERE id = ?", [cid])
                con.execute("INSERT INTO raw_shop.customers VALUES (?, ?, ?)", [cid, name, f"17000000{n}.0"])

    def build_and_compare() -> Counter:
        built = model_build.build(warehouse, model)
        after = rows(warehouse, "staging.shop__order_named")
        model_build.build(warehouse, model, full=True)
        assert rows(warehouse, "staging.shop__order_named") == after
        return built, after

    load(1, orders=[(1, "a", "2026-12-01 10:00"), (2, "b", "2026-12-01 11:00")], customers=[("a", "Ada")])
    build_and_compare()
    load(2, orders=[(3, "b", "2026-12-02 09:00")])  # b's orders still without b
    built, after = build_and_compare()
    assert built.incremental and after[(3, "b", None, dt.datetime(2026, 12, 2, 9))] == 1
    # b's record lands at last; order 1 changed at the source a day ago lands only now
    load(3, orders=[(1, "a", "2026-11-30 08:00")], customers=[("b", "Grace")])
    built, after = build_and_compare()
    assert built.incremental and built.keys_changed == 3
    assert after == Counter({(1, "a", "Ada", dt.datetime(2026, 11, 30, 8)): 1,
                             (2, "b", "Grace", dt.datetime(2026, 12, 1, 11)): 1,
                             (3, "b", "Grace", dt.datetime(2026, 12, 2, 9)): 1})  # fmt: skip
