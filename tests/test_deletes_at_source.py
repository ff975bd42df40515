"""Deletions at the sources: a tick deletes open orders in the ERP (a real DELETE) and the shop
(listed as Shopify `destroy` events), the CRM soft-deletes an account (`IsDeleted`), and the hub
keeps each deleted record in raw as a tombstone (`_hub_deleted_at`, a newer `_dlt_load_id`),
unmarks it when it comes back, and counts only live rows against the sources. Real sandbox
servers, real dlt loads through the Dagster assets, DuckDB and Postgres warehouses."""

from __future__ import annotations

import datetime as dt
import sqlite3

import dagster as dg
import httpx
import pytest
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox.truth import at_source, read_record

from integration_hub import systems
from integration_hub.engine import completeness
from integration_hub.warehouse import Warehouse
from tests.test_sandbox_api import (
    SHOP,
    billing_pages,
    billing_token,
    billing_url,
    crm_pages,
    order_ref,
    shop_pages,
)

SHOP_AUTH = {"X-Shopify-Access-Token": CREDS["HUB_SHOP_API_KEY"]}
ERP_TABLES = ("customers", "products", "sales_orders", "sales_order_lines")


def load(*systems_: str) -> dict[tuple[str, str], dict]:
    """Materialize the raw assets of `systems_` at the live edge; each asset's metadata."""
    from assets import ingestion

    chosen = [a for a in ingestion.build_assets() if a.node_def.name in {f"raw_{s}" for s in systems_}]
    result = dg.materialize(
        chosen,
        resources=ingestion.build_resources(),
        partition_key=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    return {
        tuple(e.asset_key.path[1:]): {k: v.value for k, v in e.materialization.metadata.items()}
        for e in result.get_asset_materialization_events()
    }


def events(box, limit: int = 250, **params) -> list[dict]:
    """Every order `destroy` event the shop lists, following its `Link` pages."""
    url, found = f"{box.url('shop')}{SHOP}/events.json", []
    query = {"filter": "Order", "verb": "destroy", "limit": limit, **params}
    while url:
        answer = httpx.get(url, params=query, headers=SHOP_AUTH)
        answer.raise_for_status()
        found += answer.json()["events"]
        url, query = answer.links.get("next", {}).get("url"), None
    return found


def raw(warehouse: Warehouse, table: str, columns: str) -> list[tuple]:
    with warehouse.connect() as con:
        return con.rows(f"SELECT {columns} FROM {table} ORDER BY 1, 2")


def landed_vs_source(warehouse: Warehouse) -> tuple[dict, dict]:
    """(records each raw table counts as at the source, what each source counts now)."""
    with warehouse.connect() as con:
        landed = dict(con.rows(f"SELECT id, landed FROM ({completeness.landed_sql(warehouse)}) w"))
    clients = {name: system.client_kwargs() for name, system in systems.registry().items()}
    source = {f"{s}.{r}": n for (s, r), n in completeness.count_sources(clients).items()}
    return {k: landed[k] for k in source if k in landed}, {k: source[k] for k in source if k in landed}


def test_a_tick_deletes_open_unbilled_orders_in_the_erp_and_the_shop(make_sandbox):
    box = make_sandbox()
    seeded = read_record(box.home)
    report = box.tick(0.01)
    records, truth = report["records"], box.truth
    deleted = truth["deleted"]
    assert records["erp.sales_orders"]["deleted"] == len(deleted["erp.sales_orders"]) == 15  # a fifth of 1 %
    assert records["erp.sales_order_lines"]["deleted"] == len(deleted["erp.sales_order_lines"]) > 15
    assert 0 < records["shop.orders"]["deleted"] == len(deleted["shop.orders"]) < 15
    assert all(c["deleted"] == 0 for name, c in records.items() if name not in deleted)

    erp = sqlite3.connect(box.home / "sandbox" / "erp.sqlite")
    numbers = deleted["erp.sales_orders"]
    marks = ", ".join("?" * len(numbers))
    assert (
        erp.execute(f"SELECT count(*) FROM sales_orders WHERE order_number IN ({marks})", numbers).fetchone()[
            0
        ]
        == 0
    )
    ids = [int(n[3:]) for n in numbers]
    assert (
        erp.execute(f"SELECT count(*) FROM sales_order_lines WHERE order_id IN ({marks})", ids).fetchone()[0]
        == 0
    )
    assert (
        erp.execute("SELECT count(*) FROM sales_orders").fetchone()[0] == at_source(truth)["erp.sales_orders"]
    )
    erp.close()
    # Only open orders nothing refers to: unbilled, and named by no planted record.
    invoiced = {order_ref(i) for i in billing_pages(box, "invoices")}
    planted = {e["order_id"] for k in seeded["discrepancies"].values() for e in k if "order_id" in e}
    assert planted.isdisjoint(ids) and invoiced.isdisjoint(numbers)
    assert {line[0] for line in deleted["erp.sales_order_lines"]} == set(numbers)

    # The shop serves them no more, counts them no more, and lists each as a `destroy` event, paged.
    gone = set(deleted["shop.orders"])
    served = {o["id"] for o in shop_pages(box, "orders")}
    assert gone.isdisjoint(served) and {4500000000 + i for i in ids if 4500000000 + i in gone} == gone
    count = httpx.get(f"{box.url('shop')}{SHOP}/orders/count.json", headers=SHOP_AUTH).json()["count"]
    assert (
        count == len(served) == at_source(truth)["shop.orders"] == truth["counts"]["shop.orders"] - len(gone)
    )
    listed = events(box, limit=2)
    assert sorted(e["subject_id"] for e in listed) == sorted(gone)
    assert {(e["subject_type"], e["verb"], e["created_at"]) for e in listed} == {
        ("Order", "destroy", report["at"])
    }
    assert events(box, created_at_min=report["at"]) == listed
    later = (
        dt.datetime.strptime(report["at"], "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(seconds=1)
    ).isoformat() + "Z"
    assert events(box, created_at_min=later) == []
    # The record keeps every deletion; the counts of what the hub holds (tombstones included) stay.
    assert read_record(box.home)["deleted"] == deleted
    assert (
        truth["counts"]["erp.sales_orders"]
        == seeded["counts"]["erp.sales_orders"] + records["erp.sales_orders"]["new"]
    )


def check_tombstones(box, warehouse: Warehouse) -> None:
    first = load("erp", "shop")
    assert all(m["rows_deleted"] == 0 for m in first.values())
    shop_before = dict(raw(warehouse, "raw_shop.orders", "id, _dlt_load_id"))
    lines_before = len(raw(warehouse, "raw_erp.sales_order_lines", "order_id, line_number"))
    with warehouse.connect() as con:
        latest = con.scalar("SELECT max(load_id) FROM raw_shop._dlt_loads")

    report = box.tick(0.01)
    deleted, at = box.truth["deleted"], dt.datetime.strptime(report["at"], "%Y-%m-%dT%H:%M:%SZ")
    second = load("erp", "shop")
    assert {k: m["rows_deleted"] for k, m in second.items()} == {
        ("erp", "customers"): 0, ("erp", "products"): 0,
        ("erp", "sales_orders"): len(deleted["erp.sales_orders"]),
        ("erp", "sales_order_lines"): len(deleted["erp.sales_order_lines"]),
        ("shop", "orders"): len(deleted["shop.orders"]), ("shop", "customers"): 0,
    }  # fmt: skip

    orders = raw(warehouse, "raw_erp.sales_orders", "order_number, _hub_deleted_at, _dlt_load_id, status")
    tombstones = {n: (when, load_id, status) for n, when, load_id, status in orders if when is not None}
    assert sorted(tombstones) == sorted(deleted["erp.sales_orders"])
    assert all(status == "open" for _, _, status in tombstones.values()), "the last values are kept"
    erp_load = {load_id for _, load_id, _ in tombstones.values()}
    assert len(erp_load) == 1 and erp_load.pop() > latest
    assert all(
        at <= when <= dt.datetime.now(dt.UTC).replace(tzinfo=None) for when, _, _ in tombstones.values()
    )
    lines = raw(warehouse, "raw_erp.sales_order_lines", "order_id, line_number, _hub_deleted_at")
    assert len(lines) == lines_before + report["records"]["erp.sales_order_lines"]["new"]
    assert sorted([f"SO-{o:010d}", n] for o, n, when in lines if when is not None) == sorted(
        deleted["erp.sales_order_lines"]
    )

    shop = {
        i: (when, load_id)
        for i, when, load_id in raw(warehouse, "raw_shop.orders", "id, _hub_deleted_at, _dlt_load_id")
    }
    marked = {i for i, (when, _) in shop.items() if when is not None}
    assert marked == set(deleted["shop.orders"])
    with warehouse.connect() as con:
        this_load = con.scalar("SELECT max(load_id) FROM raw_shop._dlt_loads")
    assert this_load > latest
    # The shop dates each deletion itself (its event's time); the load that saw it stamps the row.
    assert {shop[i] for i in marked} == {(at, this_load)}
    changed = {i for i, (_, load_id) in shop.items() if load_id == this_load}
    untouched = {i: shop[i][1] for i in shop_before if i not in changed}
    assert untouched == {i: shop_before[i] for i in untouched} and len(untouched) > 2000
    ticked = report["records"]["shop.orders"]
    assert len(changed) == len(marked) + ticked["new"] + ticked["changed"]

    landed, source = landed_vs_source(warehouse)
    assert landed == source
    truth = at_source(box.truth)
    assert {k: landed[k] for k in ("erp.sales_orders", "erp.sales_order_lines", "shop.orders")} == {
        k: truth[k] for k in ("erp.sales_orders", "erp.sales_order_lines", "shop.orders")
    }
    third = load("erp", "shop")
    assert all(m["rows_deleted"] == 0 for m in third.values()), "a deletion is marked once"
    assert (
        raw(warehouse, "raw_erp.sales_orders", "order_number, _hub_deleted_at, _dlt_load_id, status")
        == orders
    )


def test_deleted_erp_and_shop_records_become_tombstones_on_duckdb(make_sandbox, monkeypatch):
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    check_tombstones(make_sandbox(export=True), Warehouse())


@pytest.mark.postgres
def test_deleted_erp_and_shop_records_become_tombstones_on_postgres(make_sandbox, pg_warehouse, monkeypatch):
    monkeypatch.setenv("HUB_WAREHOUSE_URL", pg_warehouse.url)
    check_tombstones(make_sandbox(export=True), pg_warehouse)


def admin(box, account_id: str, action: str) -> dict:
    answer = httpx.post(f"{box.url('crm')}/_admin/records/accounts/{account_id}/{action}")
    answer.raise_for_status()
    return answer.json()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request, monkeypatch) -> Warehouse:
    if request.param == "duckdb":
        monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
        return Warehouse()
    pg = request.getfixturevalue("pg_warehouse")
    monkeypatch.setenv("HUB_WAREHOUSE_URL", pg.url)
    return pg


def test_a_crm_soft_delete_lands_as_a_tombstone_and_an_undelete_clears_it(make_sandbox, warehouse):
    box = make_sandbox(export=True)
    load("crm")
    accounts = crm_pages(box, "accounts")
    victim = accounts[len(accounts) // 2]["Id"]

    deleted = admin(box, victim, "delete")
    assert deleted["IsDeleted"] is True
    # Listed only when asked the way `queryAll` is, and counted only then.
    assert victim not in {a["Id"] for a in crm_pages(box, "accounts")}
    with_deleted = crm_pages(box, "accounts", include_deleted="true")
    assert len(with_deleted) == len(accounts) and victim in {a["Id"] for a in with_deleted}
    loaded = load("crm")
    assert (
        loaded[("crm", "accounts")]["rows_deleted"] == 1 and loaded[("crm", "contacts")]["rows_deleted"] == 0
    )
    rows = raw(warehouse, "raw_crm.accounts", "id, _hub_deleted_at, _dlt_load_id, is_deleted")
    marked = [r for r in rows if r[1] is not None]
    assert [(i, flag) for i, _, _, flag in marked] == [(victim, True)]
    assert marked[0][1] == dt.datetime.strptime(deleted["LastModifiedDate"], "%Y-%m-%dT%H:%M:%SZ")
    assert marked[0][2] == max(load_id for _, _, load_id, _ in rows)
    landed, source = landed_vs_source(warehouse)
    assert landed["crm.accounts"] == source["crm.accounts"] == len(accounts) - 1
    assert len(rows) == len(accounts), "the tombstone stays"

    admin(box, victim, "undelete")
    assert load("crm")[("crm", "accounts")]["rows_deleted"] == 0
    back = raw(warehouse, "raw_crm.accounts", "id, _hub_deleted_at, _dlt_load_id, is_deleted")
    assert [r for r in back if r[1] is not None] == []
    again = next(r for r in back if r[0] == victim)
    assert again[3] is False and again[2] > marked[0][2]
    landed, source = landed_vs_source(warehouse)
    assert landed["crm.accounts"] == source["crm.accounts"] == len(accounts)


def test_an_undeleted_erp_order_is_unmarked_by_the_next_load(make_sandbox, monkeypatch):
    """A row the ERP holds again (restored from a backup, with its old change time, so no
    incremental read brings it) is unmarked by the key-set comparison of the next load."""
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box, warehouse = make_sandbox(export=True), Warehouse()
    load("erp")
    erp = sqlite3.connect(box.home / "sandbox" / "erp.sqlite")
    row = erp.execute(
        "SELECT * FROM sales_orders WHERE status = 'open' ORDER BY order_id DESC LIMIT 1"
    ).fetchone()
    erp.execute("DELETE FROM sales_orders WHERE order_id = ?", [row[0]])
    erp.commit()
    assert load("erp")[("erp", "sales_orders")]["rows_deleted"] == 1
    query = f"SELECT _hub_deleted_at, _dlt_load_id FROM raw_erp.sales_orders WHERE order_id = {row[0]}"
    with warehouse.connect() as con:
        ((when, first_id),) = con.rows(query)
    assert when is not None
    erp.execute(f"INSERT INTO sales_orders VALUES ({', '.join('?' * len(row))})", row)
    erp.commit()
    erp.close()
    assert load("erp")[("erp", "sales_orders")]["rows_deleted"] == 0
    with warehouse.connect() as con:
        ((when, second_id),) = con.rows(query)
        assert con.scalar("SELECT count(*) FROM raw_erp.sales_orders WHERE _hub_deleted_at IS NOT NULL") == 0
    assert when is None and second_id > first_id


def test_a_quickbooks_deletion_seen_in_cdc_lands_as_a_tombstone(make_sandbox, monkeypatch):
    """Billing lists deletions through QuickBooks' change data capture (`"status": "Deleted"`)."""
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box, warehouse = make_sandbox(export=True), Warehouse()
    load("billing")
    invoices = billing_pages(box, "invoices")
    victim = invoices[len(invoices) // 2]
    headers = {"Authorization": f"Bearer {billing_token(box)}"}
    answer = httpx.post(billing_url(box, "/invoice"), params={"operation": "delete", "requestid": "del-1"},
                        json={"Id": victim["Id"], "SyncToken": victim["SyncToken"]}, headers=headers)  # fmt: skip
    assert answer.json()["Invoice"] == {"domain": "QBO", "status": "Deleted", "Id": victim["Id"]}

    loaded = load("billing")
    assert {r: m["rows_deleted"] for (_, r), m in loaded.items()} == {"invoices": 1, "payments": 0}
    rows = raw(warehouse, "raw_billing.invoices", "id, _hub_deleted_at")
    marked = [(i, when) for i, when in rows if when is not None]
    assert [i for i, _ in marked] == [victim["Id"]] and len(rows) == len(invoices), "the tombstone stays"
    assert dt.datetime.now(dt.UTC).replace(tzinfo=None) - marked[0][1] < dt.timedelta(minutes=5)
    landed, source = landed_vs_source(warehouse)
    assert landed["billing.invoices"] == source["billing.invoices"] == len(invoices) - 1
    assert load("billing")[("billing", "invoices")]["rows_deleted"] == 0, "a deletion is marked once"
