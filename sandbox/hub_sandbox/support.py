"""The support desk (Zendesk-like), a destination: bulk upsert by `external_id`, cursor read-back."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from hub_sandbox.api import bearer_guard, decode_cursor, encode_cursor, json_body
from hub_sandbox.app import batch_of, batch_upsert, keyset_page, page_response, system_app

BULK_LIMIT = 100


def match(order: dict) -> tuple[object, list[str]]:
    """The order's `external_id` (as text), or why it has none."""
    external_id = order.get("external_id")
    if not isinstance(external_id, str | int) or isinstance(external_id, bool) or external_id == "":
        return external_id, ["external_id is required"]
    return str(external_id), []


def build_app(home: Path) -> FastAPI:
    app, system = system_app("support", home, "Sandbox support desk")

    authorize = bearer_guard("HUB_SUPPORT_API_TOKEN", "Couldn't authenticate you")

    @app.post("/api/v2/orders/create_or_update_many")
    async def upsert(request: Request) -> dict:
        authorize(request)
        outcomes = batch_upsert(
            system,
            "orders",
            batch_of(await json_body(request), "orders", BULK_LIMIT),
            match=match,
            new=lambda number, stamp: {"id": number, "created_at": stamp},
            merge=lambda current, order, key, stamp: (
                current | order | {"external_id": key, "updated_at": stamp}
            ),
            rejected="RecordInvalid: rejected by the support desk (fault injection)",
        )
        return {"results": [_result(o) for o in outcomes]}

    @app.get("/api/v2/orders")
    async def orders(
        request: Request,
        size: int = Query(100, ge=1, le=1000, alias="page[size]"),
        after: str | None = Query(None, alias="page[after]"),
    ) -> Response:
        authorize(request)
        position = decode_cursor(after, "page[after]") if after else None
        rows, nxt = keyset_page(system, "orders", position, None, None, size)
        cursor = encode_cursor(nxt) if nxt else None
        return page_response("orders", rows, {"meta": {"has_more": nxt is not None, "after_cursor": cursor}})

    return app


def _result(outcome) -> dict:
    if outcome.errors:
        return {"external_id": outcome.key, "id": None, "status": "Failed", "error": outcome.errors[0]}
    status = "Created" if outcome.created else "Updated"
    return {"external_id": outcome.key, "id": outcome.record["id"], "status": status, "error": None}
