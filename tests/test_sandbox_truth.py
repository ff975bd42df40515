"""The truth's planted discrepancies really are in the systems' data, as served over HTTP and SQL."""

from __future__ import annotations

import csv
import sqlite3
from collections import defaultdict
from decimal import Decimal

import pytest

from tests.test_sandbox_api import (
    applied_to,
    billing_pages,
    cents,
    changed_at,
    crm_pages,
    order_ref,
    shop_pages,
)


@pytest.fixture(scope="module")
def served(sandbox) -> dict:
    """Everything the shared sandbox serves, read once over HTTP, plus the ERP and settlement files."""
    erp = sqlite3.connect(sandbox.home / "sandbox" / "erp.sqlite")
    orders = {r[0]: r[1:] for r in erp.execute(
        "SELECT order_id, order_number, status, total_amount, channel, external_ref FROM sales_orders")}  # fmt: skip
    customers = {r[0]: r[1] for r in erp.execute("SELECT customer_id, email FROM customers")}
    erp.close()
    settled = set()
    for path in (sandbox.home / "landing" / "payments").glob("settlement_*.csv"):
        with path.open() as f:
            settled |= {row["payment_metadata[payment_id]"] for row in csv.DictReader(f)}
    return {
        "orders": orders,
        "customers": customers,
        "invoices": billing_pages(sandbox, "invoices"),
        "payments": billing_pages(sandbox, "payments"),
        "shop_orders": {o["id"]: o for o in shop_pages(sandbox, "orders")},
        "shop_customers": {c["id"]: c for c in shop_pages(sandbox, "customers")},
        "accounts": {a["Id"]: a for a in crm_pages(sandbox, "accounts")},
        "settled": settled,
    }


def keys(truth: dict, kind: str, field: str, section: str = "discrepancies") -> list:
    found = [entry[field] for entry in truth[section][kind]]
    assert len(found) >= 3, f"{kind}: fewer plants than the minimum"
    return found


def test_billing_plants(sandbox, served):
    truth, orders = sandbox.truth, served["orders"]
    by_ref = defaultdict(list)
    for invoice in served["invoices"]:
        by_ref[order_ref(invoice)].append(invoice)
    for order_id in keys(truth, "invoice_missing", "order_id"):
        assert orders[order_id][1] == "fulfilled" and orders[order_id][0] not in by_ref
    for order_id in keys(truth, "invoice_duplicated", "order_id"):
        assert len(by_ref[orders[order_id][0]]) == 2
    for order_id in keys(truth, "invoice_amount_mismatch", "order_id"):
        (invoice,) = by_ref[orders[order_id][0]]
        assert abs(cents(invoice) - Decimal(str(orders[order_id][2])) * 100) > 1
    for order_id in keys(truth, "invoice_amount_rounding", "order_id", "non_findings"):
        (invoice,) = by_ref[orders[order_id][0]]
        assert abs(cents(invoice) - Decimal(str(orders[order_id][2])) * 100) == 1
    for order_id in keys(truth, "invoice_in_eur", "order_id", "non_findings"):
        assert by_ref[orders[order_id][0]][0]["CurrencyRef"]["value"] == "EUR"
    # every other fulfilled order has exactly one invoice of the order's amount
    planted = {k for kind in ("invoice_missing", "invoice_duplicated", "invoice_amount_mismatch") for k in
               keys(truth, kind, "order_id")} | {k for kind in ("invoice_amount_rounding", "invoice_in_eur")
                                                 for k in keys(truth, kind, "order_id", "non_findings")}  # fmt: skip
    for order_id, (number, status, total, *_) in orders.items():
        if status == "fulfilled" and order_id not in planted:
            (invoice,) = by_ref[number]
            assert cents(invoice) == round(Decimal(str(total)) * 100)


def test_payment_plants(sandbox, served):
    truth = sandbox.truth
    paid = defaultdict(int)
    for payment in served["payments"]:
        paid[applied_to(payment)] += cents(payment)
    due = {i["Id"]: cents(i) for i in served["invoices"]}
    for invoice_id in keys(truth, "invoice_unpaid", "invoice_id"):
        assert invoice_id in due and invoice_id not in paid
    for invoice_id in keys(truth, "invoice_partially_paid", "invoice_id"):
        assert 0 < paid[invoice_id] < due[invoice_id]
    for invoice_id in keys(truth, "invoice_overpaid", "invoice_id"):
        assert paid[invoice_id] > due[invoice_id]
    unsettled = set(keys(truth, "payment_not_settled", "payment_id"))
    payment_ids = {p["Id"] for p in served["payments"]}
    assert unsettled <= payment_ids
    assert served["settled"] == payment_ids - unsettled


