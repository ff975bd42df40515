"""The judge of the shop stand-in: Shopify's Python SDK (`ShopifyAPI`), unmodified, against it.

`shopify.Session` builds `https://{shop}.{Session.myshopify_domain}:{Session.port}`; those are the
SDK's own class settings, so pointing it at the stand-in takes no patch (127.0.0.1 is the shop
`127` on the domain `0.0.1`). It pages every order through the `page_info` links and its count
agrees, lists the changed ones and the deleted ones (`destroy` events), reads the leaky bucket
(`shopify.Limits`), and meets a throttled call as Shopify answers it: 429, `Retry-After`, a full
bucket and Shopify's error body. The SDK does not retry a 429; the hub's own client does.
"""

from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import httpx
import pytest
import shopify
from hub_sandbox import secret
from hub_sandbox.shop import THROTTLED
from pyactiveresource.connection import BadRequest, ClientError

from integration_hub.systems import shop as hub_shop

CALL_LIMIT = "X-Shopify-Shop-Api-Call-Limit"


@pytest.fixture
def shop(make_sandbox, monkeypatch):
    box = make_sandbox()
    monkeypatch.setattr(shopify.Session, "myshopify_domain", "0.0.1")
    monkeypatch.setattr(shopify.Session, "port", urlsplit(box.url("shop")).port)
    session = shopify.Session("127.0.0.1", hub_shop.API_VERSION, secret("HUB_SHOP_API_KEY"))
    shopify.ShopifyResource.activate_session(session)
    yield box
    shopify.ShopifyResource.clear_session()


def header(response, name: str) -> str:
    """A header of an SDK response. The SDK keeps them in a plain dict (`shopify.Limits` looks up
    `X-Shopify-Shop-Api-Call-Limit` in that casing only), and uvicorn, like any HTTP/2 server,
    sends header names in lower case."""
    return {k.lower(): v for k, v in response.headers.items()}[name.lower()]


def every(page) -> list:
    """Every record of a listing, following its `page_info` links as a ShopifyAPI user does."""
    found = list(page)
    while page.has_next_page():
        page = page.next_page()
        found.extend(page)
    return found


def test_shopify_api_pages_counts_lists_changes_and_deletions_and_reads_the_call_limit(shop, sandbox_world):
    world = {o["id"]: o for o in sandbox_world.tables["shop"]["orders"].to_pylist()}
    orders = every(shopify.Order.find(limit=250, status="any"))
    assert len(orders) == len(world) == len({o.id for o in orders}) > 250
    assert shopify.Order.count(status="any") == len(world)
    for order in orders[::97]:
        assert order.total_price == world[order.id]["total_price"]
        assert order.updated_at == world[order.id]["updated_at"]
    customers = every(shopify.Customer.find(limit=250))
    assert len(customers) == shopify.Customer.count() == sandbox_world.tables["shop"]["customers"].num_rows

    # The leaky bucket on every answer: 40 calls, each page one more, leaking as time passes.
    used, limit = header(shopify.ShopifyResource.connection.response, CALL_LIMIT).split("/")
    assert int(limit) == 40 and 1 <= int(used) < 40

    # Changed since a cursor: the tick's new and changed orders, paged without repeating the filter.
    cursor = max(o.updated_at for o in orders)
    records = shop.tick(0.05)["records"]
    changed = every(shopify.Order.find(limit=5, status="any", updated_at_min=cursor))
    expected = records["shop.orders"]["new"] + records["shop.orders"]["changed"]
    after = {o.id for o in changed if o.updated_at > cursor}  # updated_at_min is inclusive
    assert len(after) == expected > 5 and len({o.id for o in changed}) == len(changed)
    assert all(o.updated_at == cursor for o in changed if o.id not in after)
    # Deleted orders are Shopify's `destroy` events of the Order subject.
    destroyed = every(shopify.Event.find(filter="Order", verb="destroy", limit=250))
    assert sorted(e.subject_id for e in destroyed) == sorted(shop.truth["deleted"]["shop.orders"])
    assert len(destroyed) == records["shop.orders"]["deleted"] > 0
    served = {o.id for o in every(shopify.Order.find(limit=250, status="any"))}
    assert not {e.subject_id for e in destroyed} & served

    # A page_info request takes no other filter, as Shopify's refuses them.
    first = shopify.Order.find(limit=5, status="any")
    with pytest.raises(BadRequest) as refused:
        shopify.Order.find(from_=first.next_page_url + f"&updated_at_min={cursor}")
    assert json.loads(refused.value.response.body) == {
        "errors": {"updated_at_min": "updated_at_min cannot be passed when page_info is present."}
    }


def test_a_throttled_call_answers_as_shopify_does_and_the_hubs_client_honours_retry_after(shop):
    orders = shopify.Order.count(status="any")
    shop.set_fault("shop", "rate_limit", every=2, retry_after=1)
    assert shopify.Order.count(status="any") == orders
    with pytest.raises(ClientError) as throttled:
        shopify.Order.count(status="any")
    answer = throttled.value.response
    assert answer.code == 429 and header(answer, "Retry-After") == "1"
    assert header(answer, CALL_LIMIT) == "40/40"
    assert json.loads(answer.body) == {"errors": THROTTLED}

    # The hub's count calls both endpoints; every second call is throttled, and the client waits out its Retry-After.
    started = time.monotonic()
    counts = hub_shop.count(shop.url("shop"), secret("HUB_SHOP_API_KEY"))
    assert counts["orders"] == orders
    assert time.monotonic() - started >= 1.0
    shop.clear_faults("shop")
    wrong = httpx.get(
        f"{shop.url('shop')}{hub_shop.API}/orders.json", headers={"X-Shopify-Access-Token": "x"}
    )
    assert wrong.status_code == 401 and set(wrong.json()) == {"errors"}
