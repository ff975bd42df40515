"""The CRM (Salesforce-like): OAuth2 client credentials, cursor pages, `modified_since`, upserts.

Soft deletes, as Salesforce's recycle bin: a deleted record keeps its row, gets `IsDeleted: true`
and its deletion time as `LastModifiedDate`, and is listed only with `include_deleted=true` (as
`queryAll` lists it); counts leave it out. `/_admin/records/{resource}/{id}/delete` and
`…/undelete` (no auth, like every admin endpoint) do it: the business, not the API, deletes.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from hub_sandbox import secret
from hub_sandbox.api import (
    ApiError,
    bearer,
    check_secret,
    decode_cursor,
    encode_cursor,
    json_body,
    now_ts,
    parse_ts,
)
from hub_sandbox.app import System, batch_of, batch_upsert, keyset_page, page_response, system_app

API = "/services/data/v1"
WRITABLE = {"AccountNumber", "Name", "Email__c", "Phone", "BillingCountry", "Industry",
            "Lifetime_Value__c", "Last_Order_Date__c"}  # fmt: skip
UPSERT_LIMIT = 200


def token_ttl_default() -> float:
    return float(os.environ.get("HUB_CRM_TOKEN_TTL", 3600))


def build_app(home: Path) -> FastAPI:
    app, system = system_app("crm", home, "Sandbox CRM")
    tokens: dict[str, tuple[str, float]] = {}  # access token -> (client id, issued at)
    _add_token_endpoint(app, system, tokens)
    client_of = _token_check(system, tokens)
    _add_reads(app, system, client_of)
    _add_upsert(app, system, client_of)
    _add_soft_deletes(app, system)
    return app


def _token_check(system: System, tokens: dict[str, tuple[str, float]]) -> Callable[[Request], str]:
    """A check that the request carries a live access token; it answers the token's client id."""

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

    return client_of


def _add_token_endpoint(app: FastAPI, system: System, tokens: dict[str, tuple[str, float]]) -> None:
    """`POST /oauth/token`: an access token for the client credentials grant."""

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


def _add_reads(app: FastAPI, system: System, client_of: Callable[[Request], str]) -> None:
    """Cursor-paged lists of accounts and contacts, and `changes`: has anything changed since?"""

    def listing(
        resource: str, request: Request, modified_since, modified_before, limit, cursor, deleted
    ) -> Response:
        client_of(request)
        since, before = (
            parse_ts(modified_since, "modified_since"),
            parse_ts(modified_before, "modified_before"),
        )
        position = decode_cursor(cursor, "cursor") if cursor else None
        if position:
            since, before, deleted = position.get("s"), position.get("b"), bool(position.get("d"))
        rows, nxt = keyset_page(system, resource, position, since, before, limit, include_deleted=deleted)
        return page_response(
            "records",
            rows,
            {
                "next_cursor": encode_cursor(nxt) if nxt else None,
                "total_size": system.store.count(resource, since, before, include_deleted=deleted),
            },
        )

    def add_listing(resource: str) -> None:
        @app.get(f"{API}/{resource}", name=f"list_{resource}")
        async def list_records(
            request: Request,
            modified_since: str | None = None,
            modified_before: str | None = None,
            limit: int = Query(200, ge=1, le=2000),
            cursor: str | None = None,
            include_deleted: bool = False,
        ) -> Response:
            return listing(resource, request, modified_since, modified_before, limit, cursor, include_deleted)

    add_listing("accounts")
    add_listing("contacts")

    @app.get(f"{API}/changes")
    async def changes(request: Request, since: str | None = None) -> dict:
        client_of(request)
        since = parse_ts(since, "since")
        # A deletion is a change too: the load that follows lists it (`include_deleted`).
        count = sum(system.store.count(r, since, include_deleted=True) for r in ("accounts", "contacts"))
        latest = max(filter(None, (system.store.latest(r) for r in ("accounts", "contacts"))), default=None)
        return {"changed": count > 0, "count": count, "latest": latest}


def _add_upsert(app: FastAPI, system: System, client_of: Callable[[Request], str]) -> None:
    """`POST accounts/upsert`: create or update accounts by AccountNumber, up to UPSERT_LIMIT a call."""

    @app.post(f"{API}/accounts/upsert")
    async def upsert(request: Request) -> dict:
        client_id = client_of(request)
        outcomes = batch_upsert(
            system,
            "accounts",
            batch_of(await json_body(request), "records", UPSERT_LIMIT),
            match=match,
            new=lambda number, stamp: (
                {f: None for f in WRITABLE} | {"Id": f"001W{number:014d}", "CreatedDate": stamp}
            ),
            merge=lambda current, record, _number, stamp: (
                current | record | {"LastModifiedDate": stamp, "LastModifiedById": client_id}
            ),
            rejected="FIELD_CUSTOM_VALIDATION_EXCEPTION: rejected by the CRM (fault injection)",
            first_number=lambda: created_count(system) + 1,
            id_field="Id",
            note_created=True,  # an account created for a planted missing customer resolves it
        )
        return {
            "results": [
                {
                    "AccountNumber": o.key,
                    "id": o.record["Id"] if o.record else None,
                    "created": o.created,
                    "success": not o.errors,
                    "errors": o.errors,
                }
                for o in outcomes
            ]
        }


def _add_soft_deletes(app: FastAPI, system: System) -> None:
    """Admin: soft-delete a record, or bring it back (Salesforce's undelete)."""

    def change(resource: str, record_id: str, deleted: bool) -> dict:
        body = system.store.get(resource, record_id)
        if body is None or resource not in ("accounts", "contacts"):
            raise ApiError(404, "not_found", f"no {resource} record {record_id[:40]!r}")
        stamp = now_ts()
        body |= {"IsDeleted": deleted, "LastModifiedDate": stamp}
        (system.store.soft_delete if deleted else system.store.undelete)(resource, record_id, stamp, body)
        return body

    @app.post("/_admin/records/{resource}/{record_id}/delete")
    async def delete(resource: str, record_id: str) -> dict:
        return change(resource, record_id, True)

    @app.post("/_admin/records/{resource}/{record_id}/undelete")
    async def undelete(resource: str, record_id: str) -> dict:
        return change(resource, record_id, False)


def match(record: dict) -> tuple[object, list[str]]:
    """The record's AccountNumber and what is wrong with it (a missing number, unwritable fields)."""
    number = record.get("AccountNumber")
    missing = not isinstance(number, str) or not number
    errors = ["REQUIRED_FIELD_MISSING: AccountNumber"] if missing else []
    return number, errors + [f"INVALID_FIELD: {f}" for f in sorted(set(record) - WRITABLE)]


def created_count(system: System) -> int:
    """Accounts created through the API get ids `001W…` (numbered), apart from the seeded ones."""
    sql = "SELECT count(*) FROM records WHERE resource = 'accounts' AND id LIKE '001W%'"
    return system.store.con.execute(sql).fetchone()[0]
