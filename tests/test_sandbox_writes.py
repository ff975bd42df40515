"""Writes to the sandbox persist and read back: CRM upsert, billing idempotency, support and marketing batches."""

from __future__ import annotations

import httpx
import pytest
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox.crm import integration_user
from hub_sandbox.faults import unit_hash
from hub_sandbox.marketing import SYSTEM_PROPERTIES

from tests.support_desk import auth, desk_tickets
from tests.test_sandbox_api import (
    billing_pages,
    changed_at,
    create_invoice,
    crm_pages,
    crm_upsert,
    order_ref,
)

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
    before = crm_pages(box, "accounts")
    target = next(a for a in before if a["AccountNumber"])
    records = [{"AccountNumber": target["AccountNumber"], "Lifetime_Value__c": 1234.5},
               {"AccountNumber": "C999999999", "Name": "New Customer", "Email__c": "new@example.com"},
               {"Name": "no number"}, {"AccountNumber": "C999999998", "Colour__c": "red"}]  # fmt: skip
    results = crm_upsert(box, records).raise_for_status().json()
    assert [(r["success"], r.get("created")) for r in results] == [(True, False), (True, True), (False, None),
                                                                   (False, None)]  # fmt: skip
    assert results[0]["id"] == target["Id"] and results[1]["id"].startswith("001W")
    assert results[2]["errors"] == [
        {"statusCode": "REQUIRED_FIELD_MISSING", "message": "AccountNumber", "fields": ["AccountNumber"]}
    ]
    assert results[3]["errors"] == [
        {"statusCode": "INVALID_FIELD", "message": "Colour__c", "fields": ["Colour__c"]}
    ]

    stamp = max(a["LastModifiedDate"] for a in before)
    changed = {
        a["Id"]: a for a in crm_pages(box, "accounts", modified_since=stamp) if a["LastModifiedDate"] > stamp
    }
    assert set(changed) == {results[0]["id"], results[1]["id"]}
    updated = changed[target["Id"]]
    assert updated == target | {"Lifetime_Value__c": 1234.5, "LastModifiedDate": updated["LastModifiedDate"],
                                "SystemModstamp": updated["LastModifiedDate"],
                                "LastModifiedById": integration_user(CREDS["HUB_CRM_CLIENT_ID"])}  # fmt: skip
    assert changed[results[1]["id"]]["Name"] == "New Customer"
    assert len(crm_pages(box, "accounts")) == len(before) + 1
    assert box.stats("crm")["records_written"] >= 2

    too_many = [{"AccountNumber": f"C{i:09d}"} for i in range(201)]
    answer = crm_upsert(box, too_many)
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"


def test_crm_reject_writes_fails_the_same_records_every_time(box):
    box.set_fault("crm", "reject_writes", share=0.5)
    records = [{"AccountNumber": f"C8{i:08d}", "Name": f"n{i}"} for i in range(40)]
    first = [r["success"] for r in crm_upsert(box, records).json()]
    again = [r["success"] for r in crm_upsert(box, records).json()]
    assert first == again == [unit_hash("reject", "crm", r["AccountNumber"]) >= 0.5 for r in records]
    assert 0 < sum(first) < 40


def test_billing_requestid_creates_one_invoice(box):
    total = len(billing_pages(box, "invoices"))
    created = create_invoice(box, INVOICE, "k-1")
    assert created.status_code == 200, created.text
    replay = create_invoice(box, INVOICE, "k-1")
    assert replay.status_code == 200 and replay.json() == created.json(), (
        "QuickBooks answers the first response"
    )
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


def desk_job(box, method: str, path: str, tickets) -> dict:
    """Submit a bulk ticket write and poll its job status until it completes."""
    url = f"{box.url('support')}{path}"
    queued = httpx.request(method, url, json={"tickets": tickets}, auth=auth()).raise_for_status().json()
    assert queued["job_status"]["status"] == "queued" and queued["job_status"]["results"] is None
    status_url = queued["job_status"]["url"]
    while (job := httpx.get(status_url, auth=auth()).json()["job_status"])["status"] not in (
        "completed",
        "failed",
    ):
        pass
    return job


