"""What every stand-in's HTTP API speaks: JSON errors, timestamps, cursors, credentials, bodies.

The helpers here know nothing of a system's store or faults; each system module builds
its endpoints from them and from `app.py`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import json
from collections.abc import Callable

from fastapi import Request

from hub_sandbox import secret

TS_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


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


async def json_body(request: Request) -> dict:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise ApiError(400, "invalid_request", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", "the request body must be a JSON object")
    return body
