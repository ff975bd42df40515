"""The marketing tool (HubSpot-like), a destination: batch upsert of contacts by email."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from hub_sandbox.api import bearer_guard, decode_cursor, encode_cursor, json_body
from hub_sandbox.app import batch_of, batch_upsert, keyset_page, page_response, system_app

BATCH_LIMIT = 100


def match(item: dict) -> tuple[str | None, list[str]]:
    """The input's email, trimmed and lower-cased, or why it has none."""
    raw = item.get("id")
    if item.get("idProperty") != "email" or not isinstance(raw, str) or "@" not in raw:
        return None, ["id must be an email address with idProperty 'email'"]
    if not isinstance(item.get("properties", {}), dict):
        return None, ["properties must be an object"]
    return raw.strip().lower(), []


def merge(current: dict, item: dict, email: str, stamp: str) -> dict:
    properties = current["properties"] | item.get("properties", {}) | {"email": email}
    return current | {"properties": properties, "updatedAt": stamp}


def build_app(home: Path) -> FastAPI:
    app, system = system_app("marketing", home, "Sandbox marketing")

    authorize = bearer_guard("HUB_MARKETING_API_KEY", "Authentication credentials not found")

    @app.post("/crm/v3/objects/contacts/batch/upsert")
    async def upsert(request: Request) -> dict:
        authorize(request)
        outcomes = batch_upsert(
            system,
            "contacts",
            batch_of(await json_body(request), "inputs", BATCH_LIMIT),
            match=match,
            new=lambda number, stamp: {"id": str(number), "properties": {}, "createdAt": stamp},
            merge=merge,
            rejected="Property values were not valid (fault injection)",
        )
        return {
            "status": "COMPLETE",
            "results": [
                {"id": o.record["id"], "properties": o.record["properties"], "new": o.created}
                for o in outcomes
                if not o.errors
            ],
            "errors": [{"id": o.item.get("id"), "message": o.errors[0]} for o in outcomes if o.errors],
        }

    @app.get("/crm/v3/objects/contacts")
    async def contacts(
        request: Request, limit: int = Query(100, ge=1, le=100), after: str | None = None
    ) -> Response:
        authorize(request)
        position = decode_cursor(after, "after") if after else None
        rows, nxt = keyset_page(system, "contacts", position, None, None, limit)
        return page_response(
            "results", rows, {"paging": {"next": {"after": encode_cursor(nxt)}} if nxt else {}}
        )

    return app
