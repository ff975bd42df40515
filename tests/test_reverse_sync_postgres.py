"""The reverse-sync engine on the Postgres warehouse: same plans, same outcomes, same dead letters."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from assets.syncs import SYNCS
from integration_hub.engine import sync_engine as rs
from integration_hub.warehouse import Warehouse
from tests.test_reverse_sync_e2e import copy_canonical, marketing_contacts


@pytest.fixture
def postgres_warehouse(postgres_url):
    """A private database, so parallel runs and other engineers' tests never share tables."""
    name = f"hub_sync_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield Warehouse(url=postgres_url.rsplit("/", 1)[0] + "/" + name)
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_plans_pushes_and_dead_letters_work_on_postgres(postgres_warehouse, make_sandbox, canonical_world):
    warehouse = postgres_warehouse
    box = make_sandbox(export=True)
    copy_canonical(canonical_world, warehouse)
    customers = box.truth["expected"]["canonical.customer"]
    strangers = len(box.truth["discrepancies"]["shop_customer_unmatched"])
    counts = {name: rs.plan(sync, warehouse).counts for name, sync in SYNCS.items()}
    missing_numbers = len(box.truth["non_findings"]["crm_account_number_missing"])
    assert counts["crm_accounts"]["insert"] == customers - strangers - missing_numbers
    assert counts["crm_accounts"]["filtered"] == strangers + missing_numbers
    assert counts["marketing_contacts"]["insert"] == customers
    assert counts["billing_invoices"]["insert"] == len(box.truth["discrepancies"]["invoice_missing"])

    sync = SYNCS["marketing_contacts"]
    box.set_fault("marketing", "reject_writes", share=0.05)
    first = rs.apply(sync, warehouse)
    assert first.rejected > 0 and first.delivered + first.rejected == customers
    assert len(rs.dead_letters(warehouse, sync.name)) == first.rejected
    box.clear_faults("marketing")
    [replayed] = rs.replay(warehouse, SYNCS, sync.name)
    assert (replayed.delivered, replayed.rejected) == (first.rejected, 0)
    assert rs.dead_letters(warehouse, sync.name) == []
    assert len(marketing_contacts(box)) == customers

    box.reset_stats("marketing")
    assert rs.apply(sync, warehouse).requests == 0 and box.stats("marketing")["requests"] == 0
    with warehouse.connect() as con:
        assert con.scalar(f"SELECT count(*) FROM {sync.state_table}") == customers
        assert con.scalar("SELECT count(*) FROM sync.changelog WHERE status = 'delivered'") == customers
