"""The web shop (Shopify-like): API-key header, `Link` header pages, `updated_at_min`, counts."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Query, Request, Response

from hub_sandbox import secret
from hub_sandbox.api import ApiError, check_secret, decode_cursor, encode_cursor, parse_ts
from hub_sandbox.app import keyset_page, page_response, system_app

API = "/admin/api/2025-01"


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
        headers = {}
        if nxt:
            url = request.url.replace(query=f"page_info={encode_cursor(nxt)}&limit={limit}")
            headers["Link"] = f'<{url}>; rel="next"'
        return page_response(resource, rows, headers=headers)

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
    return app
