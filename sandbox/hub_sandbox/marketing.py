"""The marketing tool, a destination: the subset of HubSpot's CRM API v3 (contacts) the hub uses.

Contacts are upserted in batches by email (`batch/upsert` with `idProperty: email`, ≤ 100
inputs; 207 with `errors` when some fail), listed with `after` paging, and searched
(`contacts/search`) by `lastmodifieddate` and `email` filters in one filter group, ascending
by `lastmodifieddate`, ≤ 200 a page with `after` paging and a `total`. Records have HubSpot's
shape (`id`, `properties` with `hs_object_id`, `createdate`, `lastmodifieddate`, `createdAt`,
`updatedAt`, `archived`). Auth is a private app's bearer token; errors answer HubSpot's
`{"status": "error", "message", "correlationId", "category"}`, a 429 with `Retry-After`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from hub_sandbox.api import ApiError, bearer_guard, decode_cursor, encode_cursor, json_body
from hub_sandbox.app import System, batch_of, batch_upsert, keyset_page, page_response, system_app

RESOURCE = "contacts"
BATCH_LIMIT = 100
SEARCH_LIMIT = 200
# Returned on every contact whatever `properties` asks for, as HubSpot does.
SYSTEM_PROPERTIES = ("hs_object_id", "createdate", "lastmodifieddate")
DEFAULT_PROPERTIES = ("email", "firstname", "lastname")
OPERATORS = ("EQ", "GT", "GTE", "LT", "LTE")
CATEGORIES = {400: "VALIDATION_ERROR", 401: "INVALID_AUTHENTICATION", 404: "OBJECT_NOT_FOUND",
              413: "VALIDATION_ERROR", 429: "RATE_LIMITS", 503: "SERVICE_UNAVAILABLE"}  # fmt: skip
FAULT_MESSAGES = {"rate_limit": "You have reached your secondly limit.", "outage": None}


def hubspot_body(status: int, message: str, category: str | None = None) -> dict:
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category or CATEGORIES.get(status, "VALIDATION_ERROR"),
    }


def invalid(message: str) -> ApiError:
    exc = ApiError(400, "", message)
    exc.body = hubspot_body(400, message)
    return exc


def hubspot_time(stamp: str) -> str:
    """A store stamp (`...:SSZ`) as HubSpot writes times, with milliseconds."""
    return stamp[:-1] + ".000Z"


def match(item: dict) -> tuple[str | None, list[str]]:
    """The input's email, trimmed and lower-cased, or why it has none."""
    raw = item.get("id")
    if item.get("idProperty") != "email" or not isinstance(raw, str) or "@" not in raw:
        return None, ["id must be an email address with idProperty 'email'"]
    if not isinstance(item.get("properties", {}), dict):
        return None, ["properties must be an object"]
    return raw.strip().lower(), []


def new_contact(number: int, stamp: str) -> dict:
    at = hubspot_time(stamp)
    return {"id": str(number), "properties": {"hs_object_id": str(number), "createdate": at},
            "createdAt": at, "updatedAt": at, "archived": False}  # fmt: skip


def merge(current: dict, item: dict, email: str, stamp: str) -> dict:
    at = hubspot_time(stamp)
    given = {k: v for k, v in item.get("properties", {}).items() if k not in SYSTEM_PROPERTIES}
    properties = current["properties"] | given | {"email": email, "lastmodifieddate": at}
    return current | {"properties": properties, "updatedAt": at}


# ---- search --------------------------------------------------------------------------------


def _instant(value) -> dt.datetime:
    """A filter value as HubSpot takes it: epoch milliseconds or an ISO 8601 time."""
    text = str(value).strip()
    try:
        if text.isdigit():
            return dt.datetime.fromtimestamp(int(text) / 1000, dt.UTC).replace(tzinfo=None)
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise invalid(f"lastmodifieddate: {text[:40]!r} is neither epoch milliseconds nor ISO 8601") from None
    return parsed.astimezone(dt.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _bounds(operator: str, value) -> tuple[str | None, str | None]:
    """The store window [since, before) of whole-second stamps that `lastmodifieddate OP value` keeps."""
    moment = _instant(value)
    floor = moment.replace(microsecond=0)
    ceil = floor + dt.timedelta(seconds=1) if moment.microsecond else floor
    after_floor = _stamp(floor + dt.timedelta(seconds=1))
    return {
        "GTE": (_stamp(ceil), None),
        "GT": (after_floor, None),
        "LT": (None, _stamp(ceil)),
        "LTE": (None, after_floor),
        "EQ": (_stamp(ceil), after_floor),
    }[operator]


def search_window(body: dict) -> tuple[str | None, str | None, str | None]:
    """(since, before, email) of the request's one filter group, all ANDed; 400 for what is not served."""
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list) or len(groups) > 1:
        raise invalid("filterGroups: this stand-in answers at most one filter group")
    filters = groups[0].get("filters", []) if groups and isinstance(groups[0], dict) else []
    since = before = email = None
    for f in filters:
        name, op = (f.get("propertyName"), f.get("operator")) if isinstance(f, dict) else (None, None)
        if op not in OPERATORS or name not in ("lastmodifieddate", "email") or "value" not in f:
            raise invalid(
                f"filter {f!r}: supported are {', '.join(OPERATORS)} with a value on lastmodifieddate, "
                "and EQ on email"
            )
        if name == "email":
            if op != "EQ":
                raise invalid("email: only the EQ operator is supported")
            value = str(f["value"]).strip().lower()
            email = value if email in (None, value) else "\0"  # two different emails match nothing
            continue
        low, high = _bounds(op, f["value"])
        since = max(filter(None, (since, low)), default=None)
        before = min(filter(None, (before, high)), default=None)
    return since, before, email


