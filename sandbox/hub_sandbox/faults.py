"""Fault injection: the profiles a stand-in can be switched into at runtime, and how they act.

`Faults` holds the profiles active on one system (set through `/_admin/faults`); the
`FaultMiddleware` applies outages, rate limits, latency and dropped connections to every
API request, and list endpoints pass their rows through `Faults.shape_bodies` (malformed
rows, renamed fields). The rows and writes a fault picks depend only on `unit_hash` of their
keys, so every run picks the same ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi.responses import JSONResponse

from hub_sandbox.api import ApiError

if TYPE_CHECKING:
    from hub_sandbox.app import System

KEY_FIELDS = {"crm": "Id", "shop": "id", "billing": "Id", "support": "id", "marketing": "id"}
# A wrong-typed value per (system, resource) for the `malformed` fault; other resources lose their key.
MALFORMED_VALUES = {
    ("shop", "orders"): ("total_price", "n/a"),
    ("billing", "invoices"): ("TotalAmt", "12,00"),
    ("billing", "payments"): ("TotalAmt", "12,00"),
    ("crm", "accounts"): ("Lifetime_Value__c", "n/a"),
}
DEFAULT_RENAMES = {
    "shop": "total_price:total_price_set",
    "crm": "Email__c:Email_Address__c",
    "billing": "TotalAmt:TotalAmount",
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


def plain_error(kind: str, message: str) -> tuple[int, object]:
    """The status and body of a gate fault (`outage`, `rate_limit`) in the generic shape."""
    return {"outage": 503, "rate_limit": 429}[kind], {
        "error": {"outage": "service_unavailable", "rate_limit": "rate_limited"}[kind],
        "message": message,
    }


def unit_hash(*parts) -> float:
    """A stable number in [0, 1) for a key: faults pick the same rows on every run."""
    digest = hashlib.md5(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Faults:
    """The fault profiles active on one system, switchable at runtime through `/_admin/faults`."""

    system: str
    active: dict[str, dict] = field(default_factory=dict)
    counters: Counter = field(default_factory=Counter)
    # How this system answers an outage or a rate limit (its vendor's status and error body).
    error: Callable[[str, str], tuple[int, object]] = plain_error

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
                status, body = self.error("outage", f"{self.system} is down for maintenance")
                return JSONResponse(body, status, {"Retry-After": str(retry)})
            self.active.pop("outage")
        if "rate_limit" in self.active and self._every("rate_limit"):
            retry = self.active["rate_limit"]["retry_after"]
            status, body = self.error("rate_limit", "too many requests")
            return JSONResponse(body, status, {"Retry-After": f"{retry:g}"})
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
        if not is_read and "/oauth" not in scope["path"]:
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
