"""One small writer per destination API: each sends a batch and says what happened to every record.

A writer knows its system's endpoint, auth and response shape, nothing else. It returns one
`Outcome` per record for what the destination answered; it raises `TransientError` for what
is worth retrying as is (429, 5xx, a dropped connection), `BatchRejected` when the whole
request was refused, and `DestinationUnusable` when no request can succeed (credentials, URL),
so the engine can retry, split, dead-letter or stop without knowing the API.
Credentials come from the environment (`settings.secret`) and never appear in an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx
import orjson

from integration_hub import settings

ERROR_CHARS = 500  # destination error bodies are kept, but not whole HTML pages


# Plain (not frozen) slotted dataclasses: a push builds two per record, and a frozen
# dataclass's __init__ costs ~3x as much.
@dataclass(slots=True)
class Record:
    """One record to send: its match key, the allow-listed payload, and its idempotency key
    (empty for writers whose API has none: `Destination.idempotency_keys`)."""

    key: str
    payload: dict
    idempotency_key: str


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


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


def _json(response: httpx.Response):
    return orjson.loads(response.content)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:ERROR_CHARS]}"
    detail = (
        body.get("error_description")
        or body.get("message")
        or body.get("error")
        or body.get("detail")
        or body
    )
    return f"HTTP {response.status_code}: {str(detail)[:ERROR_CHARS]}"


class Destination:
    """Base writer: `write(http, records)` → one `Outcome` per record, in any order."""

    system: str
    object: str
    max_batch: int
    key_field: str  # the payload field the destination matches records on
    can_delete = False
    idempotency_keys = False  # whether writes send `Record.idempotency_key` (else it is left empty)

    def __init__(self, base_url: str | None = None):
        self.base_url = (base_url or settings.system_url(self.system)).rstrip("/")

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        raise NotImplementedError

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        raise NotImplementedError

    def delete(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        """Remove records by key (mirror mode); only writers with `can_delete` implement it."""
        raise NotImplementedError(f"{self.system}.{self.object} cannot delete records")

    def post(self, http: httpx.Client, path: str, body: dict, headers: dict | None = None) -> httpx.Response:
        """POST with auth (refreshed once on a 401); failures become this module's exceptions."""
        response = self._post(http, path, body, headers, refresh=False)
        if response.status_code == 401:  # an expired token: one fresh try
            response = self._post(http, path, body, headers, refresh=True)
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"{self.system} {path}: {_error_text(response)}", _retry_after(response))
        if response.status_code in UNUSABLE:
            raise DestinationUnusable(
                f"{self.system} {path}: {_error_text(response)}; check HUB_{self.system.upper()}_URL "
                "and the system's credentials"
            )
        if response.status_code >= 400:
            raise BatchRejected(f"{self.system} {path}: {_error_text(response)}")
        return response

    def _post(
        self, http: httpx.Client, path: str, body: dict, headers: dict | None, refresh: bool
    ) -> httpx.Response:
        try:
            return http.post(
                self.base_url + path,
                content=orjson.dumps(body),  # ~5x cheaper than httpx's json.dumps, on the GIL
                headers={
                    "Content-Type": "application/json",
                    **self.auth_headers(http, refresh),
                    **(headers or {}),
                },
            )
        except httpx.TransportError as exc:
            raise TransientError(f"{self.system}: {type(exc).__name__} on POST {path}") from None


class _BearerToken(Destination):
    secret_env: str

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        return {"Authorization": f"Bearer {settings.secret(self.secret_env)}"}


