"""What every sandbox REST system shares: errors, auth, timestamps, paging, faults, stats, admin.

`system_app` builds a FastAPI app over a system's record store with the fault
middleware and the `/_admin` router; each system module adds only its own endpoints.
List pages splice the stored JSON bodies into the answer (`page_response`) instead of
parsing and re-encoding every record: FastAPI's encoder cost more than the SQL per page.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hub_sandbox import secret
from hub_sandbox.store import Store

TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
KEY_FIELDS = {"crm": "Id", "shop": "id", "billing": "id", "support": "id", "marketing": "id"}
# A wrong-typed value per (system, resource) for the `malformed` fault; other resources lose their key.
MALFORMED_VALUES = {
    ("shop", "orders"): ("total_price", "n/a"),
    ("billing", "invoices"): ("amount_due", "12,00"),
    ("billing", "payments"): ("amount", "12,00"),
    ("crm", "accounts"): ("Lifetime_Value__c", "n/a"),
}
DEFAULT_RENAMES = {
    "shop": "total_price:total_price_set",
    "crm": "Email__c:Email_Address__c",
    "billing": "amount_due:amount_total",
    "support": "external_id:externalId",
    "marketing": "email:Email",
}
PROFILES = {
    "outage": {"seconds": None},
    "rate_limit": {"every": 3, "retry_after": 1},
    "slow": {"delay": 0.5},
    "drop": {"every": 4},
    "malformed": {"share": 0.02},
    "schema_drift": {"rename": None},
    "reject_writes": {"share": 0.05},
    "token_expiry": {"ttl": 1.0},
}


class ApiError(Exception):
    """An error answered as JSON `{"error": ..., "message": ...}` with `status`."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict | None = None, message_key="message"
    ):
        super().__init__(message)
        self.status, self.headers = status, headers
        self.body = {"error": error, message_key: message}


def now_ts() -> str:
    return dt.datetime.now(dt.UTC).strftime(TS_FORMAT)


def parse_ts(value: str | None, name: str) -> str | None:
    """An ISO 8601 filter value as the stores' `YYYY-MM-DDTHH:MM:SSZ`, rounded up to the second.

    Stored timestamps are whole seconds, so rounding up keeps both `>= x` and `< x` exact.
    """
    if value is None or value == "":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace(" ", "+") if "T" in value else value)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name}: not an ISO 8601 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    if parsed.microsecond:
        parsed = parsed.replace(microsecond=0) + dt.timedelta(seconds=1)
    return parsed.strftime(TS_FORMAT)


def encode_cursor(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(token: str, name: str) -> dict:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if not isinstance(payload, dict):
            raise ValueError
        return payload
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name}: not a cursor this server issued") from None


