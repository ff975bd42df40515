"""The support desk, a destination: the subset of the Zendesk Support API (v2) the hub uses.

Tickets (an order is a ticket with its `external_id`), written in bulk by `tickets/create_many`
and `tickets/update_many` (≤ 100 each), which answer a queued `job_status` that the client
polls at `job_statuses/{id}` for per-item results; listed by `external_id`, counted, shown,
and read back through the cursor-based incremental ticket export. Custom ticket fields
(`ticket_fields`) carry the order's data. Auth is `{email}/token:{api_token}` basic auth;
errors answer Zendesk's `{"error", "description", "details"}`. Every path also answers with
the `.json` suffix Zendesk's clients append. Jobs run when they are submitted, so a poll finds
them completed; Zendesk's one-minute delay on incremental exports is not reproduced.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections import OrderedDict
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from hub_sandbox import secret
from hub_sandbox.api import TS_FORMAT, ApiError, check_secret, decode_cursor, encode_cursor, json_body, now_ts
from hub_sandbox.app import System, batch_of, keyset_page, page_response, system_app
from hub_sandbox.faults import plain_error

RESOURCE = "tickets"
BULK_LIMIT = 100
EXPORT_PAGE = 1000  # the incremental export's page size
KEPT_JOBS = 1000  # job statuses answered (Zendesk keeps them a day; clients poll at once)
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")
API_USER_ID = 1  # the agent the API token belongs to: requester and submitter of API tickets
# The desk's custom ticket fields: (id, title, type). Users create these in their Zendesk;
# the hub finds them by title (`GET /api/v2/ticket_fields`).
TICKET_FIELDS = [
    (360_001, "Order status", "text"),
    (360_002, "Order total", "decimal"),
    (360_003, "Currency", "text"),
    (360_004, "Order date", "date"),
    (360_005, "Channel", "text"),
    (360_006, "Customer email", "text"),
    (360_007, "Customer name", "text"),
]
FAULT_ERRORS = {"rate_limit": "APIRateLimitExceeded", "outage": "ServiceUnavailable"}
FIELD_TYPES = {fid: kind for fid, _, kind in TICKET_FIELDS}


def zendesk_error(status: int, error: str, description: str, details: dict | None = None, headers=None):
    """An `ApiError` answering Zendesk's error body."""
    exc = ApiError(status, error, description, headers, message_key="description")
    if details is not None:
        exc.body["details"] = details
    return exc


def field_value(field_id: int, value):
    """A custom field value as the desk stores it: decimals as text, as Zendesk answers them."""
    if value is None or FIELD_TYPES.get(field_id) != "decimal":
        return value
    return str(value)