class CrmAccounts(Destination):
    """Salesforce-like `accounts/upsert` (≤ 200, match `AccountNumber`), OAuth2 client credentials."""

    system, object, max_batch, key_field = "crm", "accounts", 200, "AccountNumber"

    def __init__(self, base_url: str | None = None):
        super().__init__(base_url)
        self._token: str | None = None
        self._lock = threading.Lock()

    @property
    def client_id(self) -> str:
        """Who the CRM stamps into `LastModifiedById` on our writes (how echoes are recognised)."""
        return settings.secret("HUB_CRM_CLIENT_ID")

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if refresh or self._token is None:
                self._token = self._fetch_token(http)
            return {"Authorization": f"Bearer {self._token}"}

    def _fetch_token(self, http: httpx.Client) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": settings.secret("HUB_CRM_CLIENT_SECRET"),
        }
        try:
            response = http.post(self.base_url + "/oauth/token", data=form)
        except httpx.TransportError as exc:
            raise TransientError(f"crm: {type(exc).__name__} on POST /oauth/token") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"crm /oauth/token: {_error_text(response)}", _retry_after(response))
        if response.status_code >= 400:
            raise DestinationUnusable(
                f"crm /oauth/token: {_error_text(response)}; check HUB_CRM_CLIENT_ID / HUB_CRM_CLIENT_SECRET"
            )
        return response.json()["access_token"]

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        response = self.post(
            http, "/services/data/v1/accounts/upsert", {"records": [r.payload for r in records]}
        )
        by_number = {r.payload[self.key_field]: r.key for r in records}
        return [
            Outcome(
                by_number[res["AccountNumber"]],
                bool(res.get("success")),
                "; ".join(map(str, res.get("errors") or [])) or None,
                res.get("id"),
            )
            for res in _json(response)["results"]
        ]


class MarketingContacts(_BearerToken):
    """HubSpot-like `contacts/batch/upsert` by email (≤ 100); rejected inputs come back in `errors`."""

    system, object, max_batch, key_field = "marketing", "contacts", 100, "email"
    secret_env = "HUB_MARKETING_API_KEY"

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        inputs = [
            {"id": r.payload[self.key_field], "idProperty": "email", "properties": r.payload} for r in records
        ]
        body = _json(self.post(http, "/crm/v3/objects/contacts/batch/upsert", {"inputs": inputs}))
        by_email = {r.payload[self.key_field]: r.key for r in records}
        outcomes = [
            Outcome(by_email[e["id"]], False, e.get("message") or "rejected") for e in body.get("errors", [])
        ]
        for res in body.get("results", []):
            email = res.get("properties", {}).get("email") or res["id"]
            outcomes.append(Outcome(by_email.get(email, email), True, None, str(res["id"])))
        return outcomes


class SupportOrders(_BearerToken):
    """Zendesk-like `orders/create_or_update_many` (≤ 100, match `external_id`)."""

    system, object, max_batch, key_field = "support", "orders", 100, "external_id"
    secret_env = "HUB_SUPPORT_API_TOKEN"

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        body = _json(
            self.post(http, "/api/v2/orders/create_or_update_many", {"orders": [r.payload for r in records]})
        )
        by_id = {str(r.payload[self.key_field]): r.key for r in records}
        return [
            Outcome(
                by_id[str(res["external_id"])],
                res.get("status") in ("Created", "Updated"),
                res.get("error") if res.get("status") not in ("Created", "Updated") else None,
                str(res["id"]) if res.get("id") is not None else None,
            )
            for res in body["results"]
        ]


class BillingInvoices(_BearerToken):
    """Stripe-like `POST /v1/invoices`, one invoice per request, made safe to resend by `Idempotency-Key`."""

    system, object, max_batch, key_field = "billing", "invoices", 1, "order_ref"
    secret_env = "HUB_BILLING_API_KEY"
    idempotency_keys = True

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        outcomes = []
        for r in records:
            try:
                response = self.post(http, "/v1/invoices", r.payload, {"Idempotency-Key": r.idempotency_key})
            except BatchRejected as exc:
                outcomes.append(Outcome(r.key, False, str(exc)))
                continue
            outcomes.append(Outcome(r.key, True, None, response.json().get("id")))
        return outcomes


DESTINATIONS: dict[tuple[str, str], type[Destination]] = {
    (cls.system, cls.object): cls for cls in (CrmAccounts, MarketingContacts, SupportOrders, BillingInvoices)
}


def destination(system: str, obj: str, base_url: str | None = None) -> Destination:
    """The writer for `system`/`obj`, pointed at `base_url` or the system's configured URL."""
    try:
        cls = DESTINATIONS[(system, obj)]
    except KeyError:
        known = ", ".join(f"{s}.{o}" for s, o in DESTINATIONS)
        raise ValueError(f"no writer for destination {system}.{obj}; known: {known}") from None
    return cls(base_url)
