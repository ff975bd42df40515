"""A tick changes every system consistently; incremental filters then return exactly the changed records."""

from __future__ import annotations

import csv
import sqlite3

import pytest

from tests.test_sandbox_api import billing_pages, cents, crm_pages, order_ref, shop_pages


@pytest.fixture(scope="module")
def ticked(tmp_path_factory, sandbox_template):
    """A private sandbox, its records before the tick, and the tick's report."""
    from hub_sandbox import runner

    from tests.conftest import start_copy

    box = start_copy(sandbox_template, tmp_path_factory.mktemp("tick_home"))
    before = {"invoices": billing_pages(box, "invoices"), "orders": shop_pages(box, "orders")}
    yield box, before, box.tick(0.01)
    runner.stop(box.home)


def test_incremental_filters_return_exactly_the_ticked_records(ticked):
    box, _, report = ticked
    at, records = report["at"], report["records"]
    assert report["tick"] == 1
    assert records["erp.sales_orders"]["new"] == 150 and records["erp.sales_orders"]["changed"] == 150
    shop = shop_pages(box, "orders", updated_at_min=at)
    assert len(shop) == records["shop.orders"]["new"] + records["shop.orders"]["changed"] > 0
    assert len(shop_pages(box, "customers", updated_at_min=at)) == records["shop.customers"]["changed"] > 0
    assert len(crm_pages(box, "accounts", modified_since=at)) == records["crm.accounts"]["changed"] == 15
    assert len(crm_pages(box, "contacts", modified_since=at)) == records["crm.contacts"]["changed"] == 15
    invoices = billing_pages(box, "invoices", updated_since=at)
    assert len(invoices) == records["billing.invoices"]["new"] > 0
    assert len(billing_pages(box, "payments", updated_since=at)) == records["billing.payments"]["new"]
    assert (
        billing_pages(box, "invoices", updated_before=at) == billing_pages(box, "invoices")[: -len(invoices)]
    )

    erp = sqlite3.connect(box.home / "sandbox" / "erp.sqlite")
    stamp = at.replace("T", " ").rstrip("Z")
    changed = erp.execute("SELECT count(*) FROM sales_orders WHERE updated_at >= ?", [stamp]).fetchone()[0]
    lines = erp.execute("SELECT count(*) FROM sales_order_lines WHERE updated_at >= ?", [stamp]).fetchone()[0]
    phones = erp.execute("SELECT count(*) FROM customers WHERE updated_at >= ?", [stamp]).fetchone()[0]
    erp.close()
    assert changed == 300 and lines == records["erp.sales_order_lines"]["new"] and phones == 15


def test_tick_keeps_systems_consistent(ticked):
    box, before, report = ticked
    at = report["at"]
    erp = sqlite3.connect(box.home / "sandbox" / "erp.sqlite")
    ticked_orders = {r[0]: r[1:] for r in erp.execute(
        "SELECT order_number, status, total_amount FROM sales_orders WHERE updated_at >= ?",
        [at.replace("T", " ").rstrip("Z")])}  # fmt: skip
    erp.close()
    invoices = billing_pages(box, "invoices", updated_since=at)
    # every fulfilled ticked order has exactly one paid invoice of its total, and nothing else was invoiced
    assert sorted(order_ref(i) for i in invoices) == sorted(
        n for n, o in ticked_orders.items() if o[0] == "fulfilled"
    )
    for invoice in invoices:
        assert cents(invoice) == round(ticked_orders[order_ref(invoice)][1] * 100) and invoice["Balance"] == 0
    settlement = [f for f in report["settlement_files"]]
    assert len(settlement) == 1
    with open(settlement[0]) as f:
        assert {row["invoice_id"] for row in csv.DictReader(f)} == {i["Id"] for i in invoices}
    shop_before = {o["id"]: o for o in before["orders"]}
    for order in shop_pages(box, "orders", updated_at_min=at):
        if order["id"] in shop_before:
            assert shop_before[order["id"]]["fulfillment_status"] is None
            assert order["fulfillment_status"] == "fulfilled" and order["financial_status"] == "paid"
        assert ticked_orders[f"SO-{order['id'] - 4500000000:010d}"][0] in ("open", "fulfilled")


def test_tick_is_deterministic_and_touches_no_planted_record(ticked, make_sandbox):
    box, _, report = ticked
    twin = make_sandbox()
    again = twin.tick(0.01)
    assert again["records"] == report["records"]

    def ticked_rows(home, stamp):
        with sqlite3.connect(home / "sandbox" / "erp.sqlite") as erp:
            return erp.execute(
                "SELECT order_id, customer_id, status, total_amount, channel FROM sales_orders"
                " WHERE updated_at >= ? ORDER BY 1", [stamp.replace("T", " ").rstrip("Z")]).fetchall()  # fmt: skip

    assert ticked_rows(box.home, report["at"]) == ticked_rows(twin.home, again["at"])
    truth = box.truth
    planted = {e["order_id"] for kind in truth["discrepancies"].values() for e in kind if "order_id" in e}
    assert planted.isdisjoint(r[0] for r in ticked_rows(box.home, report["at"]))
    second = twin.tick(0.01)
    assert second["tick"] == 2 and second["at"] > again["at"]
