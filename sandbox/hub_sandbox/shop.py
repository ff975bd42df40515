"""The web shop: the subset of Shopify's REST Admin API (a quarterly version in the path) the hub uses.

Access token in `X-Shopify-Access-Token`; `orders.json` and `customers.json` filtered by
`updated_at_min` / `updated_at_max` and paged by the `page_info` cursor of the `Link` header (a
`page_info` request takes no other filter, as Shopify's refuses them); `count.json`; the Events
API's `destroy` events of deleted orders (Shopify lists deletions nowhere else; it has no events of
customers, whose deletions only a webhook tells). Every answer carries the leaky bucket's
`X-Shopify-Shop-Api-Call-Limit: n/40`; errors are Shopify's `{"errors": ...}`, a throttled call
a 429 with `Retry-After`.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from hub_sandbox import secret
from hub_sandbox.api import ApiError, check_secret, decode_cursor, encode_cursor, parse_ts
from hub_sandbox.app import System, keyset_page, page_response, system_app

API = "/admin/api/{version}"
# Shopify releases a version a quarter, named by its month; `unstable` is its preview.
VERSION = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
# Event subjects (Shopify's `filter`) -> the resource whose deletions the shop logs.
SUBJECTS = {"Order": "orders"}
# The REST Admin API's leaky bucket on the Standard plan: 40 calls, leaking 2 a second.
BUCKET_SIZE, LEAK_PER_SECOND = 40, 2.0
THROTTLED = (
    "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."
)
PAGING_PARAMS = {"page_info", "limit", "fields"}  # all a `page_info` request may carry


def shopify_error(status: int, errors: str | dict, headers: dict | None = None) -> ApiError:
    """An `ApiError` answered with Shopify's body: `{"errors": "..."}` or `{"errors": {field: ...}}`."""
    error = ApiError(status, "shopify", str(errors), headers)
    error.body = {"errors": errors}
    return error


def _gate_error(kind: str, message: str) -> tuple[int, object]:
    if kind == "rate_limit":
        return 429, {"errors": THROTTLED}
    return 503, {"errors": "Unavailable Shop"}


def build_app(home: Path) -> FastAPI:
    app, system = system_app("shop", home, "Sandbox shop (Shopify REST Admin API subset)")
    system.faults.error = _gate_error
    app.add_middleware(CallLimit)  # outermost: it sees the fault middleware's 429s too

    def authorize(request: Request) -> None:
        if not VERSION.match(request.path_params.get("version", "")):
            raise shopify_error(404, "Not Found")
        if not check_secret(request.headers.get("x-shopify-access-token"), secret("HUB_SHOP_API_KEY")):
            raise shopify_error(
                401, "[API] Invalid API key or access token (unrecognized login or wrong password)"
            )

    def listing(resource, request, updated_at_min, updated_at_max, limit, page_info) -> Response:
        authorize(request)
        if page_info:
            paging_only(request)
        since, before = shop_ts(updated_at_min, "updated_at_min"), shop_ts(updated_at_max, "updated_at_max")
        position = shop_cursor(page_info) if page_info else None
        rows, nxt = keyset_page(system, resource, position, since, before, limit)
        return page_response(resource, rows, headers=link(request, nxt, limit))

    def counting(resource, request, updated_at_min, updated_at_max) -> dict:
        authorize(request)
        since, before = shop_ts(updated_at_min, "updated_at_min"), shop_ts(updated_at_max, "updated_at_max")
        return {"count": system.store.count(resource, since, before)}

    def add_routes(resource: str) -> None:
        # `status` (orders: open, closed, cancelled, any) is taken and not applied: every stored
        # order is served, as `status=any` (which the hub sends) would.
        @app.get(f"{API}/{resource}.json", name=f"list_{resource}")
        async def list_records(
            request: Request,
            updated_at_min: str | None = None,
            updated_at_max: str | None = None,
            limit: int = Query(50, ge=1, le=250),
            page_info: str | None = None,
        ) -> Response:
            return listing(resource, request, updated_at_min, updated_at_max, limit, page_info)

        @app.get(f"{API}/{resource}/count.json", name=f"count_{resource}")
        async def count_records(
            request: Request, updated_at_min: str | None = None, updated_at_max: str | None = None
        ) -> dict:
            return counting(resource, request, updated_at_min, updated_at_max)

    add_routes("orders")
    add_routes("customers")
    _add_events(app, system, authorize)
    return app


