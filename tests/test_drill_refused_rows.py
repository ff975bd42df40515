"""Refused rows hold the cursor; nothing is billed twice (issue "No silent loss", point 1).

The operator's reproduction, through the hub's own jobs against a private sandbox: a full
build; two ticks; billing serves 10 % of its rows malformed; `hourly` runs (the contract
refuses them); the fault clears; `hourly` runs again; then the `nightly`. Before the fix the
refused invoices and payments were never read again, the nightly's `billing_invoices` sync
created a second invoice for each of their orders, and completeness reported billing's rows
as extra. Now the refused rows hold the billing cursor and land on the next run, and the
stores are the judge: billing holds exactly one invoice per order, and raw equals what
billing holds.
"""

from __future__ import annotations

import collections
import time

import pytest

from integration_hub import settings
from integration_hub.cli.run import run_job
from integration_hub.warehouse import Warehouse
from tests.test_drills_world import (
    assert_rejects_and_letters_equal_the_warehouse,
    audit_report,
    build_everything,
)
from tests.test_sandbox_api import billing_pages, order_ref

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _billing(box, resource: str) -> list[dict]:
    """Every record billing holds, read through its API."""
    return billing_pages(box, resource)


@pytest.fixture
def hub(make_sandbox, monkeypatch):
    box = make_sandbox(export=True)
    monkeypatch.setenv("DAGSTER_HOME", str(box.home / "dagster"))
    monkeypatch.setenv("HUB_LOAD_MAX_RETRIES", "0")
    for var in ("HUB_WAREHOUSE_URL", "HUB_DAGSTER_STORAGE_URL", "HUB_ALERT_WEBHOOK_URL"):
        monkeypatch.delenv(var, raising=False)
    assert all(r.success for r in build_everything())
    return box


def test_refused_rows_are_read_again_and_no_order_is_billed_twice(hub):
    box = hub
    box.tick()
    time.sleep(2)
    box.tick()
    box.set_fault("billing", "malformed", share=0.1)
    refused_run = run_job("hourly")
    refused = {
        e.event_specific_data.materialization.metadata["rows_rejected"].value
        for e in refused_run.all_events
        if e.is_step_materialization and e.asset_key.path[:2] == ["raw", "billing"]
    }
    assert max(refused) > 0, "the fault made the contract refuse billing rows"
    box.clear_faults("billing")
    assert run_job("hourly").success
    assert run_job("nightly").success

    invoices, payments = _billing(box, "invoices"), _billing(box, "payments")
    per_order = collections.Counter(order_ref(i) for i in invoices)
    # the world's own planted duplicates (the truth keys them by ERP order id; billing by order number)
    planted = {f"SO-{d['order_id']:010d}" for d in box.truth["discrepancies"]["invoice_duplicated"]}
    assert planted <= set(per_order), "the planted duplicates are there to tell apart"
    twice = {o for o, n in per_order.items() if n > 1} - planted
    assert not twice, f"the hub billed {len(twice)} orders a second time, e.g. {sorted(twice)[:3]}"
    with Warehouse(url=settings.warehouse_url()).connect() as con:
        raw_invoices = {r[0] for r in con.rows("SELECT id FROM raw_billing.invoices")}
        raw_payments = {r[0] for r in con.rows("SELECT id FROM raw_billing.payments")}
        completeness = con.rows(
            "SELECT kind, coalesce(left_key, right_key) FROM recon.source_completeness__results "
            "WHERE run_id = (SELECT max(run_id) FROM recon.summary WHERE flow = 'source_completeness' "
            "AND run_at = (SELECT max(run_at) FROM recon.summary WHERE flow = 'source_completeness'))"
        )
        debug = con.rows(
            "SELECT * FROM recon.source_completeness__results WHERE left_key LIKE 'billing%' OR right_key LIKE 'billing%'"
        )
        counts = con.rows("SELECT * FROM recon.source_counts WHERE system = 'billing' ORDER BY counted_at")
        q = con.rows(
            "SELECT count(*), count(DISTINCT source_key), min(source_key) FROM quarantine.billing__invoices"
        )
    assert [f for f in completeness if f[1].startswith("billing.")] == [], (
        debug,
        counts,
        q,
        len(raw_invoices),
        len(invoices),
    )
    assert raw_invoices == {i["Id"] for i in invoices}, "raw equals what billing holds"
    assert raw_payments == {p["Id"] for p in payments}
    # The refused rows are in the audit trail: `hub audit report` counts them by reason as the
    # quarantine tables do, and its dead letters are sync.dead_letter's.
    pack = audit_report()
    assert any(r["table"].startswith("quarantine.billing__") for r in pack["rejected_by_reason"])
    with Warehouse(url=settings.warehouse_url()).connect() as con:
        assert_rejects_and_letters_equal_the_warehouse(pack, con)
