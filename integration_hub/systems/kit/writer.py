"""What every destination writer shares: records, outcomes, the errors the engine acts on, and a POST.

A writer (declared in its system's module) knows its system's endpoint, auth and response
shape, nothing else. It returns one
`Outcome` per record for what the destination answered; it raises `TransientError` for what
is worth retrying as is (429, 5xx, a dropped connection), `BatchRejected` when the whole
request was refused, and `DestinationUnusable` when no request can succeed (credentials, URL),
so the engine can retry, split, dead-letter or stop without knowing the API.
Its URL and credentials are handed to it (`systems.writer`) and never appear in an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import orjson

ERROR_CHARS = 500  # destination error bodies are kept, but not whole HTML pages


# Plain (not frozen) slotted dataclasses: a push builds two per record, and a frozen
# dataclass's __init__ is several times slower.
@dataclass(slots=True)
class Record:
    """One record to send: its match key, the allow-listed payload, its idempotency key
    (empty for writers whose API has none: `Writer.idempotency_keys`), and the destination's
    id for it stored at its last confirmed write (None if never confirmed)."""

    key: str
    payload: dict
    idempotency_key: str
    remote_id: str | None = None


@dataclass(slots=True)
class Outcome:
    key: str
    ok: bool
    error: str | None = None
    remote_id: str | None = None


class TransientError(Exception):
    """The request may succeed if sent again later (429, 5xx, connection trouble)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BatchRejected(Exception):
    """The destination refused the whole request (4xx): resending it unchanged will not help."""


class DestinationUnusable(Exception):
    """No request can succeed (401/403 after a fresh token, 404/405): a configuration problem."""


UNUSABLE = {401, 403, 404, 405}
# A 403 that is a request limit, not a refusal (Salesforce's REQUEST_LIMIT_EXCEEDED): transient.
LIMIT_CODES = (b"REQUEST_LIMIT_EXCEEDED",)


def retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def json_body(response: httpx.Response):
    return orjson.loads(response.content)


def error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:ERROR_CHARS]}"
    if isinstance(body, list) and body and isinstance(body[0], dict):  # Salesforce: [{message, errorCode}]
        listed = "; ".join(f"{e.get('errorCode', '?')}: {e.get('message', '')}" for e in body)
        return f"HTTP {response.status_code}: {listed[:ERROR_CHARS]}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}: {str(body)[:ERROR_CHARS]}"
    detail = (
        body.get("error_description")
        or body.get("message")
        or _described(body)
        or body.get("error")
        or body.get("detail")
        or body
    )
    return f"HTTP {response.status_code}: {str(detail)[:ERROR_CHARS]}"


def _described(body: dict) -> str | None:
    """Zendesk's `{"error": "RecordInvalid", "description": ..., "details": {...}}` as one line."""
    if not body.get("description"):
        return None
    return f"{body.get('error')}: {body['description']} {body.get('details') or ''}".strip()


class Writer:
    """Base writer: `write(http, records)` → one `Outcome` per record, in any order."""

    system: str
    object: str
    max_batch: int
    key_field: str  # the payload field the destination matches records on
    can_delete = False
    idempotency_keys = False  # whether writes send `Record.idempotency_key` (else it is left empty)

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        raise NotImplementedError

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        raise NotImplementedError

    def delete(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        """Remove records by key (mirror mode); only writers with `can_delete` implement it."""
        raise NotImplementedError(f"{self.system}.{self.object} cannot delete records")

    def post(
        self, http: httpx.Client, path: str, body: dict, headers: dict | None = None, method: str = "POST"
    ) -> httpx.Response:
        """POST (or `method`) with auth (refreshed once on a 401); failures become this module's exceptions."""
        return self.send(http, method, path, body, headers)

    def send(
        self,
        http: httpx.Client,
        method: str,
        path: str,
        body: dict | None = None,
        headers: dict | None = None,
        params: dict | None = None,
    ) -> httpx.Response:
        """Any request with auth (refreshed once on a 401); failures become this module's exceptions."""
        response = self._send(http, method, path, body, headers, params, refresh=False)
        if response.status_code == 401:  # an expired token: one fresh try
            response = self._send(http, method, path, body, headers, params, refresh=True)
        limited = response.status_code == 403 and any(c in response.content for c in LIMIT_CODES)
        if response.status_code == 429 or response.status_code >= 500 or limited:
            raise TransientError(f"{self.system} {path}: {error_text(response)}", retry_after(response))
        if response.status_code in UNUSABLE:
            raise DestinationUnusable(
                f"{self.system} {path}: {error_text(response)}; check HUB_{self.system.upper()}_URL "
                "and the system's credentials"
            )
        if response.status_code >= 400:
            raise BatchRejected(f"{self.system} {path}: {error_text(response)}")
        return response

    def _send(
        self,
        http: httpx.Client,
        method: str,
        path: str,
        body: dict | None,
        headers: dict | None,
        params: dict | None,
        refresh: bool,
    ) -> httpx.Response:
        try:
            return http.request(
                method,
                self.base_url + path,
                # orjson: far less time under the GIL than httpx's json.dumps
                content=None if body is None else orjson.dumps(body),
                params=params,
                headers={
                    **({"Content-Type": "application/json"} if body is not None else {}),
                    **self.auth_headers(http, refresh),
                    **(headers or {}),
                },
            )
        except httpx.TransportError as exc:
            raise TransientError(f"{self.system}: {type(exc).__name__} on {method} {path}") from None


class BearerTokenWriter(Writer):
    """A writer whose API takes one bearer token (the system's `api_key` or `api_token`)."""

    def __init__(self, base_url: str, api_key: str | None = None, api_token: str | None = None):
        super().__init__(base_url)
        self._token = api_key or api_token

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}