def shop_ts(value: str | None, name: str) -> str | None:
    try:
        return parse_ts(value, name)
    except ApiError:
        raise shopify_error(400, {name: f"{name} is not a valid date"}) from None


def shop_cursor(page_info: str) -> dict:
    try:
        return decode_cursor(page_info, "page_info")
    except ApiError:
        raise shopify_error(400, {"page_info": "Invalid value."}) from None


def paging_only(request: Request) -> None:
    """A `page_info` request carries its filters in the cursor: any other filter is refused (400)."""
    extra = sorted(set(request.query_params) - PAGING_PARAMS)
    if extra:
        raise shopify_error(
            400, {name: f"{name} cannot be passed when page_info is present." for name in extra}
        )


def link(request: Request, cursor: dict | None, limit: int) -> dict:
    """The `Link` header of the next page (none on the last), as Shopify pages every listing."""
    if not cursor:
        return {}
    url = request.url.replace(query=f"page_info={encode_cursor(cursor)}&limit={limit}")
    return {"Link": f'<{url}>; rel="next"'}


class CallLimit:
    """The leaky bucket: each API call adds one, `LEAK_PER_SECOND` leak out; every answer says
    `X-Shopify-Shop-Api-Call-Limit: <level>/40`, and a throttled one (429) a full bucket.

    The stand-in reports the bucket as Shopify computes it but refuses calls only under the
    `rate_limit` fault (with Shopify's 429 and `Retry-After`), so that the demo and the tests are
    not held to two calls a second.
    """

    def __init__(self, app):
        self.app, self.level, self.at = app, 0.0, time.monotonic()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            return await self.app(scope, receive, send)
        now = time.monotonic()
        self.level = min(BUCKET_SIZE, max(0.0, self.level - (now - self.at) * LEAK_PER_SECOND) + 1)
        self.at = now
        level = int(self.level)

        async def with_limit(message):
            if message["type"] == "http.response.start":
                used = BUCKET_SIZE if message["status"] == 429 else level
                header = (b"x-shopify-shop-api-call-limit", f"{used}/{BUCKET_SIZE}".encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        return await self.app(scope, receive, with_limit)


def _add_events(app: FastAPI, system: System, authorize) -> None:
    """`GET events.json?filter=Order&verb=destroy&created_at_min=…`: the orders deleted, oldest first."""

    @app.get(f"{API}/events.json", name="list_events")
    async def events(
        request: Request,
        filter: str | None = None,  # noqa: A002 - Shopify's parameter name
        verb: str | None = None,
        created_at_min: str | None = None,
        created_at_max: str | None = None,
        limit: int = Query(50, ge=1, le=250),
        page_info: str | None = None,
    ) -> Response:
        authorize(request)
        if page_info:
            paging_only(request)
            cursor = shop_cursor(page_info)
            filter, verb, since, before = cursor.get("f"), cursor.get("v"), cursor.get("s"), cursor.get("b")
        else:
            cursor = None
            since, before = (
                shop_ts(created_at_min, "created_at_min"),
                shop_ts(created_at_max, "created_at_max"),
            )
        resource = SUBJECTS.get(filter or "Order")
        if resource is None or verb not in (None, "destroy"):  # the shop logs order deletions only
            return JSONResponse({"events": []})
        after = tuple(cursor["a"]) if cursor and cursor.get("a") else None
        rows = system.store.deletions_after(resource, after, limit + 1, since, before)
        more, rows = len(rows) > limit, rows[:limit]
        nxt = {"f": filter, "v": verb, "s": since, "b": before, "a": list(rows[-1][:2])} if more else None
        return JSONResponse({"events": [event(*row) for row in rows]}, headers=link(request, nxt, limit))


def event(deleted_at: str, seq: int, order_id: int, label: str | None) -> dict:
    """A logged order deletion as Shopify's Event resource."""
    return {
        "id": seq, "subject_id": order_id, "created_at": deleted_at, "subject_type": "Order",
        "verb": "destroy", "arguments": [label], "body": None, "message": f"Order {label} was deleted.",
        "author": "Shopify", "description": f"Order {label} was deleted.", "path": f"/admin/orders/{order_id}",
    }  # fmt: skip
