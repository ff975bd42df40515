"""Reverse sync end to end: real sandbox destinations over HTTP, the embedded warehouse, real faults.

Each test writes, so each gets its own sandbox (`make_sandbox`) and warehouse (its HUB_HOME).
The canonical tables are the transform layer's real output for the world the sandbox serves
(the session's `canonical_world`, copied); the echo test runs ingestion over HTTP itself.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import dagster as dg
import duckdb
import httpx
import pytest
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox.crm import integration_user
from hub_sandbox.marketing import SYSTEM_PROPERTIES
from typer.testing import CliRunner

from assets.syncs import SYNCS
from integration_hub.cli import app
from integration_hub.engine import sql_models
from integration_hub.engine import sync_engine as rs
from integration_hub.warehouse import Warehouse
from tests.support_desk import support_orders
from tests.test_sandbox_api import billing_pages, crm_pages, order_ref

CANONICAL_TABLES = ["customer", "customer_xref", "order_xref", "sales_order", "invoice"]


def copy_canonical(canonical_world, warehouse: Warehouse) -> None:
    """The canonical tables (and the seeds) the syncs read, from the session's transform run into `warehouse`."""
    source = canonical_world[0].duckdb_path
    if warehouse.dialect == "duckdb":
        shutil.copy(source, warehouse.duckdb_path)
        return
    with duckdb.connect(str(source), read_only=True) as db:
        for table in CANONICAL_TABLES:
            warehouse.write_arrow(
                "canonical", table, db.sql(f"SELECT * FROM canonical.{table}").to_arrow_table()
            )
    for seed in sql_models.seed_files():
        sql_models.load_seed(warehouse, seed)


@pytest.fixture
def hub(make_sandbox, canonical_world, monkeypatch):
    """A private sandbox with HUB_HOME pointing at it, and a warehouse holding the canonical tables."""
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box = make_sandbox(export=True)
    warehouse = Warehouse()
    copy_canonical(canonical_world, warehouse)
    return box, warehouse


# ---- reading the destinations back over their APIs ------------------------------------------


def crm_accounts(box) -> list[dict]:
    return crm_pages(box, "accounts")


def marketing_contacts(box) -> list[dict]:
    headers = {"Authorization": f"Bearer {CREDS['HUB_MARKETING_API_KEY']}"}
    rows, params = [], {"limit": 100}
    while True:
        body = httpx.get(
            f"{box.url('marketing')}/crm/v3/objects/contacts", params=params, headers=headers
        ).json()
        rows += body["results"]
        if not body["paging"]:
            return rows
        params = {"limit": 100, "after": body["paging"]["next"]["after"]}


def billing_invoices(box) -> list[dict]:
    """Every QuickBooks invoice, with its `Order Ref` as `order_ref` (the key the sync writes)."""
    return [{**i, "order_ref": order_ref(i)} for i in billing_pages(box, "invoices")]


def expected_payloads(sync: rs.Sync, warehouse: Warehouse) -> dict[str, dict]:
    return {c.key: c.payload for c in rs.plan(sync, warehouse).changes}


# ---- acceptance ------------------------------------------------------------------------------