def test_shop_order_plants(sandbox, served):
    truth, orders, shop = sandbox.truth, served["orders"], served["shop_orders"]
    refs = {o[4] for o in orders.values() if o[4]}
    for shop_id in keys(truth, "shop_order_missing_in_erp", "shop_order_id"):
        assert shop_id in shop and str(shop_id) not in refs
    for order_id in keys(truth, "erp_order_missing_in_shop", "order_id"):
        assert orders[order_id][3] == "web" and int(orders[order_id][4]) not in shop
    for order_id in keys(truth, "shop_amount_mismatch", "order_id"):
        shop_total = Decimal(shop[4500000000 + order_id]["total_price"])
        assert abs(shop_total - Decimal(str(orders[order_id][2]))) > Decimal("0.01")
    for order_id in keys(truth, "shop_amount_rounding", "order_id", "non_findings"):
        shop_total = Decimal(shop[4500000000 + order_id]["total_price"])
        assert abs(shop_total - Decimal(str(orders[order_id][2]))) == Decimal("0.01")
    for order_id in keys(truth, "shop_status_mismatch", "order_id"):
        assert (
            orders[order_id][1] == "open" and shop[4500000000 + order_id]["fulfillment_status"] == "fulfilled"
        )


def test_customer_plants(sandbox, served):
    truth, accounts = sandbox.truth, served["accounts"]
    numbers = {a["AccountNumber"] for a in accounts.values()}
    for customer_id in keys(truth, "crm_account_missing", "customer_id"):
        assert f"001{customer_id:015d}" not in accounts and f"C{customer_id:09d}" not in numbers
    for entry in truth["discrepancies"]["crm_duplicate_account"]:
        original, duplicate = accounts[f"001{entry['customer_id']:015d}"], accounts[entry["crm_account_id"]]
        assert duplicate["Email__c"].lower() == original["Email__c"] and duplicate["AccountNumber"] is None
    erp_emails = set(served["customers"].values())
    for shop_id in keys(truth, "shop_customer_unmatched", "shop_customer_id"):
        assert served["shop_customers"][shop_id]["email"].strip().lower() not in erp_emails
    for entry in truth["non_findings"]["crm_account_number_missing"]:
        assert accounts[entry["crm_account_id"]]["AccountNumber"] is None


def test_counts_match_what_is_served(sandbox, served):
    counts = sandbox.truth["counts"]
    assert counts["billing.invoices"] == len(served["invoices"])
    assert counts["billing.payments"] == len(served["payments"])
    assert counts["shop.orders"] == len(served["shop_orders"])
    assert counts["shop.customers"] == len(served["shop_customers"])
    assert counts["crm.accounts"] == len(served["accounts"])
    assert counts["erp.sales_orders"] == len(served["orders"])
    assert counts["payments.settlement"] == len(served["settled"])


def test_every_seeded_record_was_last_touched_before_the_anchor(sandbox, served):
    """A tick stamps its changes with the wall clock, which is past the anchor (midnight of the
    seeding day). A seeded record touched after the anchor, such as a payment an hour after an
    order touched just before midnight, would put an incremental cursor ahead of the next tick
    when seeding runs just after midnight, and that tick's records would never load."""
    anchor = sandbox.truth["anchor"]  # YYYY-MM-DD; every stamp below is ISO 8601 and compares as text
    erp = sqlite3.connect(sandbox.home / "sandbox" / "erp.sqlite")
    latest = {
        f"erp.{table}": erp.execute(f"SELECT max(updated_at) FROM {table}").fetchone()[0]
        for table in ("customers", "products", "sales_orders")
    }
    erp.close()
    latest |= {
        "billing.invoices": max(changed_at(r) for r in served["invoices"]),
        "billing.payments": max(changed_at(r) for r in served["payments"]),
        "shop.orders": max(o["updated_at"] for o in served["shop_orders"].values()),
        "shop.customers": max(c["updated_at"] for c in served["shop_customers"].values()),
        "crm.accounts": max(a["LastModifiedDate"] for a in served["accounts"].values()),
    }
    assert {name: stamp for name, stamp in latest.items() if str(stamp) >= anchor} == {}
