"""The CRM (Salesforce-like): OAuth2 client credentials, cursor pages, `modified_since`, upserts."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from urllib.parse import parse_qs

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
    parse_ts,
    system_app,
)
from integration_hub.settings import secret

API = "/services/data/v1"
WRITABLE = {"AccountNumber", "Name", "Email__c", "Phone", "BillingCountry", "Industry",
            "Lifetime_Value__c", "Last_Order_Date__c"}  # fmt: skip
UPSERT_LIMIT = 200


def token_ttl_default() -> float:
    return float(os.environ.get("HUB_CRM_TOKEN_TTL", 3600))


def build_app(home: Path) -> FastAPI:
    app, system = system_app("crm", home, "Sandbox CRM")
    tokens: dict[str, tuple[str, float]] = {}  # access token -> (client id, issued at)

    def client_of(request: Request) -> str:
        token = bearer(request)
        if token is None or token not in tokens:
            raise ApiError(
                401, "invalid_token", "missing or unknown access token", message_key="error_description"
            )
        client_id, issued = tokens[token]
        if time.monotonic() - issued >= system.faults.token_ttl(token_ttl_default()):
            raise ApiError(401, "invalid_token", "token expired", message_key="error_description")
        return client_id

    @app.post("/oauth/token")
    async def token(request: Request) -> dict:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            raise ApiError(
                400,
                "unsupported_grant_type",
                "use grant_type=client_credentials",
                message_key="error_description",
            )
        client_id = secret("HUB_CRM_CLIENT_ID")
        if not (
            check_secret(form.get("client_id"), client_id)
            and check_secret(form.get("client_secret"), secret("HUB_CRM_CLIENT_SECRET"))
        ):
            raise ApiError(
                401, "invalid_client", "client authentication failed", message_key="error_description"
            )
        access = secrets.token_urlsafe(24)
        tokens[access] = (client_id, time.monotonic())
        ttl = system.faults.token_ttl(token_ttl_default())
        return {"access_token": access, "token_type": "Bearer", "expires_in": ttl}

    def listing(resource: str, request: Request, modified_since, modified_before, limit, cursor) -> dict:
        client_of(request)
        since, before = (
            parse_ts(modified_since, "modified_since"),
            parse_ts(modified_before, "modified_before"),
        )
        position = decode_cursor(cursor, "cursor") if cursor else None
        if position:
            since, before = position.get("s"), position.get("b")
        rows, nxt = keyset_page(system, resource, position, since, before, limit)
        return {
            "records": rows,
            "next_cursor": encode_cursor(nxt) if nxt else None,
            "total_size": system.store.count(resource, since, before),
        }

    @app.get(f"{API}/accounts")
    async def accounts(
        request: Request,
        modified_since: str | None = None,
        modified_before: str | None = None,
        limit: int = Query(200, ge=1, le=2000),
        cursor: str | None = None,
    ) -> dict:
        return listing("accounts", request, modified_since, modified_before, limit, cursor)

    @app.get(f"{API}/contacts")
    async def contacts(
        request: Request,
        modified_since: str | None = None,
        modified_before: str | None = None,
        limit: int = Query(200, ge=1, le=2000),
        cursor: str | None = None,
    ) -> dict:
        return listing("contacts", request, modified_since, modified_before, limit, cursor)

    @app.get(f"{API}/changes")
    async def changes(request: Request, since: str | None = None) -> dict:
        client_of(request)
        since = parse_ts(since, "since")
        count = sum(system.store.count(r, since) for r in ("accounts", "contacts"))
        latest = max(filter(None, (system.store.latest(r) for r in ("accounts", "contacts"))), default=None)
        return {"changed": count > 0, "count": count, "latest": latest}

    @app.post(f"{API}/accounts/upsert")
    async def upsert(request: Request) -> dict:
        client_id = client_of(request)
        records = batch_of(await json_body(request), "records", UPSERT_LIMIT)
        results, pending, stamp = [], {}, now_ts()
        created_before = created_count(system)
        for record in records:
            number = record.get("AccountNumber")
            unknown = sorted(set(record) - WRITABLE)
            errors = (
                ["REQUIRED_FIELD_MISSING: AccountNumber"] if not isinstance(number, str) or not number else []
            ) + [f"INVALID_FIELD: {f}" for f in unknown]
            if not errors and system.faults.rejects(number):
                errors = ["FIELD_CUSTOM_VALIDATION_EXCEPTION: rejected by the CRM (fault injection)"]
            if errors:
                results.append({"AccountNumber": number, "id": None, "created": False, "success": False,
                                "errors": errors})  # fmt: skip
                continue
            current = pending.get(number) or system.store.find("accounts", number)
            created = current is None
            if created:
                created_before += 1
                current = {f: None for f in WRITABLE} | {
                    "Id": f"001W{created_before:014d}",
                    "CreatedDate": stamp,
                }
            pending[number] = current | record | {"LastModifiedDate": stamp, "LastModifiedById": client_id}
            account = pending[number]
            results.append({"AccountNumber": number, "id": account["Id"], "created": created, "success": True,
                            "errors": []})  # fmt: skip
        system.store.put("accounts", [(a["Id"], n, stamp, a) for n, a in pending.items()])
        system.stats.records_written += len(pending)
        return {"results": results}

    return app


def created_count(system) -> int:
    """Accounts created through the API get ids `001W…` (numbered), apart from the seeded ones."""
    sql = "SELECT count(*) FROM records WHERE resource = 'accounts' AND id LIKE '001W%'"
    return system.store.con.execute(sql).fetchone()[0]
