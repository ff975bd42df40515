"""Writes to the sandbox persist and read back: CRM upsert, billing idempotency, support and marketing batches."""

from __future__ import annotations

import httpx
import pytest
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox.faults import unit_hash

from tests.test_sandbox_api import (
    CRM,
    billing_pages,
    changed_at,
    create_invoice,
    crm_pages,
    crm_token,
    order_ref,
)

SUPPORT = {"Authorization": f"Bearer {CREDS['HUB_SUPPORT_API_TOKEN']}"}
MARKETING = {"Authorization": f"Bearer {CREDS['HUB_MARKETING_API_KEY']}"}
INVOICE = {"order_ref": "SO-9000000001", "customer_email": "ada@example.com", "currency": "usd",
           "amount_due": 12345, "invoice_date": "2026-11-20"}  # fmt: skip


@pytest.fixture(scope="module")
def box(tmp_path_factory, sandbox_template):
    """One private sandbox for this module's writes (the shared one stays pristine)."""
    from hub_sandbox import runner

    from tests.conftest import start_copy

    sandbox = start_copy(sandbox_template, tmp_path_factory.mktemp("writes_home"))
    yield sandbox
    runner.stop(sandbox.home)


@pytest.fixture(autouse=True)
def no_faults_left(box):
    yield
    box.clear_faults()


def test_crm_upsert_updates_and_creates_accounts_and_reads_back(box):
    headers = {"Authorization": f"Bearer {crm_token(box)}"}
    before = crm_pages(box, "accounts")
    target = next(a for a in before if a["AccountNumber"])
    records = [{"AccountNumber": target["AccountNumber"], "Lifetime_Value__c": 1234.5},
               {"AccountNumber": "C999999999", "Name": "New Customer", "Email__c": "new@example.com"},
               {"Name": "no number"}, {"AccountNumber": "C999999998", "Colour__c": "red"}]  # fmt: skip
    answer = httpx.post(f"{box.url('crm')}{CRM}/accounts/upsert", json={"records": records}, headers=headers)
    results = answer.json()["results"]
    assert [(r["success"], r["created"]) for r in results] == [(True, False), (True, True), (False, False),
                                                               (False, False)]  # fmt: skip
    assert results[0]["id"] == target["Id"] and results[1]["id"].startswith("001W")
    assert results[2]["errors"] == ["REQUIRED_FIELD_MISSING: AccountNumber"]
    assert results[3]["errors"] == ["INVALID_FIELD: Colour__c"]

    stamp = max(a["LastModifiedDate"] for a in before)
    changed = {
        a["Id"]: a for a in crm_pages(box, "accounts", modified_since=stamp) if a["LastModifiedDate"] > stamp
    }
    assert set(changed) == {results[0]["id"], results[1]["id"]}
    updated = changed[target["Id"]]
    assert updated == target | {"Lifetime_Value__c": 1234.5, "LastModifiedDate": updated["LastModifiedDate"],
                                "LastModifiedById": CREDS["HUB_CRM_CLIENT_ID"]}  # fmt: skip
    assert changed[results[1]["id"]]["Name"] == "New Customer"
    assert len(crm_pages(box, "accounts")) == len(before) + 1
    assert box.stats("crm")["records_written"] >= 2

    too_many = [{"AccountNumber": f"C{i:09d}"} for i in range(201)]
    answer = httpx.post(f"{box.url('crm')}{CRM}/accounts/upsert", json={"records": too_many}, headers=headers)
    assert answer.status_code == 413


def test_crm_reject_writes_fails_the_same_records_every_time(box):
    headers = {"Authorization": f"Bearer {crm_token(box)}"}
    box.set_fault("crm", "reject_writes", share=0.5)
    records = [{"AccountNumber": f"C8{i:08d}", "Name": f"n{i}"} for i in range(40)]
    url = f"{box.url('crm')}{CRM}/accounts/upsert"
    first = [
        r["success"] for r in httpx.post(url, json={"records": records}, headers=headers).json()["results"]
    ]
    again = [
        r["success"] for r in httpx.post(url, json={"records": records}, headers=headers).json()["results"]
    ]
    assert first == again == [unit_hash("reject", "crm", r["AccountNumber"]) >= 0.5 for r in records]
    assert 0 < sum(first) < 40


def test_billing_requestid_creates_one_invoice(box):
    total = len(billing_pages(box, "invoices"))
    created = create_invoice(box, INVOICE, "k-1")
    assert created.status_code == 200, created.text
    replay = create_invoice(box, INVOICE, "k-1")
    assert replay.status_code == 200 and replay.json() == created.json(), "QuickBooks answers the first response"
    other_body = create_invoice(box, INVOICE | {"amount_due": 1}, "k-1")
    assert other_body.json() == created.json(), "a repeated requestid writes nothing, whatever the body"
    bad = create_invoice(box, INVOICE | {"currency": "gbp"}, "k-2")
    fault = bad.json()["Fault"]
    assert bad.status_code == 400 and fault["type"] == "ValidationFault"
    assert "CurrencyRef.value" in fault["Error"][0]["Detail"]

    invoices = billing_pages(box, "invoices")
    assert len(invoices) == total + 1
    mine = [i for i in invoices if order_ref(i) == INVOICE["order_ref"]]
    assert mine == [created.json()["Invoice"]]
    assert mine[0]["TotalAmt"] == mine[0]["Balance"] == 123.45 and mine[0]["Id"].startswith("in_n")
    assert mine[0]["BillEmail"] == {"Address": INVOICE["customer_email"]}
    assert billing_pages(box, "invoices", updated_since=changed_at(mine[0]))[-1] == mine[0]