def check_sorts(sorts) -> None:
    """Ascending `lastmodifieddate` (HubSpot's `{propertyName, direction}` or its string form) only."""
    for s in sorts or []:
        name, direction = (
            (s.get("propertyName"), s.get("direction", "ASCENDING"))
            if isinstance(s, dict)
            else (s, "ASCENDING")
        )
        if name not in ("lastmodifieddate", "hs_lastmodifieddate") or direction != "ASCENDING":
            raise invalid(f"sorts: this stand-in sorts by lastmodifieddate ASCENDING only, not {s!r}")


def shown(record: dict, wanted: list[str] | None) -> dict:
    names = set(wanted or DEFAULT_PROPERTIES) | set(SYSTEM_PROPERTIES)
    return record | {"properties": {k: v for k, v in record["properties"].items() if k in names}}


def search(system: System, body: dict) -> dict:
    limit = body.get("limit", 10)
    if not isinstance(limit, int) or not 0 < limit <= SEARCH_LIMIT:
        raise invalid(f"limit: must be between 1 and {SEARCH_LIMIT}, got {limit!r}")
    check_sorts(body.get("sorts"))
    wanted = body.get("properties")
    if wanted is not None and not (isinstance(wanted, list) and all(isinstance(p, str) for p in wanted)):
        raise invalid("properties: must be a list of property names")
    since, before, email = search_window(body)
    if email is not None:
        found = system.store.find_many(RESOURCE, [email]).get(email)
        stamp = found and found["updatedAt"][:19] + "Z"
        hits = [found] if found and (since or stamp) <= stamp and stamp < (before or "~") else []
        return {"total": len(hits), "results": [shown(r, wanted) for r in hits]}
    cursor = decode_cursor(body["after"], "after") if body.get("after") else None
    if cursor and (cursor.get("s"), cursor.get("b")) != (since, before):
        raise invalid("after: this cursor belongs to a search with other filters")
    rows, nxt = keyset_page(system, RESOURCE, cursor, since, before, limit)
    answer = {
        "total": system.store.count(RESOURCE, since, before),
        "results": [shown(json.loads(r), wanted) for r in rows],
    }
    if nxt:
        answer["paging"] = {"next": {"after": encode_cursor(nxt)}}
    return answer


def build_app(home: Path) -> FastAPI:
    app, system = system_app("marketing", home, "Sandbox marketing (HubSpot CRM API v3)")
    system.faults.error = lambda kind, message: (
        (status := {"rate_limit": 429, "outage": 503}[kind]),
        hubspot_body(status, FAULT_MESSAGES[kind] or message)
        | ({"errorType": "RATE_LIMIT", "policyName": "SECONDLY"} if kind == "rate_limit" else {}),
    )

    # Every error, the shared helpers' and FastAPI's own, answers in HubSpot's shape.
    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        body = exc.body if exc.body.get("status") == "error" else hubspot_body(exc.status, str(exc))
        return JSONResponse(body, exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse(hubspot_body(400, f"Invalid input: {where}"), 400)

    authorize = bearer_guard("HUB_MARKETING_API_KEY", "Authentication credentials not found")

    @app.post("/crm/v3/objects/contacts/batch/upsert")
    async def upsert(request: Request) -> Response:
        authorize(request)
        started = hubspot_time(_stamp(dt.datetime.now(dt.UTC)))
        outcomes = batch_upsert(
            system,
            RESOURCE,
            batch_of(await json_body(request), "inputs", BATCH_LIMIT),
            match=match,
            new=new_contact,
            merge=merge,
            rejected="Property values were not valid (fault injection)",
        )
        errors = [
            hubspot_body(400, o.errors[0])
            | {"id": o.item.get("id"), "context": {"id": [str(o.item.get("id"))]}}
            for o in outcomes
            if o.errors
        ]
        answer = {
            "status": "COMPLETE",
            "results": [o.record | {"new": o.created} for o in outcomes if not o.errors],
            "startedAt": started,
            "completedAt": hubspot_time(_stamp(dt.datetime.now(dt.UTC))),
        }
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
        return JSONResponse(answer, 207 if errors else 200)

    @app.get("/crm/v3/objects/contacts")
    async def contacts(
        request: Request, limit: int = Query(100, ge=1, le=100), after: str | None = None
    ) -> Response:
        authorize(request)
        position = decode_cursor(after, "after") if after else None
        rows, nxt = keyset_page(system, RESOURCE, position, None, None, limit)
        return page_response(
            "results", rows, {"paging": {"next": {"after": encode_cursor(nxt)}} if nxt else {}}
        )

    @app.post("/crm/v3/objects/contacts/search")
    async def contacts_search(request: Request) -> dict:
        authorize(request)
        return search(system, await json_body(request))

    return app