@pytest.mark.slow
def test_each_destination_holds_exactly_what_the_sync_sent_and_a_rerun_sends_nothing(hub):
    box, warehouse = hub
    expected = {name: expected_payloads(sync, warehouse) for name, sync in SYNCS.items()}
    counts, plants = box.truth["expected"], box.truth["discrepancies"]
    strangers, number_missing = (
        len(plants["shop_customer_unmatched"]),
        len(box.truth["non_findings"]["crm_account_number_missing"]),
    )
    assert len(expected["marketing_contacts"]) == counts["canonical.customer"]
    assert len(expected["support_orders"]) == counts["canonical.sales_order"]
    # CRM: ERP customers only (shop-only strangers have no account number), minus those whose CRM
    # account has no number (an upsert by number would create a second account).
    assert len(expected["crm_accounts"]) == counts["canonical.customer"] - strangers - number_missing
    assert len(expected["billing_invoices"]) == len(box.truth["discrepancies"]["invoice_missing"])
    crm_before = {a["AccountNumber"]: a for a in crm_accounts(box) if a["AccountNumber"]}
    with warehouse.connect() as con:
        contacts_by_number = {
            r[0]: r[1:]
            for r in con.rows(
                "SELECT c.account_number, lower(trim(c.email)), c.phone, cc.country_name, c.segment "
                "FROM canonical.customer c LEFT JOIN seeds.country_codes cc ON cc.iso_code = c.country_code "
                "WHERE c.account_number IS NOT NULL"
            )
        }

    for name, sync in SYNCS.items():
        result = rs.apply(sync, warehouse)
        assert (result.delivered, result.rejected, result.failed) == (len(expected[name]), 0, 0), (
            result.errors
        )

    # CRM: every account carries what was pushed, stamped as written by the hub; nothing else changed.
    crm = {a["AccountNumber"]: a for a in crm_accounts(box) if a["AccountNumber"]}
    assert set(crm) == set(expected["crm_accounts"])
    for number, payload in expected["crm_accounts"].items():
        assert {f: crm[number][f] for f in payload} == payload
        assert crm[number]["LastModifiedById"] == integration_user(CREDS["HUB_CRM_CLIENT_ID"])
        if number in crm_before:  # an existing account keeps the contact details sales keeps there
            assert crm[number]["Phone"] == crm_before[number]["Phone"]
            assert crm[number]["Email__c"] == crm_before[number]["Email__c"]
        else:  # created by the sync (planted missing accounts): useful from its first day
            customer = contacts_by_number[number]
            assert (crm[number]["Email__c"], crm[number]["Phone"]) == (customer[0], customer[1])
            assert (crm[number]["BillingCountry"], crm[number]["Industry"]) == (customer[2], customer[3])
            assert all(v is not None for v in customer), customer
    # Created: the planted missing accounts; skipped: customers whose CRM account has no number.
    assert len(crm) - len(crm_before) == len(plants["crm_account_missing"])
    skipped = rs.plan(SYNCS["crm_accounts"], warehouse).filtered
    assert skipped == {
        "no account_number": strangers,
        "CRM account without account number (an upsert would duplicate it)": number_missing,
    }

    # Marketing: one contact per customer email, only allow-listed properties (no phone).
    contacts = marketing_contacts(box)
    assert len(contacts) == len(expected["marketing_contacts"])
    assert {
        c["properties"]["email"]: {k: v for k, v in c["properties"].items() if k not in SYSTEM_PROPERTIES}
        for c in contacts
    } == expected["marketing_contacts"]

    # Support: one order per canonical order, no duplicates, without the customer's phone.
    orders = support_orders(box)
    assert Counter(o["external_id"] for o in orders).most_common(1)[0][1] == 1
    fields = [
        "external_id",
        "status",
        "total",
        "currency",
        "order_date",
        "channel",
        "customer_email",
        "customer_name",
    ]
    assert {o["external_id"]: {f: o[f] for f in fields} for o in orders} == expected["support_orders"]
    assert not any("customer_phone" in o for o in orders)

    # Billing: one new invoice per fulfilled order that had none.
    created = [i for i in billing_invoices(box) if i["Id"].startswith("in_n")]
    assert sorted(i["order_ref"] for i in created) == sorted(expected["billing_invoices"])

    # Nothing changed, so a second run sends nothing at all (not even a token request).
    box.reset_stats()
    for sync in SYNCS.values():
        assert rs.apply(sync, warehouse).requests == 0
    assert {s: box.stats(s)["requests"] for s in ("crm", "marketing", "support", "billing")} == dict.fromkeys(
        ("crm", "marketing", "support", "billing"), 0
    )
    with warehouse.connect() as con:
        pushes = con.rows(
            "SELECT asset, rows_out FROM audit.data_movement WHERE direction = 'push' ORDER BY started_at"
        )
    assert pushes[:4] == [(f"sync/{n}", len(expected[n])) for n in SYNCS]


