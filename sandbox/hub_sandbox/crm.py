"""The CRM: the subset of Salesforce's REST API (any `vNN.N`; the hub speaks v62.0) that the hub uses.

- OAuth 2.0 client credentials flow: `POST /services/oauth2/token` (form fields or HTTP Basic),
  answering `access_token`, `instance_url` and the identity URL `id` (…/id/{org}/{user}) of the
  connected app's integration user; `GET /services/oauth2/userinfo` reports that `user_id`.
- Query and QueryAll: `GET /services/data/vNN.N/query?q=<SOQL>` (`queryAll` lists deleted
  records too), `totalSize` / `done` / `nextRecordsUrl` paging (`Sforce-Query-Options:
  batchSize=200…2000`), records with `attributes` {type, url}. The SOQL subset is `soql.py`.
- sObject Collections upsert: `PATCH /services/data/vNN.N/composite/sobjects/Account/AccountNumber`,
  ≤ 200 records, `allOrNone`, one result per record ({id, success, errors, created}).
- Salesforce's error body `[{"message", "errorCode"}]`: `INVALID_SESSION_ID` (401) for an unknown or
  expired token, `REQUEST_LIMIT_EXCEEDED` (403) under the `rate_limit` fault, `MALFORMED_QUERY`.

Soft deletes, as Salesforce's recycle bin: a deleted record keeps its row, gets `IsDeleted: true`
and its deletion time as `LastModifiedDate`, and is listed only by `queryAll`; counts leave it
out. `/_admin/records/{resource}/{id}/delete` and `…/undelete` (no auth, like every admin
endpoint) do it: the business, not the API, deletes.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hub_sandbox import secret, soql
from hub_sandbox.api import ApiError, bearer, check_secret, decode_cursor, encode_cursor, json_body, now_ts
from hub_sandbox.app import System, batch_upsert, system_app

VERSION = re.compile(r"^v\d{2,3}\.\d$")
WRITABLE = {"AccountNumber", "Name", "Email__c", "Phone", "BillingCountry", "Industry",
            "Lifetime_Value__c", "Last_Order_Date__c"}  # fmt: skip
UPSERT_LIMIT = 200
BATCH_SIZE, MIN_BATCH = 2000, 200  # Salesforce's default and smallest query batch
ORG_ID = "00DHUB0000000001"
BUSINESS_USER = "crm-user"  # who changes records in the world (seed, tick, deletes): not the hub


def token_ttl_default() -> float:
    return float(os.environ.get("HUB_CRM_TOKEN_TTL", 3600))


def sf_error(status: int, code: str, message: str, headers: dict | None = None) -> ApiError:
    """An `ApiError` answered with Salesforce's body: `[{"message": ..., "errorCode": ...}]`."""
    error = ApiError(status, code, message, headers)
    error.body = [{"message": message, "errorCode": code}]
    return error


def _gate_error(kind: str, message: str) -> tuple[int, object]:
    if kind == "rate_limit":
        return 403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    return 503, [{"message": message, "errorCode": "SERVER_UNAVAILABLE"}]


def integration_user(client_id: str) -> str:
    """The user a connected app's client credentials run as (a stable, Salesforce-shaped id)."""
    return "005HUB" + hashlib.sha256(client_id.encode()).hexdigest()[:12].upper()


def build_app(home: Path) -> FastAPI:
    app, system = system_app("crm", home, "Sandbox CRM (Salesforce REST API subset)")
    system.faults.error = _gate_error
    tokens: dict[str, tuple[str, float]] = {}  # access token -> (integration user id, issued at)
    _add_oauth(app, system, tokens)
    user_of = _token_check(system, tokens)
    _add_query(app, system, user_of)
    _add_upsert(app, system, user_of)
    _add_soft_deletes(app, system)
    return app


def _token_check(system: System, tokens: dict[str, tuple[str, float]]) -> Callable[[Request], str]:
    """A check that the request carries a live access token; it answers the token's user id."""

    def user_of(request: Request) -> str:
        version = request.path_params.get("version")
        if version is not None and not VERSION.match(version):
            raise sf_error(404, "NOT_FOUND", "The requested resource does not exist")
        token = bearer(request)
        if token is None or token not in tokens:
            raise sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        user, issued = tokens[token]
        if time.monotonic() - issued >= system.faults.token_ttl(token_ttl_default()):
            raise sf_error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return user

    return user_of


