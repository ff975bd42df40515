"""The support desk (Zendesk-like), a destination: bulk upsert by `external_id`, cursor read-back."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Query, Request

from integration_hub.sandbox.app import (
    ApiError,
    batch_of,
    bearer,
    check_secret,
    decode_cursor,
    encode_cursor,
    json_body,
    keyset_page,
    now_ts,
    system_app,
)
from integration_hub.settings import secret

BULK_LIMIT = 100


def build_app(home: Path) -> FastAPI:
    app, system = system_app("support", home, "Sandbox support desk")

    def authorize(request: Request) -> None:
        if not check_secret(bearer(request), secret("HUB_SUPPORT_API_TOKEN")):
            raise ApiError(401, "unauthorized", "Couldn't authenticate you")

    @app.post("/api/v2/orders/create_or_update_many")
    async def upsert(request: Request) -> dict:
        authorize(request)
        orders = batch_of(await json_body(request), "orders", BULK_LIMIT)
        results, pending, stamp = [], {}, now_ts()
        created = system.store.count("orders") + 1
        for order in orders:
            external_id = order.get("external_id")
            if not isinstance(external_id, str | int) or isinstance(external_id, bool) or external_id == "":
                results.append({"external_id": external_id, "id": None, "status": "Failed",
                                "error": "external_id is required"})  # fmt: skip
                continue
            external_id = str(external_id)
            if system.faults.rejects(external_id):
                results.append({"external_id": external_id, "id": None, "status": "Failed",
                                "error": "RecordInvalid: rejected by the support desk (fault injection)"})  # fmt: skip
                continue
            current = pending.get(external_id) or system.store.find("orders", external_id)
            if current is None:
                current, status = {"id": created, "created_at": stamp}, "Created"
                created += 1
            else:
                status = "Updated"
            pending[external_id] = current | order | {"external_id": external_id, "updated_at": stamp}
            results.append({"external_id": external_id, "id": current["id"], "status": status, "error": None})
        system.store.put("orders", [(o["id"], k, stamp, o) for k, o in pending.items()])
        system.stats.records_written += len(pending)
        return {"results": results}

    @app.get("/api/v2/orders")
    async def orders(
        request: Request,
        size: int = Query(100, ge=1, le=1000, alias="page[size]"),
        after: str | None = Query(None, alias="page[after]"),
    ) -> dict:
        authorize(request)
        position = decode_cursor(after, "page[after]") if after else None
        rows, nxt = keyset_page(system, "orders", position, None, None, size)
        cursor = encode_cursor(nxt) if nxt else None
        return {"orders": rows, "meta": {"has_more": nxt is not None, "after_cursor": cursor}}

    return app