def test_billing_reject_writes_answers_a_fault_and_writes_nothing(box):
    box.set_fault("billing", "reject_writes", share=1.0)
    total = len(billing_pages(box, "invoices"))
    answer = create_invoice(box, INVOICE | {"order_ref": "SO-9000000002"}, None)
    assert answer.status_code == 400 and answer.json()["Fault"]["Error"][0]["code"] == "6000"
    assert len(billing_pages(box, "invoices")) == total
    box.clear_faults("billing")
    answer = create_invoice(box, INVOICE | {"order_ref": "SO-9000000002"}, "r-1")
    assert answer.status_code == 200 and len(billing_pages(box, "invoices")) == total + 1


def support_pages(box) -> list[dict]:
    rows, after = [], None
    while True:
        params = {"page[size]": 30} | ({"page[after]": after} if after else {})
        body = httpx.get(f"{box.url('support')}/api/v2/orders", params=params, headers=SUPPORT).json()
        rows += body["orders"]
        after = body["meta"]["after_cursor"]
        if not body["meta"]["has_more"]:
            return rows


def test_support_bulk_upsert_by_external_id(box):
    url = f"{box.url('support')}/api/v2/orders/create_or_update_many"
    orders = [{"external_id": f"SO-{i:010d}", "status": "open"} for i in range(100)]
    results = httpx.post(url, json={"orders": orders}, headers=SUPPORT).json()["results"]
    assert [r["status"] for r in results] == ["Created"] * 100
    update = [{"external_id": "SO-0000000003", "status": "fulfilled"}, {"status": "lost"}]
    results = httpx.post(url, json={"orders": update}, headers=SUPPORT).json()["results"]
    assert [r["status"] for r in results] == ["Updated", "Failed"]
    assert httpx.post(url, json={"orders": orders + orders[:1]}, headers=SUPPORT).status_code == 413
    assert httpx.post(url, json={"orders": "nope"}, headers=SUPPORT).status_code == 400
    rows = support_pages(box)
    assert sorted(r["external_id"] for r in rows) == sorted(o["external_id"] for o in orders)
    assert next(r for r in rows if r["external_id"] == "SO-0000000003")["status"] == "fulfilled"

    box.set_fault("support", "reject_writes", share=0.3)
    more = [{"external_id": f"X-{i}"} for i in range(50)]
    results = httpx.post(url, json={"orders": more}, headers=SUPPORT).json()["results"]
    failed = {r["external_id"] for r in results if r["status"] == "Failed"}
    assert failed == {
        o["external_id"] for o in more if unit_hash("reject", "support", o["external_id"]) < 0.3
    }
    assert len(support_pages(box)) == 100 + 50 - len(failed)


def test_marketing_batch_upsert_by_email(box):
    url = f"{box.url('marketing')}/crm/v3/objects/contacts/batch/upsert"
    inputs = [{"id": f"Person{i}@Example.com ", "idProperty": "email", "properties": {"firstname": f"P{i}"}}
              for i in range(100)]  # fmt: skip
    body = httpx.post(url, json={"inputs": inputs}, headers=MARKETING).json()
    assert body["status"] == "COMPLETE" and body["errors"] == []
    assert (
        all(r["new"] for r in body["results"])
        and body["results"][0]["properties"]["email"] == "person0@example.com"
    )
    again = [{"id": "person0@example.com", "idProperty": "email", "properties": {"lastname": "Zero"}},
             {"id": "not-an-email", "idProperty": "email", "properties": {}}]  # fmt: skip
    body = httpx.post(url, json={"inputs": again}, headers=MARKETING).json()
    assert [r["new"] for r in body["results"]] == [False]
    assert body["results"][0]["properties"] == {
        "firstname": "P0",
        "lastname": "Zero",
        "email": "person0@example.com",
    }
    assert [e["id"] for e in body["errors"]] == ["not-an-email"]
    assert httpx.post(url, json={"inputs": inputs + inputs[:1]}, headers=MARKETING).status_code == 413

    rows, after = [], None
    while True:
        params = {"limit": 40} | ({"after": after} if after else {})
        page = httpx.get(
            f"{box.url('marketing')}/crm/v3/objects/contacts", params=params, headers=MARKETING
        ).json()
        rows += page["results"]
        after = page["paging"].get("next", {}).get("after")
        if not after:
            break
    assert len(rows) == 100 and len({r["id"] for r in rows}) == 100
    assert box.stats("marketing")["writes"] == 3