def _add_oauth(app: FastAPI, system: System, tokens: dict[str, tuple[str, float]]) -> None:
    """The token endpoint (client credentials flow) and the user info endpoint."""

    def oauth_error(status: int, error: str, description: str) -> ApiError:
        return ApiError(status, error, description, message_key="error_description")

    @app.post("/services/oauth2/token")
    async def token(request: Request) -> dict:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        if form.get("grant_type") != "client_credentials":
            raise oauth_error(
                400, "unsupported_grant_type", "grant type not supported (use client_credentials)"
            )
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
            except ValueError:
                raise oauth_error(400, "invalid_client", "invalid client credentials") from None
        expected = secret("HUB_CRM_CLIENT_ID")
        if not (
            check_secret(client_id, expected) and check_secret(client_secret, secret("HUB_CRM_CLIENT_SECRET"))
        ):
            raise oauth_error(400, "invalid_client", "invalid client credentials")
        access, user = secrets.token_urlsafe(24), integration_user(expected)
        tokens[access] = (user, time.monotonic())
        base = str(request.base_url).rstrip("/")
        return {
            "access_token": access,
            "instance_url": base,
            "id": f"{base}/id/{ORG_ID}/{user}",
            "token_type": "Bearer",
            "issued_at": str(int(time.time() * 1000)),
            "signature": base64.b64encode(hashlib.sha256(access.encode()).digest()).decode(),
        }

    @app.get("/services/oauth2/userinfo")
    async def userinfo(request: Request) -> dict:
        token = bearer(request)
        if token not in tokens:
            raise oauth_error(401, "invalid_token", "access token is invalid or expired")
        user = tokens[token][0]
        return {"user_id": user, "organization_id": ORG_ID, "preferred_username": f"{user}@hub.integration"}


def _add_query(app: FastAPI, system: System, user_of: Callable[[Request], str]) -> None:
    """Query / QueryAll and their `nextRecordsUrl` pages."""

    def answer(request: Request, version: str, state: dict) -> Response:
        try:
            query = soql.parse(state["q"])
        except soql.SoqlError as exc:
            raise sf_error(400, exc.code, str(exc)) from None
        where, args = soql.sql_filter(query)
        scope = ["resource = ?"] + ([where] if where else [])
        if not state["all"]:
            scope.append("NOT EXISTS (SELECT 1 FROM soft_deleted s WHERE s.resource = records.resource "
                         "AND s.id = records.id)")  # fmt: skip
        store = system.store
        total = state.get("t")
        if total is None:
            sql = f"SELECT count(*) FROM records WHERE {' AND '.join(scope)}"
            total = store.con.execute(sql, [query.resource, *args]).fetchone()[0]
            total = min(total, query.limit) if query.limit is not None else total
        if query.fields is None:  # SELECT COUNT()
            return JSONResponse({"totalSize": total, "done": True, "records": []})
        served = state.get("n", 0)
        size = min(_batch_size(request), total - served)
        rows = []
        if size > 0:
            after = state.get("a")
            if after:
                scope.append(f"(updated_at, id) {'<' if query.descending else '>'} (?, ?)")
                args = [*args, *after]
            order = "DESC" if query.descending else "ASC"
            sql = (f"SELECT updated_at, id, body FROM records WHERE {' AND '.join(scope)} "
                   f"ORDER BY updated_at {order}, id {order} LIMIT ?")  # fmt: skip
            rows = store.con.execute(sql, [query.resource, *args, size]).fetchall()
        records = [_project(query, version, stamp, orjson.loads(body)) for stamp, _, body in rows]
        records = system.faults.shape(query.resource, records)
        served += len(rows)
        body: dict = {"totalSize": total, "done": served >= total or len(rows) < size, "records": records}
        if not body["done"]:
            locator = encode_cursor({**state, "t": total, "n": served, "a": [rows[-1][0], rows[-1][1]]})
            body["nextRecordsUrl"] = (
                f"/services/data/{version}/{'queryAll' if state['all'] else 'query'}/{locator}"
            )
        return Response(orjson.dumps(body), media_type="application/json")

    for name, include_deleted in (("query", False), ("queryAll", True)):

        def add(name: str = name, include_deleted: bool = include_deleted) -> None:
            @app.get(f"/services/data/{{version}}/{name}", name=name)
            @app.get(f"/services/data/{{version}}/{name}/", include_in_schema=False)
            async def run(request: Request, version: str, q: str | None = None) -> Response:
                user_of(request)
                if not q:
                    raise sf_error(400, "MALFORMED_QUERY", "A query string has to be specified")
                return answer(request, version, {"q": q, "all": include_deleted})

            @app.get(f"/services/data/{{version}}/{name}/{{locator}}", name=f"{name}_more")
            async def more(request: Request, version: str, locator: str) -> Response:
                user_of(request)
                try:
                    state = decode_cursor(locator, "locator")
                except ApiError:
                    raise sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator") from None
                if not isinstance(state.get("q"), str) or state.get("all") is not include_deleted:
                    raise sf_error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
                return answer(request, version, state)

        add()


