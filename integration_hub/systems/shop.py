"""The web shop on Shopify's REST Admin API (version `API_VERSION`): orders with nested line items,
and customers.

An admin API access token in `X-Shopify-Access-Token`, pages by the `page_info` cursor of the
`Link` header, incremental on `updated_at` through `updated_at_min` (inclusive) /
`updated_at_max` (exclusive); orders are asked with `status=any` (Shopify lists open orders only
by default). A throttled call (429, the leaky bucket of `X-Shopify-Shop-Api-Call-Limit` full) is
retried after its `Retry-After` (`kit/rest.py`).
Line items land as the child table `orders__line_items` (`_dlt_parent_id` = `orders._dlt_id`).

Deleted orders are listed by the Events API (`events.json?filter=Order&verb=destroy`), from the
orders' cursor the load started at: every deletion since the last change the hub saw, so none is
missed however long the hub was away, and one listed twice is marked once (`kit/deletions.py`).
Shopify has no events of deleted customers (only a webhook tells), so those are not detected.
"""

from __future__ import annotations

import datetime as dt

import dlt
import pyarrow as pa
from dlt.sources.helpers.rest_client.auth import APIKeyAuth
from dlt.sources.helpers.rest_client.paginators import HeaderLinkPaginator

from integration_hub.systems import Credential, System, TraceKeys
from integration_hub.systems.kit.contract import DECIMAL_TEXT, INTEGER, TIMESTAMP, Contract, Rejects
from integration_hub.systems.kit.deletions import Listed
from integration_hub.systems.kit.rest import Api, get_json, rest_source, session

NAME = "shop"
# REST is legacy since 2024-10 but served on every version; docs/sandbox.md says why the hub keeps it.
API_VERSION = "2025-01"
API = f"/admin/api/{API_VERSION}"
DESCRIPTIONS = {
    "orders": "Web-shop orders as the shop sends them; line items in the child table orders__line_items.",
    "customers": "Web-shop customer accounts (emails as typed by shoppers).",
}
CONTRACTS = {
    "orders": Contract("id", {"id": INTEGER, "updated_at": TIMESTAMP, "total_price": DECIMAL_TEXT}),
    "customers": Contract("id", {"id": INTEGER, "updated_at": TIMESTAMP}),
}


def source(
    base_url: str,
    api_key: str = dlt.secrets.value,
    start=None,
    end=None,
    page_size: int = 250,
    rejects: Rejects | None = None,
) -> dlt.sources.DltSource:
    """Orders and customers changed in [start, end); no bounds = since the stored cursor."""
    return rest_source(
        NAME,
        Api(
            path=f"{API}/{{name}}.json",
            data_selector="{name}",
            primary_key="id",
            cursor="updated_at",
            params={"limit": page_size},
            query=_window,
        ),
        base_url=base_url,
        auth=APIKeyAuth(name="X-Shopify-Access-Token", api_key=api_key, location="header"),
        paginator=HeaderLinkPaginator(),
        contracts=CONTRACTS,
        rejects=rejects,
        start=start,
        end=end,
    )


def _window(name: str, since: str | None, before: str | None) -> dict:
    """The listing's filters: changed in [since, before); orders of every status."""
    return {"updated_at_min": since, "updated_at_max": before, **_every_status(name)}


def _every_status(name: str) -> dict:
    return {"status": "any"} if name == "orders" else {}


def count(base_url: str, api_key: str) -> dict[str, int]:
    """Orders and customers the shop holds now (its count endpoints)."""
    headers = {"X-Shopify-Access-Token": api_key}
    return {
        name: get_json(f"{base_url}{API}/{name}/count.json", headers=headers, params=_every_status(name))[
            "count"
        ]
        for name in DESCRIPTIONS
    }


def deleted_orders(since: str | None, base_url: str, api_key: str) -> pa.Table:
    """Orders deleted at or after `since` (all when None): `id` and `deleted_at` (naive UTC)."""
    http, ids, stamps = session(), [], []
    url: str | None = f"{base_url}{API}/events.json"
    params = {"filter": "Order", "verb": "destroy", "limit": 250, "created_at_min": since}
    while url:
        response = http.get(url, params=params, headers={"X-Shopify-Access-Token": api_key})
        response.raise_for_status()
        for event in response.json()["events"]:
            ids.append(int(event["subject_id"]))
            stamps.append(dt.datetime.fromisoformat(event["created_at"].replace("Z", "+00:00")))
        url, params = response.links.get("next", {}).get("url"), None  # the page_info URL carries the filters
    utc = [s.astimezone(dt.UTC).replace(tzinfo=None) for s in stamps]
    return pa.table({"id": pa.array(ids, pa.int64()), "deleted_at": pa.array(utc, pa.timestamp("us"))})


SYSTEM = System(
    name=NAME,
    description="The web shop (Shopify REST Admin API): web orders and shopper accounts.",
    sandbox_port=2,
    credentials={"api_key": Credential("HUB_SHOP_API_KEY", sandbox="shpat_sandbox_key")},
    resources=DESCRIPTIONS,
    source=source,
    schedule="hourly",
    raw_keys={"orders": "id", "customers": "id"},
    canonical_rows={
        "customers": (None, "SELECT count(*) FROM canonical.customer_xref WHERE system = 'shop'"),
        "orders": (
            "sales_order",
            "SELECT count(*) FROM canonical.sales_order "
            "WHERE shop_order_id IN (SELECT id FROM raw_shop.orders)",
        ),
    },  # fmt: skip
    count=count,
    deletions={"orders": Listed(deleted_orders)},
    identity_rank=2,
    trace=TraceKeys(
        raw=(("shop_order_id", "orders", "id"),),
        ids=(("sales_order", "shop_order_id"),),
        customers=("customers", "id"),
    ),
)
