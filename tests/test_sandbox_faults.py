"""Every fault profile of the sandbox behaves as docs/sandbox.md says, over real HTTP."""

from __future__ import annotations

import time

import httpx
import pytest
from hub_sandbox import CREDENTIALS as CREDS
from hub_sandbox.faults import unit_hash

from tests.test_sandbox_api import (
    CRM,
    SHOP,
    billing_pages,
    billing_token,
    billing_url,
    crm_pages,
    crm_token,
    shop_pages,
)

SHOP_HEADERS = {"X-Shopify-Access-Token": CREDS["HUB_SHOP_API_KEY"]}


def invoices_page(sandbox, size: int = 100, token: str | None = None) -> httpx.Response:
    """One QuickBooks query page of invoices."""
    query = f"SELECT * FROM Invoice MAXRESULTS {size}"
    headers = {"Authorization": f"Bearer {token or billing_token(sandbox)}"}
    return httpx.get(billing_url(sandbox, "/query"), params={"query": query}, headers=headers)


@pytest.fixture(autouse=True)
def no_faults_left(sandbox):
    """Faults are switched on the shared sandbox: always switch them off again."""
    sandbox.clear_faults()
    yield
    sandbox.clear_faults()


def shop_orders(sandbox, **params) -> httpx.Response:
    return httpx.get(f"{sandbox.url('shop')}{SHOP}/orders.json", params=params, headers=SHOP_HEADERS)


def test_outage_answers_503_with_retry_after_until_cleared_or_over(sandbox):
    sandbox.set_fault("shop", "outage")
    answer = shop_orders(sandbox)
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    assert httpx.get(f"{sandbox.url('shop')}/_admin/health").status_code == 200  # admin is never faulted
    sandbox.clear_faults("shop")
    assert shop_orders(sandbox).status_code == 200

    token = billing_token(sandbox)
    sandbox.set_fault("billing", "outage", seconds=1)
    answer = invoices_page(sandbox, token=token)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert answer.json()["Fault"]["type"] == "ServiceUnavailable", "billing answers in Intuit's fault body"
    time.sleep(1.1)
    assert invoices_page(sandbox, token=token).status_code == 200


def test_rate_limit_answers_every_nth_request_with_429(sandbox):
    sandbox.set_fault("shop", "rate_limit", every=3, retry_after=2)
    codes = [shop_orders(sandbox, limit=1).status_code for _ in range(6)]
    assert codes == [200, 200, 429, 200, 200, 429]
    answer = [shop_orders(sandbox, limit=1) for _ in range(3)][-1]
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "2"
    token = billing_token(sandbox)
    sandbox.set_fault("billing", "rate_limit", every=2, retry_after=1)
    answer = [invoices_page(sandbox, 1, token) for _ in range(2)][-1]
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert (
        answer.json()["Fault"]["type"] == "ThrottleExceeded"
        and answer.json()["Fault"]["Error"][0]["code"] == "3001"
    )


def test_slow_delays_every_page(sandbox):
    started = time.monotonic()
    shop_orders(sandbox, limit=1)
    fast = time.monotonic() - started
    sandbox.set_fault("shop", "slow", delay=0.4)
    started = time.monotonic()
    assert shop_orders(sandbox, limit=1).status_code == 200
    assert time.monotonic() - started >= 0.4 > fast


def test_drop_cuts_every_nth_list_response_mid_body(sandbox):
    token = billing_token(sandbox)
    sandbox.set_fault("billing", "drop", every=2)
    assert len(invoices_page(sandbox, 100, token).json()["QueryResponse"]["Invoice"]) == 100
    with pytest.raises(httpx.RemoteProtocolError):  # "peer closed connection without sending complete body"
        invoices_page(sandbox, 100, token)
    assert invoices_page(sandbox, 100, token).status_code == 200