def unit_hash(*parts) -> float:
    """A stable number in [0, 1) for a key: faults pick the same rows on every run."""
    digest = hashlib.md5(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def check_secret(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else None


def bearer_guard(credential: str, message: str) -> Callable[[Request], None]:
    """A check that the request's bearer token is the credential `credential` (else 401 `message`)."""

    def authorize(request: Request) -> None:
        if not check_secret(bearer(request), secret(credential)):
            raise ApiError(401, "unauthorized", message)

    return authorize


@dataclass
class Faults:
    """The fault profiles active on one system, switchable at runtime through `/_admin/faults`."""

    system: str
    active: dict[str, dict] = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)

    def set(self, profile: str, params: dict) -> dict:
        if profile not in PROFILES:
            raise ApiError(
                400, "invalid_request", f"unknown fault profile {profile!r}; known: {', '.join(PROFILES)}"
            )
        unknown = set(params) - set(PROFILES[profile])
        if unknown:
            raise ApiError(400, "invalid_request", f"{profile}: unknown parameters {sorted(unknown)}")
        merged = {**PROFILES[profile], **params}
        if profile == "schema_drift":
            merged["rename"] = merged["rename"] or DEFAULT_RENAMES[self.system]
            if str(merged["rename"]).count(":") != 1:
                raise ApiError(400, "invalid_request", "schema_drift: rename must be 'old:new'")
        try:
            for name, default in PROFILES[profile].items():
                if isinstance(default, int | float) and merged[name] is not None:
                    merged[name] = type(default)(merged[name])
            if merged.get("seconds") is not None:
                merged["seconds"] = float(merged["seconds"])
        except (TypeError, ValueError):
            raise ApiError(
                400, "invalid_request", f"{profile}: parameters must be numbers: {params}"
            ) from None
        merged["since"] = time.monotonic()
        self.active[profile] = merged
        self.counters[profile] = 0
        return merged

    def clear(self, profile: str | None = None) -> None:
        if profile:
            self.active.pop(profile, None)
        else:
            self.active.clear()

    def describe(self) -> dict:
        return {
            name: {k: v for k, v in params.items() if k != "since"} for name, params in self.active.items()
        }

    def _every(self, profile: str) -> bool:
        """Counts a request toward `profile`; True on every Nth."""
        self.counters[profile] += 1
        return self.counters[profile] % max(1, self.active[profile]["every"]) == 0

    def gate(self) -> JSONResponse | None:
        """The 503 of an outage or the 429 of a rate limit, if this request gets one."""
        outage = self.active.get("outage")
        if outage:
            left = (
                None
                if outage["seconds"] is None
                else outage["seconds"] - (time.monotonic() - outage["since"])
            )
            if left is None or left > 0:
                retry = max(1, math.ceil(left)) if left is not None else 5
                return JSONResponse(
                    {"error": "service_unavailable", "message": f"{self.system} is down for maintenance"},
                    503,
                    {"Retry-After": str(retry)},
                )
            self.active.pop("outage")
        if "rate_limit" in self.active and self._every("rate_limit"):
            retry = self.active["rate_limit"]["retry_after"]
            return JSONResponse(
                {"error": "rate_limited", "message": "too many requests"}, 429, {"Retry-After": f"{retry:g}"}
            )
        return None

    def delay(self) -> float:
        return self.active["slow"]["delay"] if "slow" in self.active else 0.0

    def drop_now(self) -> bool:
        return "drop" in self.active and self._every("drop")

    def shape_bodies(self, resource: str, bodies: Sequence[str]) -> list[str]:
        """Stored JSON bodies as a faulty system would serve them; untouched when no fault shapes rows."""
        if "malformed" not in self.active and "schema_drift" not in self.active:
            return list(bodies)
        return [json.dumps(row) for row in self.shape(resource, [json.loads(b) for b in bodies])]

    def shape(self, resource: str, rows: list[dict]) -> list[dict]:
        """Rows as a faulty system would serve them (malformed rows, renamed fields)."""
        malformed, drift = self.active.get("malformed"), self.active.get("schema_drift")
        if not (malformed or drift):
            return rows
        key = KEY_FIELDS[self.system]
        if malformed:
            wrong = MALFORMED_VALUES.get((self.system, resource))
            for row in rows:
                h = unit_hash("malformed", self.system, resource, row.get(key))
                if h < malformed["share"]:
                    if wrong and h < malformed["share"] / 2:
                        row[wrong[0]] = wrong[1]
                    else:
                        row.pop(key, None)
        if drift:
            old, new = drift["rename"].split(":")
            for row in rows:
                if old in row:
                    row[new] = row.pop(old)
        return rows

    def rejects(self, key) -> bool:
        rejecting = self.active.get("reject_writes")
        return bool(rejecting) and unit_hash("reject", self.system, key) < rejecting["share"]

    def token_ttl(self, default: float) -> float:
        return self.active["token_expiry"]["ttl"] if "token_expiry" in self.active else default


@dataclass
class Stats:
    requests: int = 0
    writes: int = 0
    records_written: int = 0
    by_path: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "requests": self.requests,
            "writes": self.writes,
            "records_written": self.records_written,
            "by_path": dict(self.by_path),
        }


@dataclass
class System:
    """One running system: its name, store, faults and request statistics."""

    name: str
    store: Store
    faults: Faults
    stats: Stats = field(default_factory=Stats)


class FaultMiddleware:
    """Counts API requests and applies outage, rate limit, latency and dropped connections.

    A pure ASGI middleware, so a `drop` can send half the body it announced and then
    abort: the client sees the connection close mid-body, as with a real network fault.
    """

    def __init__(self, app, system: System):
        self.app, self.system = app, system

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"].startswith("/_admin"):
            return await self.app(scope, receive, send)
        system = self.system
        system.stats.requests += 1
        system.stats.by_path[scope["path"]] += 1
        is_read = scope["method"] == "GET"
        if not is_read and not scope["path"].startswith("/oauth"):
            system.stats.writes += 1
        blocked = system.faults.gate()
        if blocked is not None:
            return await blocked(scope, receive, send)
        if delay := system.faults.delay():
            await asyncio.sleep(delay)
        if is_read and system.faults.drop_now():
            return await self.app(scope, receive, _cut_mid_body(send))
        return await self.app(scope, receive, send)


class DroppedConnection(Exception):
    """Raised after half a response body, so the server closes the connection."""


def _cut_mid_body(send):
    async def cutting_send(message):
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})
            raise DroppedConnection("fault injection: connection dropped mid-body")
        await send(message)

    return cutting_send