def test_rejected_records_wait_in_the_dead_letter_queue_until_replayed(hub):
    box, warehouse = hub
    sync = SYNCS["marketing_contacts"]
    expected = expected_payloads(sync, warehouse)
    box.set_fault("marketing", "reject_writes", share=0.05)
    result = rs.apply(sync, warehouse)
    letters = rs.dead_letters(warehouse, sync.name)
    assert 0.02 * len(expected) < result.rejected < 0.08 * len(expected)
    assert result.delivered + result.rejected == len(expected) and result.failed == 0
    assert len(letters) == result.rejected
    assert all("fault injection" in d["error"] and d["attempts"] == 1 for d in letters)
    landed = {c["properties"]["email"] for c in marketing_contacts(box)}
    assert landed == set(expected) - {d["key"] for d in letters}

    # Still refused: the letters stay open and count their attempts.
    assert CliRunner().invoke(app, ["dlq", "replay", "--sync", sync.name]).exit_code == 1
    assert {d["attempts"] for d in rs.dead_letters(warehouse, sync.name)} == {2}

    # An operator gives up on one of them; the rest are replayed once the tool accepts again.
    listed = json.loads(CliRunner().invoke(app, ["dlq", "list", "--sync", sync.name, "--json"]).output)
    assert sorted(d["key"] for d in listed) == sorted(d["key"] for d in letters)
    dropped = listed[0]
    discarded = CliRunner().invoke(app, ["dlq", "discard", dropped["id"], "--reason", "customer opted out"])
    assert discarded.exit_code == 0, discarded.output

    box.clear_faults("marketing")
    replayed = CliRunner().invoke(app, ["dlq", "replay", "--sync", sync.name])
    assert replayed.exit_code == 0, replayed.output
    assert f"delivered {result.rejected - 1}" in replayed.output
    assert rs.dead_letters(warehouse, sync.name) == []
    assert {c["properties"]["email"] for c in marketing_contacts(box)} == set(expected) - {dropped["key"]}
    again = rs.plan(sync, warehouse).counts
    assert (again["insert"], again["discarded"]) == (0, 1)  # the discarded content is never sent again

    # Each transition is in the audit trail: `hub audit report` counts what sync.dead_letter holds.
    pack = json.loads(CliRunner().invoke(app, ["audit", "report", "--json"]).output)
    letters_in_pack = {d["sync"]: d for d in pack["dead_letters"]}
    assert letters_in_pack[sync.name] == {
        "sync": sync.name, "system": "marketing", "opened": result.rejected,
        "delivered": result.rejected - 1, "discarded": 1,
    }  # fmt: skip
    with warehouse.connect() as con:
        stored = dict(
            con.rows("SELECT status, count(*) FROM sync.dead_letter WHERE sync = ? GROUP BY 1", [sync.name])
        )
    assert stored == {"delivered": result.rejected - 1, "discarded": 1}


def test_the_next_run_retries_dead_letters_when_the_destination_accepts_again(hub):
    box, warehouse = hub
    sync = SYNCS["crm_accounts"]
    box.set_fault("crm", "reject_writes", share=0.05)
    first = rs.apply(sync, warehouse)
    assert first.rejected > 0 and len(rs.dead_letters(warehouse, sync.name)) == first.rejected
    assert rs.plan(sync, warehouse).counts["insert"] == first.rejected  # not confirmed: planned again
    box.clear_faults("crm")
    second = rs.apply(sync, warehouse)
    assert (second.delivered, second.rejected) == (first.rejected, 0)
    assert rs.dead_letters(warehouse, sync.name) == []
    delivered = rs.dead_letters(warehouse, sync.name, status="delivered")
    assert len(delivered) == first.rejected and all(d["resolved_at"] for d in delivered)
    with warehouse.connect() as con:
        statuses = dict(
            con.rows("SELECT status, count(*) FROM sync.changelog WHERE sync = ? GROUP BY 1", [sync.name])
        )
    assert statuses == {"delivered": first.delivered + second.delivered, "rejected": first.rejected}


KILL_SCRIPT = """
import sys
from integration_hub.engine import sql_models
from integration_hub.engine import sync_engine as rs
from integration_hub.warehouse import Warehouse

sync = rs.Sync(
    name="kill_invoices", destination="billing", object="invoices", mode="insert", key="order_ref",
    source=("SELECT 'KILL-' || o.order_id AS order_ref, c.email AS customer_email, 'usd' AS currency, "
            "CAST(round(o.total_amount * 100) AS BIGINT) AS amount_due, o.order_date AS invoice_date "
            "FROM canonical.sales_order o JOIN canonical.customer c ON c.customer_id = o.customer_id "
            "ORDER BY o.order_id LIMIT 200"),
    mapping={f: f for f in ("order_ref", "customer_email", "currency", "amount_due", "invoice_date")},
    allow=frozenset({"order_ref", "customer_email", "currency", "amount_due", "invoice_date"}),
    batch_size=1, concurrency=4,
)
result = rs.apply(sync, Warehouse())
print(result.delivered, result.rejected, result.failed)
"""


def test_a_killed_run_is_completed_by_the_next_without_duplicates_or_gaps(hub, tmp_path):
    box, warehouse = hub
    script = tmp_path / "push_invoices.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    env = {**os.environ, **box.env()}
    box.set_fault("billing", "slow", delay=0.03)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=os.getcwd())
    deadline = time.monotonic() + 60
    while box.stats("billing")["records_written"] < 60:
        assert proc.poll() is None and time.monotonic() < deadline, "the push ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    landed_at_kill = box.stats("billing")["records_written"]
    assert 60 <= landed_at_kill < 200

    box.clear_faults("billing")
    rerun = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=os.getcwd(), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    delivered, rejected, failed = map(int, rerun.stdout.split())
    # The re-run sends what the killed run had not confirmed: at least every record it never sent.
    assert delivered >= 200 - landed_at_kill and (rejected, failed) == (0, 0)

    refs = Counter(i["order_ref"] for i in billing_invoices(box) if i["order_ref"].startswith("KILL-"))
    assert len(refs) == 200 and set(refs.values()) == {1}
    assert box.stats("billing")["records_written"] == 200  # resends were answered from the idempotency store
    with warehouse.connect() as con:
        assert con.scalar('SELECT count(*) FROM sync."kill_invoices__state"') == 200