def test_malformed_rows_are_the_same_rows_on_every_read(sandbox, sandbox_world):
    sandbox.set_fault("shop", "malformed", share=0.2)
    rows = shop_pages(sandbox, "orders")
    ids = sandbox_world.tables["shop"]["orders"].column("id").to_pylist()
    hashes = {i: unit_hash("malformed", "shop", "orders", i) for i in ids}
    wrong_type = {i for i, h in hashes.items() if h < 0.1}
    keyless = {i for i, h in hashes.items() if 0.1 <= h < 0.2}
    assert wrong_type and keyless
    assert {r["id"] for r in rows if r.get("total_price") == "n/a"} == wrong_type
    assert sum("id" not in r for r in rows) == len(keyless)
    assert len(rows) == len(ids)
    assert shop_pages(sandbox, "orders") == rows

    sandbox.set_fault("billing", "malformed", share=0.1)
    invoices = billing_pages(sandbox, "invoices")
    assert any(i.get("TotalAmt") == "12,00" for i in invoices)
    assert any("Id" not in i for i in invoices)


def test_schema_drift_renames_a_field_in_every_row(sandbox):
    sandbox.set_fault("crm", "schema_drift")
    accounts = crm_pages(sandbox, "accounts")
    assert all("Email_Address__c" in a and "Email__c" not in a for a in accounts)
    sandbox.set_fault("shop", "schema_drift", rename="total_price:price_total")
    orders = shop_orders(sandbox, limit=20).json()["orders"]
    assert all("price_total" in o and "total_price" not in o for o in orders)
    sandbox.set_fault("billing", "schema_drift")
    invoices = invoices_page(sandbox, 50).json()["QueryResponse"]["Invoice"]
    assert all("TotalAmount" in i and "TotalAmt" not in i for i in invoices)


def test_crm_token_expiry_then_a_fresh_token_works(sandbox):
    sandbox.set_fault("crm", "token_expiry", ttl=1)
    token = crm_token(sandbox)
    url, query = f"{sandbox.url('crm')}{CRM}/query", {"q": "SELECT COUNT() FROM Account"}
    assert httpx.get(url, params=query, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    time.sleep(1.1)
    answer = httpx.get(url, params=query, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    assert answer.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    fresh = {"Authorization": f"Bearer {crm_token(sandbox)}"}
    assert httpx.get(url, params=query, headers=fresh).status_code == 200


def test_several_faults_at_once_and_admin_listing(sandbox):
    sandbox.set_fault("shop", "slow", delay=0.05)
    faults = sandbox.set_fault("shop", "schema_drift")
    assert faults == {"slow": {"delay": 0.05}, "schema_drift": {"rename": "total_price:total_price_set"}}
    assert httpx.get(f"{sandbox.url('shop')}/_admin/faults").json()["faults"] == faults
    httpx.delete(f"{sandbox.url('shop')}/_admin/faults", params={"profile": "slow"}).raise_for_status()
    assert list(httpx.get(f"{sandbox.url('shop')}/_admin/faults").json()["faults"]) == ["schema_drift"]


@pytest.mark.parametrize(
    "body",
    [{"profile": "earthquake"}, {"profile": "slow", "delay": "soon"}, {"profile": "rate_limit", "burst": 2},
     {"profile": "schema_drift", "rename": "nocolon"}, {}],
)  # fmt: skip
def test_bad_fault_requests_get_a_clear_400(sandbox, body):
    answer = httpx.post(f"{sandbox.url('shop')}/_admin/faults", json=body)
    assert answer.status_code == 400 and answer.json()["message"]
    assert httpx.get(f"{sandbox.url('shop')}/_admin/faults").json()["faults"] == {}


def test_stats_count_requests_by_path(sandbox):
    sandbox.reset_stats("shop")
    shop_orders(sandbox, limit=1)
    shop_orders(sandbox, limit=1)
    httpx.get(f"{sandbox.url('shop')}{SHOP}/orders/count.json", headers=SHOP_HEADERS)
    stats = sandbox.stats("shop")
    assert stats["requests"] == 3 and stats["writes"] == 0
    assert stats["by_path"] == {f"{SHOP}/orders.json": 2, f"{SHOP}/orders/count.json": 1}