def test_support_bulk_tickets_through_job_statuses(box):
    create, update = "/api/v2/tickets/create_many.json", "/api/v2/tickets/update_many.json"
    tickets = [{"external_id": f"SO-{i:010d}", "comment": {"body": "an order"}, "status": "open",
                "custom_fields": [{"id": 360_002, "value": i + 0.5}]} for i in range(100)]  # fmt: skip
    job = desk_job(box, "POST", create, tickets)
    assert (job["status"], job["total"], job["progress"]) == ("completed", 100, 100)
    assert [(r["index"], r["status"], r["success"]) for r in job["results"]] == [
        (i, "Created", True) for i in range(100)
    ]
    ids = {t["external_id"]: r["id"] for t, r in zip(tickets, job["results"], strict=True)}
    job = desk_job(box, "PUT", update, [
        {"id": ids["SO-0000000003"], "status": "solved", "tags": ["order_deleted"]},
        {"id": 999_999, "status": "open"},
        {"id": ids["SO-0000000004"], "status": "lost"},
    ])  # fmt: skip
    assert [(r["index"], r["status"], r.get("error")) for r in job["results"]] == [
        (0, "Updated", None),
        (1, "Failed", "RecordNotFound"),
        (2, "Failed", "RecordInvalid"),
    ]
    no_comment = desk_job(box, "POST", create, [{"external_id": "SO-X"}])["results"][0]
    assert (no_comment["error"], no_comment["details"]) == ("RecordInvalid", "Description: cannot be blank")
    too_many = httpx.post(
        f"{box.url('support')}{create}", json={"tickets": tickets + tickets[:1]}, auth=auth()
    )
    assert too_many.status_code == 413
    assert (
        httpx.post(f"{box.url('support')}{create}", json={"tickets": "nope"}, auth=auth()).status_code == 400
    )

    held = {t["external_id"]: t for t in desk_tickets(box)}
    assert sorted(held) == sorted(ids)
    assert (held["SO-0000000003"]["status"], held["SO-0000000003"]["tags"]) == ("solved", ["order_deleted"])
    assert held["SO-0000000007"]["custom_fields"][1] == {"id": 360_002, "value": "7.5"}
    found = httpx.get(f"{box.url('support')}/api/v2/tickets.json", params={"external_id": "SO-0000000007"},
                      auth=auth()).json()  # fmt: skip
    assert [t["id"] for t in found["tickets"]] == [ids["SO-0000000007"]]
    count = httpx.get(f"{box.url('support')}/api/v2/tickets/count.json", auth=auth()).json()["count"]["value"]
    assert count == 100

    box.set_fault("support", "reject_writes", share=0.3)
    more = [{"external_id": f"X-{i}", "comment": {"body": "x"}} for i in range(50)]
    job = desk_job(box, "POST", create, more)
    failed = {more[r["index"]]["external_id"] for r in job["results"] if not r["success"]}
    assert failed == {
        o["external_id"] for o in more if unit_hash("reject", "support", o["external_id"]) < 0.3
    }
    assert len(desk_tickets(box)) == 100 + 50 - len(failed)


def test_marketing_batch_upsert_by_email(box):
    url = f"{box.url('marketing')}/crm/v3/objects/contacts/batch/upsert"
    inputs = [{"id": f"Person{i}@Example.com ", "idProperty": "email", "properties": {"firstname": f"P{i}"}}
              for i in range(100)]  # fmt: skip
    body = httpx.post(url, json={"inputs": inputs}, headers=MARKETING).json()
    assert body["status"] == "COMPLETE" and "errors" not in body  # HubSpot: 200 with no errors
    assert (
        all(r["new"] for r in body["results"])
        and body["results"][0]["properties"]["email"] == "person0@example.com"
    )
    again = [{"id": "person0@example.com", "idProperty": "email", "properties": {"lastname": "Zero"}},
             {"id": "not-an-email", "idProperty": "email", "properties": {}}]  # fmt: skip
    body = httpx.post(url, json={"inputs": again}, headers=MARKETING).json()
    assert [r["new"] for r in body["results"]] == [False]
    assert {k: v for k, v in body["results"][0]["properties"].items() if k not in SYSTEM_PROPERTIES} == {
        "firstname": "P0",
        "lastname": "Zero",
        "email": "person0@example.com",
    }
    assert [e["id"] for e in body["errors"]] == ["not-an-email"] and body["numErrors"] == 1  # a 207
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
