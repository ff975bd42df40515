"""Nested children follow their parent: a re-loaded shop order's line items replace the stored
ones completely, also when the order has none left, on DuckDB and on Postgres, through a real
dlt pipeline and the shop adapter against a local shop."""

from __future__ import annotations

import uuid

import dlt
import pytest

from integration_hub.systems.kit.arrow import DELETED
from integration_hub.warehouse import Warehouse
from tests.shop_stub import ShopStub


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    if request.param == "duckdb":
        return Warehouse()
    return request.getfixturevalue("pg_warehouse")


def items(*skus: str) -> list[dict]:
    return [
        {"id": 100 + ord(sku[0]), "sku": sku, "quantity": i + 1, "price": "5.00"}
        for i, sku in enumerate(skus)
    ]


def order(order_id: int, updated_at: str, line_items: list[dict] | None) -> dict:
    return {"id": order_id, "updated_at": updated_at, "total_price": "10.00", "line_items": line_items}


def stored_items(warehouse: Warehouse) -> dict[int, list[tuple]]:
    """Per stored order: its line items (sku, list index, row id), as the staging model joins them."""
    with warehouse.connect() as con:
        rows = con.rows(
            "SELECT o.id, li.sku, li._dlt_list_idx, li._dlt_id FROM raw_shop.orders__line_items AS li "
            "LEFT JOIN raw_shop.orders AS o ON o._dlt_id = li._dlt_parent_id ORDER BY 1, 3"
        )
        orphans = con.scalar(
            "SELECT count(*) FROM raw_shop.orders__line_items AS li WHERE li._dlt_root_id NOT IN "
            "(SELECT _dlt_id FROM raw_shop.orders)"
        )
    assert orphans == 0, "line items whose order is gone"
    out: dict[int, list[tuple]] = {}
    for order_id, *item in rows:
        out.setdefault(order_id, []).append(tuple(item))
    return out


def test_an_orders_line_items_follow_it_down_to_none(warehouse, tmp_path):
    pipeline = dlt.pipeline(
        f"nested_{uuid.uuid4().hex[:6]}",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=warehouse.dlt_destination(),
        dataset_name="raw_shop",
    )
    with ShopStub() as shop:
        shop.put("orders", **order(1, "2026-11-20T10:00:00Z", items("A", "B")))
        shop.put("orders", **order(2, "2026-11-20T10:00:00Z", items("X")))
        pipeline.run(shop.source())
        first = stored_items(warehouse)
        assert {k: [i[:2] for i in v] for k, v in first.items()} == {1: [("A", 0), ("B", 1)], 2: [("X", 0)]}

        shop.put("orders", **order(1, "2026-11-20T11:00:00Z", items("A")))
        pipeline.run(shop.source())
        second = stored_items(warehouse)
        assert [i[:2] for i in second[1]] == [("A", 0)]
        assert second[2] == first[2]  # the other order's items, row ids included

        # Only order 1 changed and it has no items: the child table gets no row of its own.
        shop.put("orders", **order(1, "2026-11-20T12:00:00Z", []))
        pipeline.run(shop.source())
        third = stored_items(warehouse)
        assert 1 not in third
        assert third[2] == first[2]

        # Items come back to order 1 while order 2 loses its own (here as null) and a new order
        # arrives: the child table gets rows, none of them order 2's.
        shop.put("orders", **order(1, "2026-11-20T13:00:00Z", items("C")))
        shop.put("orders", **order(2, "2026-11-20T13:00:00Z", None))
        shop.put("orders", **order(3, "2026-11-20T13:00:00Z", items("Y", "Z")))
        pipeline.run(shop.source())
        fourth = stored_items(warehouse)
        assert {k: [i[:2] for i in v] for k, v in fourth.items()} == {1: [("C", 0)], 3: [("Y", 0), ("Z", 1)]}

    with warehouse.connect() as con:
        assert con.rows("SELECT id FROM raw_shop.orders ORDER BY id") == [(1,), (2,), (3,)]
        assert con.scalar("SELECT count(DISTINCT updated_at) FROM raw_shop.orders") == 1
        # The rows that only carried a deletion never land.
        assert (
            con.scalar(f"SELECT count(*) FROM raw_shop.orders__line_items WHERE {DELETED} IS NOT NULL") == 0
        )


def test_a_line_items_own_list_follows_it_when_the_item_stays(warehouse, tmp_path):
    """Grandchildren merge by the root too: an item that keeps its place but loses its tax
    lines loses them, while another order's are untouched."""
    pipeline = dlt.pipeline(
        f"nested_{uuid.uuid4().hex[:6]}",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=warehouse.dlt_destination(),
        dataset_name="raw_shop",
    )

    def taxed(*titles: str) -> list[dict]:
        return [{**items("A")[0], "tax_lines": [{"title": t, "rate": 0.1} for t in titles]}]

    def tax_lines() -> list[tuple]:
        with warehouse.connect() as con:
            return con.rows(
                "SELECT o.id, t.title FROM raw_shop.orders__line_items__tax_lines AS t "
                "JOIN raw_shop.orders AS o ON o._dlt_id = t._dlt_root_id ORDER BY 1, 2"
            )

    with ShopStub() as shop:
        shop.put("orders", **order(1, "2026-11-20T10:00:00Z", taxed("GST", "PST")))
        shop.put("orders", **order(2, "2026-11-20T10:00:00Z", taxed("VAT")))
        pipeline.run(shop.source())
        assert tax_lines() == [(1, "GST"), (1, "PST"), (2, "VAT")]

        shop.put("orders", **order(1, "2026-11-20T11:00:00Z", taxed()))
        pipeline.run(shop.source())
        assert tax_lines() == [(2, "VAT")]
        assert [i[0] for i in stored_items(warehouse)[1]] == ["A"]
