"""Reverse sync end to end: real sandbox destinations over HTTP, the embedded warehouse, real faults.

Each test writes, so each gets its own sandbox (`make_sandbox`) and warehouse (its HUB_HOME).
The canonical tables are derived from the same world the sandbox serves (see `load_canonical`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from integration_hub import reverse_sync as rs
from integration_hub.cli import app
from integration_hub.settings import SANDBOX_CREDENTIALS as CREDS
from resources.warehouse import Warehouse

CANONICAL = {
    "customer": """
        SELECT customer_id::VARCHAR AS customer_id, account_number, c.name, lower(trim(email)) AS email,
               '+' || regexp_replace(phone, '[^0-9]', '', 'g') AS phone, n.iso AS country_code, segment,
               'erp' AS source_system, created_at, updated_at
        FROM erp_customers c JOIN nation_iso n ON n.nation = c.country""",
    "sales_order": """
        SELECT order_number AS order_id, order_id AS erp_order_id, external_ref::BIGINT AS shop_order_id,
               customer_id::VARCHAR AS customer_id, order_date::DATE AS order_date, status,
               total_amount::DECIMAL(18, 2) AS total_amount, currency, channel, 'erp' AS source_system, updated_at
        FROM erp_orders""",
    "invoice": "SELECT id AS invoice_id, number AS invoice_number, order_ref AS order_id FROM invoices",
    "customer_xref": """
        SELECT 'crm' AS system, a.Id AS source_id, coalesce(e1.customer_id, e2.customer_id)::VARCHAR AS customer_id,
               CASE WHEN e1.customer_id IS NOT NULL THEN 'external_id' ELSE 'email' END AS match_rule,
               0.9 AS confidence
        FROM crm_accounts a
        LEFT JOIN erp_customers e1 ON e1.account_number = a.AccountNumber
        LEFT JOIN erp_customers e2 ON a.AccountNumber IS NULL AND e2.email = lower(trim(a.Email__c))""",
}


def load_canonical(warehouse: Warehouse, world) -> None:
    """canonical.customer / sales_order / invoice as the canonical layer defines them, from the world."""
    from integration_hub.sandbox.world import NATION_ISO

    db = duckdb.connect()
    db.register("erp_customers", world.tables["erp"]["customers"])
    db.register("erp_orders", world.tables["erp"]["sales_orders"])
    db.register("invoices", world.tables["billing"]["invoices"])
    db.register("crm_accounts", world.tables["crm"]["accounts"])
    db.execute(
        "CREATE TABLE nation_iso AS SELECT unnest(?) AS nation, unnest(?) AS iso",
        [list(NATION_ISO), list(NATION_ISO.values())],
    )
    for table, sql in CANONICAL.items():
        warehouse.write_arrow("canonical", table, db.sql(sql).to_arrow_table(), mode="replace")
    db.close()


@pytest.fixture
def hub(make_sandbox, sandbox_world, monkeypatch):
    """A private sandbox with HUB_HOME pointing at it, and a warehouse holding the canonical tables."""
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box = make_sandbox(export=True)
    warehouse = Warehouse()
    load_canonical(warehouse, sandbox_world)
    return box, warehouse


# ---- reading the destinations back over their APIs ------------------------------------------


def crm_accounts(box) -> list[dict]:
    token = httpx.post(
        f"{box.url('crm')}/oauth/token",
        data={"grant_type": "client_credentials", "client_id": CREDS["HUB_CRM_CLIENT_ID"],
              "client_secret": CREDS["HUB_CRM_CLIENT_SECRET"]},
    ).json()["access_token"]  # fmt: skip
    rows, params = [], {"limit": 2000}
    while True:
        body = httpx.get(
            f"{box.url('crm')}/services/data/v1/accounts",
            params=params,
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        rows += body["records"]
        if not body["next_cursor"]:
            return rows
        params = {"cursor": body["next_cursor"]}


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


def support_orders(box) -> list[dict]:
    headers = {"Authorization": f"Bearer {CREDS['HUB_SUPPORT_API_TOKEN']}"}
    rows, params = [], {"page[size]": 1000}
    while True:
        body = httpx.get(f"{box.url('support')}/api/v2/orders", params=params, headers=headers).json()
        rows += body["orders"]
        if not body["meta"]["has_more"]:
            return rows
        params = {"page[size]": 1000, "page[after]": body["meta"]["after_cursor"]}


def billing_invoices(box) -> list[dict]:
    headers = {"Authorization": f"Bearer {CREDS['HUB_BILLING_API_KEY']}"}
    rows, offset = [], 0
    while True:
        body = httpx.get(
            f"{box.url('billing')}/v1/invoices", params={"offset": offset, "limit": 1000}, headers=headers
        ).json()
        rows += body["data"]
        offset += len(body["data"])
        if not body["has_more"]:
            return rows


def expected_payloads(sync: rs.Sync, warehouse: Warehouse) -> dict[str, dict]:
    return {c.key: c.payload for c in rs.plan(sync, warehouse).changes}


# ---- acceptance ------------------------------------------------------------------------------


def test_each_destination_holds_exactly_what_the_sync_sent_and_a_rerun_sends_nothing(hub):
    box, warehouse = hub
    expected = {name: expected_payloads(sync, warehouse) for name, sync in rs.SYNCS.items()}
    assert len(expected["marketing_contacts"]) == 1500
    assert len(expected["crm_accounts"]) == 1500 - len(
        box.truth["non_findings"]["crm_account_number_missing"]
    )
    assert len(expected["support_orders"]) == 15000
    assert len(expected["billing_invoices"]) == len(box.truth["discrepancies"]["invoice_missing"])
    crm_before = {a["AccountNumber"]: a for a in crm_accounts(box) if a["AccountNumber"]}

    for name, sync in rs.SYNCS.items():
        result = rs.apply(sync, warehouse)
        assert (result.delivered, result.rejected, result.failed) == (len(expected[name]), 0, 0), (
            result.errors
        )

    # CRM: every account carries what was pushed, stamped as written by the hub; nothing else changed.
    crm = {a["AccountNumber"]: a for a in crm_accounts(box) if a["AccountNumber"]}
    assert set(crm) == set(expected["crm_accounts"])
    for number, payload in expected["crm_accounts"].items():
        assert {f: crm[number][f] for f in payload} == payload
        assert crm[number]["LastModifiedById"] == CREDS["HUB_CRM_CLIENT_ID"]
        if number in crm_before:
            assert crm[number]["Phone"] == crm_before[number]["Phone"]
        else:  # created by the sync (planted missing accounts): the withheld phone never arrived
            assert crm[number]["Phone"] is None
    # Created: the planted missing accounts; skipped: customers whose CRM account has no number.
    assert len(crm) - len(crm_before) == len(box.truth["discrepancies"]["crm_account_missing"])
    skipped = rs.plan(rs.SYNCS["crm_accounts"], warehouse).filtered
    assert skipped == {
        "CRM account without account number (an upsert would duplicate it)": len(
            box.truth["non_findings"]["crm_account_number_missing"]
        )
    }

    # Marketing: one contact per customer email, only allow-listed properties (no phone).
    contacts = marketing_contacts(box)
    assert len(contacts) == 1500
    assert {c["properties"]["email"]: c["properties"] for c in contacts} == expected["marketing_contacts"]

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
    created = [i for i in billing_invoices(box) if i["id"].startswith("in_n")]
    assert sorted(i["order_ref"] for i in created) == sorted(expected["billing_invoices"])

    # Nothing changed, so a second run sends nothing at all (not even a token request).
    box.reset_stats()
    for sync in rs.SYNCS.values():
        assert rs.apply(sync, warehouse).requests == 0
    assert {s: box.stats(s)["requests"] for s in ("crm", "marketing", "support", "billing")} == dict.fromkeys(
        ("crm", "marketing", "support", "billing"), 0
    )
    with warehouse.connect() as con:
        pushes = con.rows(
            "SELECT asset, rows_out FROM audit.data_movement WHERE direction = 'push' ORDER BY started_at"
        )
    assert pushes[:4] == [(f"sync/{n}", len(expected[n])) for n in rs.SYNCS]


def test_rejected_records_wait_in_the_dead_letter_queue_until_replayed(hub):
    box, warehouse = hub
    sync = rs.SYNCS["marketing_contacts"]
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

    box.clear_faults("marketing")
    replayed = CliRunner().invoke(app, ["dlq", "replay", "--sync", sync.name])
    assert replayed.exit_code == 0, replayed.output
    assert f"delivered {result.rejected}" in replayed.output
    assert rs.dead_letters(warehouse, sync.name) == []
    assert {c["properties"]["email"] for c in marketing_contacts(box)} == set(expected)
    assert rs.plan(sync, warehouse).counts["insert"] == 0


def test_the_next_run_retries_dead_letters_when_the_destination_accepts_again(hub):
    box, warehouse = hub
    sync = rs.SYNCS["crm_accounts"]
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
from integration_hub import reverse_sync as rs
from resources.warehouse import Warehouse

sync = rs.Sync(
    name="kill_invoices", destination="billing", object="invoices", mode="insert", key="order_ref",
    source=("SELECT 'KILL-' || o.order_id AS order_ref, c.email AS customer_email, 'usd' AS currency, "
            "CAST(round(o.total_amount * 100) AS BIGINT) AS amount_due, o.order_date AS invoice_date "
            "FROM canonical.sales_order o JOIN canonical.customer c ON c.customer_id = o.customer_id "
            "ORDER BY o.order_id LIMIT 300"),
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
    box.set_fault("billing", "slow", delay=0.05)
    proc = subprocess.Popen([sys.executable, str(script)], env=env, cwd=os.getcwd())
    deadline = time.monotonic() + 60
    while box.stats("billing")["records_written"] < 100:
        assert proc.poll() is None and time.monotonic() < deadline, "the push ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    landed_at_kill = box.stats("billing")["records_written"]
    assert 100 <= landed_at_kill < 300

    box.clear_faults("billing")
    rerun = subprocess.run(
        [sys.executable, str(script)], env=env, cwd=os.getcwd(), capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    delivered, rejected, failed = map(int, rerun.stdout.split())
    # The re-run sends what the killed run had not confirmed: at least every record it never sent.
    assert delivered >= 300 - landed_at_kill and (rejected, failed) == (0, 0)

    refs = Counter(i["order_ref"] for i in billing_invoices(box) if i["order_ref"].startswith("KILL-"))
    assert len(refs) == 300 and set(refs.values()) == {1}
    assert box.stats("billing")["records_written"] == 300  # resends were answered from the idempotency store
    with warehouse.connect() as con:
        assert con.scalar('SELECT count(*) FROM sync."kill_invoices__state"') == 300


def test_sync_plan_cli_shows_the_dry_run_and_sends_nothing(hub):
    box, warehouse = hub
    box.reset_stats()
    result = CliRunner().invoke(app, ["sync", "plan", "support_orders", "--json"])
    assert result.exit_code == 0, result.output
    import json

    plan = json.loads(result.output)
    assert plan["counts"]["insert"] == 15000 and plan["withheld_fields"] == ["customer_phone"]
    assert box.stats("support")["requests"] == 0
    unknown = CliRunner().invoke(app, ["sync", "plan", "nope"])
    assert unknown.exit_code == 2 and "declared: crm_accounts" in unknown.output


def test_the_dagster_asset_shows_its_plan_pushes_it_and_warns_on_dead_letters(hub):
    import dagster as dg

    from assets import reverse_sync as layer

    box, warehouse = hub
    box.set_fault("marketing", "reject_writes", share=0.05)
    key = dg.AssetKey(["sync", "marketing_contacts"])
    [asset] = [a for a in layer.ASSETS if a.key == key]
    [check] = [c for c in layer.CHECKS if key in {k.asset_key for k in c.check_keys}]
    assert asset.group_names_by_key[key] == "reverse_sync"
    assert set(asset.asset_deps[key]) == {
        dg.AssetKey(["canonical", "customer"]),
        dg.AssetKey(["canonical", "sales_order"]),
    }
    result = dg.materialize([asset, check], resources={"warehouse": warehouse})
    assert result.success
    metadata = result.asset_materializations_for_node(asset.op.name)[0].metadata
    rejected = metadata["rejected"].value
    assert metadata["plan_insert"].value == 1500 and metadata["delivered"].value == 1500 - rejected > 0
    assert "| insert |" in metadata["plan_sample"].value and "phone" not in metadata["plan_sample"].value
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["open_dead_letters"].value == rejected