def admin_router(system: System) -> APIRouter:
    router = APIRouter(prefix="/_admin")

    @router.get("/health")
    async def health() -> dict:
        return {"system": system.name, "status": "ok", "records": system.store.counts(), "pid": os.getpid()}

    @router.get("/faults")
    async def faults() -> dict:
        return {"system": system.name, "faults": system.faults.describe()}

    @router.post("/faults")
    async def set_fault(request: Request) -> dict:
        body = await json_body(request)
        if not isinstance(body.get("profile"), str):
            raise ApiError(400, "invalid_request", 'body must be {"profile": NAME, ...params}')
        params = {k: v for k, v in body.items() if k != "profile"}
        system.faults.set(body["profile"], params)
        return {"system": system.name, "faults": system.faults.describe()}

    @router.delete("/faults")
    async def clear_faults(profile: str | None = None) -> dict:
        system.faults.clear(profile)
        return {"system": system.name, "faults": system.faults.describe()}

    @router.get("/stats")
    async def stats() -> dict:
        return system.stats.as_dict()

    @router.delete("/stats")
    async def reset_stats() -> dict:
        system.stats = Stats()
        return system.stats.as_dict()

    return router


async def json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ApiError(400, "invalid_request", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return body


def batch_of(body: dict, name: str, limit: int) -> list[dict]:
    """The list `body[name]` of a batch write, at most `limit` objects (413 beyond)."""
    items = body.get(name)
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ApiError(400, "invalid_request", f'body must be {{"{name}": [objects]}}')
    if len(items) > limit:
        raise ApiError(413, "too_many_records", f"{len(items)} {name} in one call; the limit is {limit}")
    return items


def keyset_page(
    system: System, resource: str, cursor: dict | None, since: str | None, before: str | None, limit: int
) -> tuple[list[str], dict | None]:
    """One page (JSON bodies) ordered by (updated, id) and the cursor of the next page (None on the last).

    The cursor carries the filters, so following it needs no other parameter.
    """
    if cursor is not None:
        since, before, after = cursor.get("s"), cursor.get("b"), cursor.get("a")
    else:
        after = None
    rows = system.store.page_after(resource, tuple(after) if after else None, limit + 1, since, before)
    more = len(rows) > limit
    rows = rows[:limit]
    nxt = {"s": since, "b": before, "a": [rows[-1][0], rows[-1][1]]} if more else None
    return system.faults.shape_bodies(resource, [r[2] for r in rows]), nxt


def page_response(key: str, bodies: Sequence[str], extra: dict | None = None, headers=None) -> Response:
    """`{key: [bodies...], **extra}` with the records' stored JSON spliced in as they are."""
    rest = json.dumps(extra, separators=(",", ":"))[1:] if extra else "}"
    text = f"{{{json.dumps(key)}:[{','.join(bodies)}]{',' if extra else ''}{rest}"
    return Response(text.encode(), media_type="application/json", headers=headers)


@dataclass
class Upserted:
    """What a batch upsert did with one input: the stored record, or why it failed."""

    item: dict
    key: Any
    record: dict | None = None
    created: bool = False
    errors: list[str] = field(default_factory=list)


def batch_upsert(
    system: System,
    resource: str,
    items: list[dict],
    *,
    match: Callable[[dict], tuple[Any, list[str]]],
    new: Callable[[int, str], dict],
    merge: Callable[[dict, dict, Any, str], dict],
    rejected: str,
    first_number: Callable[[], int] | None = None,
    id_field: str = "id",
) -> list[Upserted]:
    """Upsert `items` by match key in one write; every system's batch endpoint answers from the outcomes.

    `match(item)` gives the match key and the item's errors; `new(number, stamp)` a record
    not stored yet (numbered on from `first_number()` when the store remembers no number,
    by default after the stored records); `merge(current, item, key, stamp)` the
    record to store. A key the `reject_writes` fault picks fails with `rejected`; an item
    repeated in a batch updates what the batch wrote before it.
    """
    outcomes, pending, stamp = [], {}, now_ts()
    store = system.store
    number = store.next_number(resource, first_number or (lambda: store.count(resource) + 1))
    matched = [(item, *match(item)) for item in items]
    stored = store.find_many(resource, list({str(key) for _, key, errors in matched if not errors}))
    for item, key, errors in matched:
        if not errors and system.faults.rejects(key):
            errors = [rejected]
        if errors:
            outcomes.append(Upserted(item, key, errors=errors))
            continue
        current = pending.get(key) or stored.get(str(key))
        created = current is None
        if created:
            current, number = new(number, stamp), number + 1
        pending[key] = merge(current, item, key, stamp)
        outcomes.append(Upserted(item, key, pending[key], created))
    store.put(resource, [(r[id_field], k, stamp, r) for k, r in pending.items()])
    store.numbered(resource, number)
    system.stats.records_written += len(pending)
    return outcomes


def system_app(name: str, home: Path, title: str) -> tuple[FastAPI, System]:
    """A FastAPI app with the shared error handling, fault middleware and admin router."""
    system = System(name, Store(home / "sandbox" / f"{name}.sqlite"), Faults(name))
    app = FastAPI(title=title, openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, exc.status, exc.headers)

    app.include_router(admin_router(system))
    app.add_middleware(FaultMiddleware, system=system)
    app.state.system = system
    return app, system
