"""The web shop (Shopify-like): API-key header, `Link` header pages, `updated_at_min`, counts, and
the Events API's `destroy` events of deleted orders (Shopify lists deletions nowhere else; it
has no events of customers, whose deletions only a webhook tells)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from hub_sandbox import secret
from hub_sandbox.api import ApiError, check_secret, decode_cursor, encode_cursor, parse_ts
from hub_sandbox.app import System, keyset_page, page_response, system_app

API = "/admin/api/2025-01"
# Event subjects (Shopify's `filter`) -> the resource whose deletions the shop logs.
SUBJECTS = {"Order": "orders"}


def build_app(home: Path) -> FastAPI:
    app, system = system_app("shop", home, "Sandbox shop")

    def authorize(request: Request) -> None:
        if not check_secret(request.headers.get("x-shopify-access-token"), secret("HUB_SHOP_API_KEY")):
            raise ApiError(
                401,
                "unauthorized",
                "[API] Invalid API key or access token (unrecognized login or wrong password)",
            )

    def listing(resource, request, updated_at_min, updated_at_max, limit, page_info) -> Response:
        authorize(request)
        since, before = parse_ts(updated_at_min, "updated_at_min"), parse_ts(updated_at_max, "updated_at_max")
        position = decode_cursor(page_info, "page_info") if page_info else None
        rows, nxt = keyset_page(system, resource, position, since, before, limit)
        return page_response(resource, rows, headers=link(request, nxt, limit))

    def counting(resource, request, updated_at_min, updated_at_max) -> dict:
        authorize(request)
        since, before = parse_ts(updated_at_min, "updated_at_min"), parse_ts(updated_at_max, "updated_at_max")
        return {"count": system.store.count(resource, since, before)}

    def add_routes(resource: str) -> None:
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


def link(request: Request, cursor: dict | None, limit: int) -> dict:
    """The `Link` header of the next page (none on the last), as Shopify pages every listing."""
    if not cursor:
        return {}
    url = request.url.replace(query=f"page_info={encode_cursor(cursor)}&limit={limit}")
    return {"Link": f'<{url}>; rel="next"'}


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
            cursor = decode_cursor(page_info, "page_info")
            filter, verb, since, before = cursor.get("f"), cursor.get("v"), cursor.get("s"), cursor.get("b")
        else:
            cursor = None
            since, before = (
                parse_ts(created_at_min, "created_at_min"),
                parse_ts(created_at_max, "created_at_max"),
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