def test_sync_plan_cli_shows_the_dry_run_and_sends_nothing(hub):
    box, warehouse = hub
    box.reset_stats()
    result = CliRunner().invoke(app, ["sync", "plan", "support_orders", "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["counts"]["insert"] == box.truth["expected"]["canonical.sales_order"] and plan[
        "withheld_fields"
    ] == ["customer_phone"]
    assert box.stats("support")["requests"] == 0
    unknown = CliRunner().invoke(app, ["sync", "plan", "nope"])
    assert unknown.exit_code == 2 and "declared: crm_accounts" in unknown.output


def test_the_dagster_asset_shows_its_plan_pushes_it_and_warns_on_dead_letters(hub, monkeypatch):
    from assets import reverse_sync as layer

    box, warehouse = hub
    monkeypatch.setenv("HUB_PROGRESS_SECONDS", "0")  # a line per finished batch, as a long push every period
    box.set_fault("marketing", "reject_writes", share=0.05)
    key = dg.AssetKey(["sync", "marketing_contacts"])
    [asset] = [a for a in layer.ASSETS if a.key == key]
    assert asset.check_keys == {  # evaluated in the push's step
        dg.AssetCheckKey(key, "no_open_dead_letters"),
        dg.AssetCheckKey(key, "latency_p95"),
    }
    assert asset.group_names_by_key[key] == "sync"
    assert set(asset.asset_deps[key]) == {
        dg.AssetKey(["canonical", "customer"]),
        dg.AssetKey(["canonical", "sales_order"]),
    }
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([asset], resources={"warehouse": warehouse}, instance=instance)
    assert result.success
    metadata = result.asset_materializations_for_node(asset.op.name)[0].metadata
    customers = box.truth["expected"]["canonical.customer"]
    prefix = "sync marketing_contacts → marketing: "
    progress = [e.user_message for e in instance.all_logs(result.run_id) if e.user_message.startswith(prefix)]
    sent = [int(line[len(prefix) :].split(" of ")[0].replace(",", "")) for line in progress]
    assert len(sent) > 1 and sent == sorted(sent) and sent[-1] == customers, progress
    assert all(f" of {customers:,} (" in line for line in progress)
    rejected = metadata["rejected"].value
    assert (
        metadata["plan_insert"].value == customers and metadata["delivered"].value == customers - rejected > 0
    )
    assert "| insert |" in metadata["plan_sample"].value and "phone" not in metadata["plan_sample"].value
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "no_open_dead_letters"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["open_dead_letters"].value == rejected


def ingest_everything(instance: dg.DagsterInstance) -> None:
    """Every raw asset at the live edge (the hourly run's incremental read), over the systems' APIs."""
    from assets import ingestion

    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    result = dg.materialize(
        ingestion.build_assets(),
        resources=ingestion.build_resources(),
        partition_key=today,
        instance=instance,
    )
    assert result.success


def build_canonical(warehouse: Warehouse) -> None:
    from assets import transforms

    result = dg.materialize(
        [*transforms.ASSETS, *transforms.CHECKS], resources={"warehouse": warehouse},
        instance=dg.DagsterInstance.ephemeral(),
    )  # fmt: skip
    assert result.success


@pytest.mark.slow
def test_the_hub_recognises_its_own_crm_write_when_it_reads_it_back(make_sandbox, monkeypatch, tmp_path):
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box = make_sandbox(export=True)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    warehouse, sync = Warehouse(), SYNCS["crm_accounts"]
    with dg.DagsterInstance.ephemeral() as instance:
        ingest_everything(instance)
        build_canonical(warehouse)
        pushed = rs.apply(sync, warehouse)
        assert pushed.delivered == pushed.counts["insert"] > 0 and pushed.rejected == 0

        # The next hourly run reads back every account the hub just wrote (and created) ...
        ingest_everything(instance)
        build_canonical(warehouse)
    with warehouse.connect() as con:
        echoed = con.scalar(
            "SELECT count(*) FROM raw_crm.accounts WHERE last_modified_by_id = ?",
            [integration_user(CREDS["HUB_CRM_CLIENT_ID"])],
        )
    assert echoed == pushed.delivered
    # ... and recognises it as its own write: nothing to push, not a single request.
    again = rs.plan(sync, warehouse)
    assert (again.counts["insert"], again.counts["update"], again.counts["unchanged"]) == (
        0,
        0,
        pushed.delivered,
    )
    box.reset_stats("crm")
    assert rs.apply(sync, warehouse).requests == 0 and box.stats("crm")["requests"] == 0
