"""`hub audit trace` follows one order from its ERP and shop rows to its invoice and its support push."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from assets.syncs import get_sync
from integration_hub.cli import app
from integration_hub.engine import sync_engine
from integration_hub.warehouse import Warehouse


@pytest.fixture
def traced_hub(canonical_world, make_sandbox, monkeypatch):
    """A private copy of the canonical world, and a support desk to push to."""
    built, _ = canonical_world
    box = make_sandbox(export=True)
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    shutil.copy(built.duckdb_path, box.home / "warehouse.duckdb")
    return Warehouse()


def _push(warehouse: Warehouse, order_id: str) -> str:
    """Plan the support sync and really push this one order (the whole plan would take minutes)."""
    sync = get_sync("support_orders")
    changes = [c for c in sync_engine.plan(sync, warehouse).changes if c.key == order_id]
    result = sync_engine.push(sync, warehouse, changes)
    assert (result.delivered, result.rejected) == (1, 0)
    return result.run_id


def _trace(*args: str):
    return CliRunner().invoke(app, ["audit", "trace", *args])


def test_trace_shows_erp_row_shop_row_invoice_and_support_push(traced_hub):
    warehouse = traced_hub
    with warehouse.connect() as con:
        order_id, erp_id, shop_id = con.rows(
            "SELECT o.order_id, o.erp_order_id, o.shop_order_id FROM canonical.sales_order o "
            "JOIN canonical.invoice i ON i.order_id = o.order_id "
            "WHERE o.erp_order_id IS NOT NULL AND o.shop_order_id IS NOT NULL ORDER BY o.order_id LIMIT 1"
        )[0]
        invoices = sorted(
            r[0] for r in con.rows("SELECT invoice_id FROM canonical.invoice WHERE order_id = ?", [order_id])
        )
    push_run = _push(warehouse, order_id)

    answer = _trace(order_id, "--json")
    assert answer.exit_code == 0, answer.output
    (trace,) = json.loads(answer.output)
    assert trace["subject"] == {"entity": "sales_order", "id": order_id}
    assert [r["order_id"] for r in trace["sources"]["raw_erp.sales_orders"]] == [erp_id]
    assert [r["id"] for r in trace["sources"]["raw_shop.orders"]] == [shop_id]
    assert sorted(r["id"] for r in trace["sources"]["raw_billing.invoices"]) == invoices
    assert sorted(r["invoice_id"] for r in trace["canonical"]["invoice"]) == invoices
    assert trace["canonical"]["order_line"] and trace["canonical"]["customer"]
    pushes = [(p["sync"], p["key"], p["status"]) for p in trace["pushes"]]
    assert pushes == [("support_orders", order_id, "delivered")]
    assert {m["run_id"] for m in trace["runs"]} == {push_run}
    assert [m["direction"] for m in trace["runs"]] == ["push"]

    # The shop's own id leads to the same record; so does the human-readable view.
    by_shop = json.loads(_trace(f"shop:{shop_id}", "--json").output)
    assert [t["subject"]["id"] for t in by_shop] == [order_id]
    text = _trace(order_id).output
    assert "raw_erp.sales_orders" in text and "raw_shop.orders" in text
    assert f"support_orders {order_id} " in text and "delivered" in text


def test_trace_of_an_unknown_record_says_what_to_give(traced_hub):
    answer = _trace("SO-9999999999")
    assert answer.exit_code == 2
    assert "No canonical record matches 'SO-9999999999'" in answer.output


def test_trace_masks_personal_data_unless_asked(traced_hub):
    """Names, emails and phones (the canonical PII flags; in raw rows, fields named so) are masked
    in a trace unless `--show-pii` is given; ids and amounts are not."""
    warehouse = traced_hub
    with warehouse.connect() as con:
        customer_id, email, name = con.rows(
            "SELECT customer_id, email, name FROM canonical.customer WHERE email IS NOT NULL ORDER BY 1 LIMIT 1"
        )[0]
    (masked,) = json.loads(_trace(customer_id, "--json").output)
    (shown,) = json.loads(_trace(customer_id, "--json", "--show-pii").output)
    [customer] = masked["canonical"]["customer"]
    assert customer["customer_id"] == customer_id and customer["email"] == "•••" and customer["name"] == "•••"
    assert (
        shown["canonical"]["customer"][0]["email"] == email
        and shown["canonical"]["customer"][0]["name"] == name
    )
    raw = [row for rows in masked["sources"].values() for row in rows]
    assert raw, "the trace found the customer's source rows"
    text = json.dumps(masked)
    assert email not in text and email.split("@")[0] not in text, "no raw row leaks the email either"
    assert email in json.dumps(shown)
