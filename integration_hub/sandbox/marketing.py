"""The marketing tool (HubSpot-like), a destination: batch upsert of contacts by email."""

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

BATCH_LIMIT = 100


def build_app(home: Path) -> FastAPI:
    app, system = system_app("marketing", home, "Sandbox marketing")

    def authorize(request: Request) -> None:
        if not check_secret(bearer(request), secret("HUB_MARKETING_API_KEY")):
            raise ApiError(401, "unauthorized", "Authentication credentials not found")

    @app.post("/crm/v3/objects/contacts/batch/upsert")
    async def upsert(request: Request) -> dict:
        authorize(request)
        inputs = batch_of(await json_body(request), "inputs", BATCH_LIMIT)
        results, errors, pending, stamp = [], [], {}, now_ts()
        created = system.store.count("contacts") + 1
        for item in inputs:
            raw = item.get("id")
            properties = item.get("properties", {})
            if item.get("idProperty") != "email" or not isinstance(raw, str) or "@" not in raw:
                errors.append({"id": raw, "message": "id must be an email address with idProperty 'email'"})
                continue
            if not isinstance(properties, dict):
                errors.append({"id": raw, "message": "properties must be an object"})
                continue
            email = raw.strip().lower()
            if system.faults.rejects(email):
                errors.append({"id": raw, "message": "Property values were not valid (fault injection)"})
                continue
            current = pending.get(email) or system.store.find("contacts", email)
            new = current is None
            if new:
                current = {"id": str(created), "properties": {}, "createdAt": stamp}
                created += 1
            contact = current | {"properties": current["properties"] | properties | {"email": email},
                                 "updatedAt": stamp}  # fmt: skip
            pending[email] = contact
            results.append({"id": contact["id"], "properties": contact["properties"], "new": new})
        system.store.put("contacts", [(c["id"], k, stamp, c) for k, c in pending.items()])
        system.stats.records_written += len(pending)
        return {"status": "COMPLETE", "results": results, "errors": errors}

    @app.get("/crm/v3/objects/contacts")
    async def contacts(
        request: Request, limit: int = Query(100, ge=1, le=100), after: str | None = None
    ) -> dict:
        authorize(request)
        position = decode_cursor(after, "after") if after else None
        rows, nxt = keyset_page(system, "contacts", position, None, None, limit)
        return {"results": rows, "paging": {"next": {"after": encode_cursor(nxt)}} if nxt else {}}

    return app
