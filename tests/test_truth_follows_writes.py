"""The sandbox's truth follows the world once the hub writes back: what it creates through the
stand-ins' APIs (invoices, CRM accounts) moves the planted discrepancies it resolves, and every
later nightly's findings are still exactly the truth."""

from __future__ import annotations

import copy
import datetime as dt
import json

import httpx
import pytest
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox.truth import read_record
from typer.testing import CliRunner

from integration_hub.cli import app
from integration_hub.warehouse import Warehouse
from tests.test_recon_truth import assert_exactly_the_truth
from tests.test_sandbox_api import create_invoice as qbo_create_invoice
from tests.test_sandbox_api import crm_pages, crm_upsert

# The parts of the truth that describe the world (not the tally of what was created).
WORLD = ("discrepancies", "non_findings", "counts", "expected")


def create_invoice(box, order_ref: str, key: str) -> httpx.Response:
    payload = {"order_ref": order_ref, "customer_email": "ada@example.com", "currency": "usd",
               "amount_due": 12345, "invoice_date": "2026-11-20"}  # fmt: skip
    answer = qbo_create_invoice(box, payload, key)
    assert answer.status_code == 200 and "Fault" not in answer.json(), answer.text
    return answer


def upsert_accounts(box, records: list[dict]) -> list[dict]:
    results = crm_upsert(box, records).raise_for_status().json()
    assert all(r["success"] for r in results), results
    return results


def test_the_truth_follows_what_is_created_through_the_apis(make_sandbox):
    box = make_sandbox()
    record_file = box.home / "sandbox" / "truth.json"
    on_disk = record_file.read_bytes()
    seeded = box.truth
    assert seeded["hub_writes"] == {"created": {}, "not_followed": []}
    order_id = seeded["discrepancies"]["invoice_missing"][0]["order_id"]
    customer_id = seeded["discrepancies"]["crm_account_missing"][0]["customer_id"]
    existing = next(a for a in crm_pages(box, "accounts") if a["AccountNumber"])

    invoice = create_invoice(box, f"SO-{order_id:010d}", "follow-1").json()["Invoice"]
    stranger = create_invoice(box, "SO-9000000001", "follow-2").json()[
        "Invoice"
    ]  # an order the ERP never had
    created, updated, unknown = upsert_accounts(box, [
        {"AccountNumber": f"C{customer_id:09d}", "Name": "Planted Missing"},
        {"AccountNumber": existing["AccountNumber"], "Lifetime_Value__c": 1.5},
        {"AccountNumber": "C999999999", "Name": "Nobody Known"},
    ])  # fmt: skip
    assert (created["created"], updated["created"], unknown["created"]) == (True, False, True)
    httpx.post(f"{box.url('marketing')}/crm/v3/objects/contacts/batch/upsert",
               json={"inputs": [{"id": "t@example.com", "idProperty": "email", "properties": {}}]},
               headers={"Authorization": f"Bearer {CREDS['HUB_MARKETING_API_KEY']}"}).raise_for_status()  # fmt: skip
    httpx.post(f"{box.url('support')}/api/v2/tickets/create_many",
               json={"tickets": [{"external_id": "SO-9000000001", "comment": {"body": "an order"}}]},
               auth=(f"{CREDS['HUB_SUPPORT_EMAIL']}/token", CREDS["HUB_SUPPORT_API_TOKEN"])).raise_for_status()  # fmt: skip

    expected = copy.deepcopy(seeded)
    found = expected["discrepancies"]
    found["invoice_missing"].remove({"order_id": order_id})
    found["invoice_unpaid"] = sorted(
        [*found["invoice_unpaid"], {"invoice_id": invoice["Id"]}], key=lambda e: e["invoice_id"]
    )
    found["crm_account_missing"].remove({"customer_id": customer_id})
    expected["counts"]["billing.invoices"] += 2
    expected["counts"]["crm.accounts"] += 2
    expected["expected"]["canonical.invoice"] += 2
    expected["hub_writes"] = {
        "created": {"billing.invoices": 2, "crm.accounts": 2},  # the destinations are no part of the truth
        "not_followed": [
            {"system": "billing", "resource": "invoices", "id": stranger["Id"], "key": "SO-9000000001"},
            {"system": "crm", "resource": "accounts", "id": unknown["id"], "key": "C999999999"},
        ],
    }
    assert box.truth == expected
    assert record_file.read_bytes() == on_disk, "a server rewrote truth.json"
    # A replayed request creates nothing, so the truth does not move.
    assert create_invoice(box, f"SO-{order_id:010d}", "follow-1").status_code == 200
    assert box.truth == expected
    printed = CliRunner().invoke(app, ["sandbox", "truth", "--json"], env={"HUB_HOME": str(box.home)})
    assert printed.exit_code == 0 and json.loads(printed.stdout) == expected

    # A tick grows the record's counts; the creations are applied on top of it, once.
    report = box.tick(0.01)["records"]
    record, truth = read_record(box.home), box.truth
    assert (
        record["counts"]["billing.invoices"]
        == seeded["counts"]["billing.invoices"] + report["billing.invoices"]["new"]
    )
    assert truth["counts"]["billing.invoices"] == record["counts"]["billing.invoices"] + 2
    assert truth["counts"]["crm.accounts"] == record["counts"]["crm.accounts"] + 2
    assert record["discrepancies"] == seeded["discrepancies"] and truth["discrepancies"] == found


def nightly(box) -> str:
    """`hub run nightly`, in this process, at the live edge; the run's id."""
    from integration_hub.cli.run import run_job

    result = run_job("nightly", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"))
    assert result.success
    return result.run_id


@pytest.mark.slow
def test_every_nightly_finds_exactly_the_truth_as_it_follows_the_hubs_writes(make_sandbox, monkeypatch):
    for name in ("HUB_WAREHOUSE_URL", "HUB_DAGSTER_STORAGE_URL"):
        monkeypatch.delenv(name, raising=False)
    box = make_sandbox(export=True)
    monkeypatch.setenv("DAGSTER_HOME", str(box.home / "dagster"))
    warehouse = Warehouse()

    # The first nightly reads the world as seeded, then writes back.
    seeded = box.truth
    assert_exactly_the_truth(warehouse, seeded, nightly(box))
    followed = box.truth
    found, planted = followed["discrepancies"], seeded["discrepancies"]
    # It invoiced every fulfilled order that had no invoice, and created every missing CRM account.
    assert found["invoice_missing"] == [] and found["crm_account_missing"] == []
    assert len(found["invoice_unpaid"]) == len(planted["invoice_unpaid"]) + len(planted["invoice_missing"])
    assert followed["hub_writes"]["not_followed"] == []
    assert followed["hub_writes"]["created"]["billing.invoices"] == len(planted["invoice_missing"])
    assert followed["hub_writes"]["created"]["crm.accounts"] == len(planted["crm_account_missing"])

    # The business runs on; the next nightly finds the world as the truth now describes it.
    box.tick(0.01)
    before = box.truth
    second = nightly(box)
    after = box.truth
    assert {k: after[k] for k in WORLD} == {k: before[k] for k in WORLD}, (
        "the second nightly created no invoice or account"
    )
    assert after["hub_writes"]["not_followed"] == []
    assert_exactly_the_truth(warehouse, after, second)