def build_app(home: Path) -> FastAPI:
    app, system = system_app("support", home, "Sandbox support desk (Zendesk Support API)")
    # The fault middleware's 503 and 429 answer in Zendesk's error shape too.
    system.faults.error = lambda kind, message: (
        plain_error(kind, message)[0],
        {"error": FAULT_ERRORS[kind], "description": message},
    )
    jobs: OrderedDict[str, dict] = OrderedDict()

    def authorize(request: Request) -> None:
        """`{email}/token:{api_token}` basic auth (401 with Zendesk's body otherwise)."""
        header = request.headers.get("authorization", "")
        try:
            user, _, token = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, token = "", ""
        expected_user = f"{secret('HUB_SUPPORT_EMAIL')}/token"
        if not (
            header.lower().startswith("basic ")
            and check_secret(user, expected_user)
            and check_secret(token, secret("HUB_SUPPORT_API_TOKEN"))
        ):
            exc = ApiError(401, "Couldn't authenticate you", "")
            exc.body = {"error": "Couldn't authenticate you"}
            raise exc

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def job(request: Request, kind: str, results: list[dict]) -> dict:
        job_id = uuid.uuid4().hex
        url = f"{base(request)}/api/v2/job_statuses/{job_id}.json"
        jobs[job_id] = {
            "id": job_id, "url": url, "job_type": kind, "total": len(results), "progress": len(results),
            "status": "completed", "message": f"Completed at {now_ts()}", "results": results,
        }  # fmt: skip
        while len(jobs) > KEPT_JOBS:
            jobs.popitem(last=False)
        queued = {"id": job_id, "url": url, "job_type": kind, "total": len(results), "progress": None}
        return {"job_status": queued | {"status": "queued", "message": None, "results": None}}

    def route(method: str, path: str):
        """Registers `path.json` and `path` (in that order: a trailing path parameter would take the suffix)."""

        def register(endpoint):
            for p in (path + ".json", path):
                app.add_api_route(p, endpoint, methods=[method])
            return endpoint

        return register

    @route("POST", "/api/v2/tickets/create_many")
    async def create_many(request: Request) -> Response:
        authorize(request)
        items = batch_of(await json_body(request), "tickets", BULK_LIMIT)
        return _json(job(request, "bulk_create_tickets", write(system, base(request), items, create=True)))

    @route("PUT", "/api/v2/tickets/update_many")
    async def update_many(request: Request) -> Response:
        authorize(request)
        items = batch_of(await json_body(request), "tickets", BULK_LIMIT)
        return _json(job(request, "bulk_update_tickets", write(system, base(request), items, create=False)))

    @route("GET", "/api/v2/job_statuses/{job_id}")
    async def job_status(request: Request, job_id: str) -> Response:
        authorize(request)
        if job_id not in jobs:
            raise zendesk_error(404, "RecordNotFound", "Not found")
        return _json({"job_status": jobs[job_id]})

    @route("GET", "/api/v2/ticket_fields")
    async def ticket_fields(request: Request) -> dict:
        authorize(request)
        fields = [
            {"id": fid, "url": f"{base(request)}/api/v2/ticket_fields/{fid}.json", "type": kind,
             "title": title, "raw_title": title, "active": True, "required": False, "removable": True}
            for fid, title, kind in TICKET_FIELDS
        ]  # fmt: skip
        return {"ticket_fields": fields, "next_page": None, "previous_page": None, "count": len(fields)}

    @route("GET", "/api/v2/tickets/count")
    async def count(request: Request) -> dict:
        authorize(request)
        return {"count": {"value": system.store.count(RESOURCE), "refreshed_at": now_ts()}}

    @route("GET", "/api/v2/tickets/{ticket_id:int}")
    async def show(request: Request, ticket_id: int) -> dict:
        authorize(request)
        ticket = system.store.get(RESOURCE, ticket_id)
        if ticket is None:
            raise zendesk_error(404, "RecordNotFound", "Not found")
        return {"ticket": ticket}

    @route("PUT", "/api/v2/tickets/{ticket_id:int}")
    async def update(request: Request, ticket_id: int) -> dict:
        """Update one ticket, answered at once (what a script without the bulk endpoints does)."""
        authorize(request)
        body = await json_body(request)
        if not isinstance(body.get("ticket"), dict):
            raise zendesk_error(400, "InvalidEndpoint", 'body must be {"ticket": {...}}')
        result = write(system, base(request), [body["ticket"] | {"id": ticket_id}], create=False)[0]
        if not result["success"]:
            status = 404 if result["error"] == "RecordNotFound" else 422
            raise zendesk_error(status, result["error"], result["details"])
        return {"ticket": system.store.get(RESOURCE, ticket_id)}

    @route("GET", "/api/v2/tickets")
    async def tickets(
        request: Request,
        external_id: str | None = None,
        size: int = Query(100, ge=1, le=100, alias="page[size]"),
        after: str | None = Query(None, alias="page[after]"),
    ) -> Response:
        """List tickets: those with `external_id` (not unique in Zendesk), else all, cursor-paged."""
        authorize(request)
        if external_id is not None:
            found = system.store.matching(RESOURCE, external_id)
            return page_response(
                "tickets", found, {"count": len(found), "next_page": None, "previous_page": None}
            )
        position = decode_cursor(after, "page[after]") if after else None
        rows, nxt = keyset_page(system, RESOURCE, position, None, None, size)
        cursor = encode_cursor(nxt) if nxt else None
        links = {
            "prev": None,
            "next": f"{base(request)}/api/v2/tickets.json?page[size]={size}&page[after]={cursor}",
        }
        meta = {"has_more": nxt is not None, "after_cursor": cursor, "before_cursor": None}
        return page_response(
            "tickets", rows, {"meta": meta, "links": links if nxt else {"prev": None, "next": None}}
        )

    @route("GET", "/api/v2/incremental/tickets/cursor")
    async def export(request: Request, start_time: int | None = None, cursor: str | None = None) -> Response:
        """Cursor-based incremental ticket export: changed on or after `start_time` (Unix seconds)."""
        authorize(request)
        if cursor:
            position = decode_cursor(cursor, "cursor")
            since, after = position.get("s"), position.get("a")
        elif start_time is not None:
            since = dt.datetime.fromtimestamp(start_time, dt.UTC).strftime(TS_FORMAT)
            after = None
        else:
            raise zendesk_error(400, "InvalidPaginationParameter", "start_time or cursor is required")
        rows = system.store.page_after(RESOURCE, tuple(after) if after else None, EXPORT_PAGE + 1, since)
        end = len(rows) <= EXPORT_PAGE
        rows = rows[:EXPORT_PAGE]
        if rows:
            after = [rows[-1][0], rows[-1][1]]
        # The cursor is given at the end of the stream too: the next export resumes from it.
        token = encode_cursor({"s": since, "a": after})
        extra = {
            "after_url": f"{base(request)}/api/v2/incremental/tickets/cursor.json?cursor={token}",
            "after_cursor": token, "before_url": None, "before_cursor": None, "end_of_stream": end,
        }  # fmt: skip
        return page_response("tickets", system.faults.shape_bodies(RESOURCE, [r[2] for r in rows]), extra)

    return app