def _batch_size(request: Request) -> int:
    """The page size a client asks for with `Sforce-Query-Options: batchSize=N` (200…2000)."""
    options = request.headers.get("sforce-query-options", "")
    for option in options.split(","):
        key, _, value = option.strip().partition("=")
        if key == "batchSize" and value.isdigit():
            return max(MIN_BATCH, min(BATCH_SIZE, int(value)))
    return BATCH_SIZE


def _project(query: soql.Query, version: str, stamp: str, record: dict) -> dict:
    """A stored record as a query returns it: `attributes`, then the selected fields (null when unset)."""
    values = record | {"SystemModstamp": stamp, "IsDeleted": bool(record.get("IsDeleted"))}
    return {
        "attributes": {
            "type": query.sobject,
            "url": f"/services/data/{version}/sobjects/{query.sobject}/{record.get('Id')}",
        },
        **{field: values.get(field) for field in query.fields or ()},
    }


def _add_upsert(app: FastAPI, system: System, user_of: Callable[[Request], str]) -> None:
    """sObject Collections upsert of accounts by `AccountNumber` (the external id), ≤ UPSERT_LIMIT a call."""

    @app.patch("/services/data/{version}/composite/sobjects/{sobject}/{external_id}")
    async def upsert(request: Request, version: str, sobject: str, external_id: str) -> Response:
        user = user_of(request)
        if sobject != "Account":
            raise sf_error(404, "NOT_FOUND", f"The requested resource does not exist: {sobject[:40]}")
        if external_id != "AccountNumber":
            raise sf_error(400, "INVALID_FIELD", f"Provided external ID field does not exist or is not accessible: {external_id[:40]}")  # fmt: skip
        body = await json_body(request)
        items = body.get("records")
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise sf_error(400, "JSON_PARSER_ERROR", 'body must be {"allOrNone": bool, "records": [objects]}')
        if len(items) > UPSERT_LIMIT:
            raise sf_error(400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {UPSERT_LIMIT} records into this call")  # fmt: skip
        records = [{k: v for k, v in item.items() if k != "attributes"} for item in items]
        if body.get("allOrNone") and any(match(r)[1] or system.faults.rejects(match(r)[0]) for r in records):
            return _rolled_back(records)
        outcomes = batch_upsert(
            system,
            "accounts",
            records,
            match=match,
            new=lambda number, stamp: (
                {f: None for f in WRITABLE} | {"Id": f"001W{number:014d}", "CreatedDate": stamp}
            ),
            merge=lambda current, record, _number, stamp: (
                current | record | {"LastModifiedDate": stamp, "LastModifiedById": user}
            ),
            rejected="FIELD_CUSTOM_VALIDATION_EXCEPTION: rejected by the CRM (fault injection)",
            first_number=lambda: created_count(system) + 1,
            id_field="Id",
            note_created=True,  # an account created for a planted missing customer resolves it
        )
        results = [
            {"id": o.record["Id"], "success": True, "errors": [], "created": o.created}
            if not o.errors
            else {"success": False, "errors": [_error(e) for e in o.errors]}
            for o in outcomes
        ]
        return Response(orjson.dumps(results), media_type="application/json")


def _rolled_back(records: list[dict]) -> Response:
    """`allOrNone`: nothing is written; failing records say why, the others that they were rolled back."""
    results = []
    for record in records:
        errors = match(record)[1]
        results.append({"success": False, "errors": [_error(e) for e in errors] or [
            {"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]})  # fmt: skip
    return Response(orjson.dumps(results), media_type="application/json")


def _error(text: str) -> dict:
    """`CODE: message (field)` as Salesforce's per-record error object."""
    code, _, message = text.partition(": ")
    fields = [message] if code in ("REQUIRED_FIELD_MISSING", "INVALID_FIELD") else []
    return {"statusCode": code, "message": message or code, "fields": fields}


def _add_soft_deletes(app: FastAPI, system: System) -> None:
    """Admin: soft-delete a record, or bring it back (Salesforce's undelete), as the business does."""

    def change(resource: str, record_id: str, deleted: bool) -> dict:
        body = system.store.get(resource, record_id)
        if body is None or resource not in ("accounts", "contacts"):
            raise ApiError(404, "not_found", f"no {resource} record {record_id[:40]!r}")
        stamp = now_ts()
        body |= {"IsDeleted": deleted, "LastModifiedDate": stamp, "LastModifiedById": BUSINESS_USER}
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