def _json(payload: dict) -> Response:
    """A JSON answer without FastAPI's per-value encoder (job results are a hundred objects)."""
    return Response(json.dumps(payload, separators=(",", ":")).encode(), media_type="application/json")


def _invalid(index: int, ticket_id, description: str, error: str = "RecordInvalid") -> dict:
    return {"index": index, "id": ticket_id, "success": False, "status": "Failed", "error": error,
            "details": description}  # fmt: skip


def _problems(item: dict) -> list[str]:
    problems = []
    if "status" in item and item["status"] not in STATUSES:
        problems.append(f"Status: {item['status']!r} is not one of {', '.join(STATUSES)}")
    fields = item.get("custom_fields", [])
    if not isinstance(fields, list) or not all(isinstance(f, dict) and "id" in f for f in fields):
        problems.append("Custom fields: must be a list of {id, value} objects")
    if "tags" in item and not (
        isinstance(item["tags"], list) and all(isinstance(t, str) for t in item["tags"])
    ):
        problems.append("Tags: must be a list of strings")
    return problems


def write(system: System, base_url: str, items: list[dict], create: bool) -> list[dict]:
    """Create (`create`) or update (by `id`) tickets in one store write; one job result per item."""
    store, stamp = system.store, now_ts()
    number = store.next_number(RESOURCE, lambda: store.count(RESOURCE, include_deleted=True) + 1)
    stored = {} if create else _stored(system, [i.get("id") for i in items])
    results, pending, created = [], {}, set()
    for index, item in enumerate(items):
        problems = _problems(item)
        if create:
            current = None
            if not isinstance((item.get("comment") or {}).get("body"), str) or not item["comment"]["body"]:
                problems.append("Description: cannot be blank")
            ticket_id = None
        else:
            ticket_id = item.get("id")
            current = pending.get(ticket_id) or stored.get(ticket_id)
            if current is None:
                results.append(
                    _invalid(index, ticket_id, f"ticket {ticket_id!r} not found", "RecordNotFound")
                )
                continue
            if current["status"] == "closed":
                problems.append("Status: closed prevents ticket update")
        key = item.get("external_id", current and current.get("external_id"))
        if not problems and system.faults.rejects(key):
            problems.append("rejected by the support desk (fault injection)")
        if problems:
            results.append(_invalid(index, ticket_id, "; ".join(problems)))
            continue
        if create:
            ticket_id, number = number, number + 1
            created.add(ticket_id)
            current = _new_ticket(base_url, ticket_id, item, stamp)
        pending[ticket_id] = _merge(current, item, stamp)
        results.append({"index": index, "id": ticket_id, "action": "create" if create else "update",
                        "success": True, "status": "Created" if create else "Updated"})  # fmt: skip
    store.put(RESOURCE, [(i, t["external_id"], stamp, t) for i, t in pending.items()])
    store.numbered(RESOURCE, number)
    system.stats.records_written += len(pending)
    return results


def _stored(system: System, ids: list) -> dict:
    wanted = [i for i in ids if isinstance(i, int) and not isinstance(i, bool)]
    return system.store.get_many(RESOURCE, wanted) if wanted else {}


def _new_ticket(base_url: str, ticket_id: int, item: dict, stamp: str) -> dict:
    body = item["comment"]["body"]
    subject = item.get("subject") or body.split("\n")[0][:80]
    return {
        "id": ticket_id, "url": f"{base_url}/api/v2/tickets/{ticket_id}.json", "external_id": None,
        "type": item.get("type"), "subject": subject, "raw_subject": subject, "description": body,
        "priority": item.get("priority"), "status": "new", "requester_id": API_USER_ID,
        "submitter_id": API_USER_ID, "assignee_id": None, "tags": [],
        "custom_fields": [{"id": fid, "value": None} for fid, _, _ in TICKET_FIELDS],
        "via": {"channel": "api"}, "created_at": stamp,
    }  # fmt: skip


def _merge(current: dict, item: dict, stamp: str) -> dict:
    ticket = dict(current)
    for name in ("external_id", "subject", "status", "type", "priority"):
        if name in item:
            ticket[name] = item[name]
    if "subject" in item:
        ticket["raw_subject"] = item["subject"]
    if "tags" in item:
        ticket["tags"] = sorted(set(item["tags"])) if len(item["tags"]) > 1 else list(item["tags"])
    if item.get("custom_fields"):
        given = {f["id"]: f.get("value") for f in item["custom_fields"]}
        ticket["custom_fields"] = [
            {"id": f["id"], "value": field_value(f["id"], given[f["id"]])} if f["id"] in given else f
            for f in ticket["custom_fields"]
        ]
    ticket["updated_at"] = stamp
    return ticket
