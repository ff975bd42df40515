"""The support desk (Zendesk Support API v2): every order becomes a ticket agents see; it is not read.

An order is a ticket with the order id as `external_id`; its data sits in custom ticket fields
the desk's admin creates (found by title, `FIELDS`), its state in the ticket's status and tags:
a live order is an `open` ticket tagged `integration_hub`; an order deleted at its source (the
sync's archive) is `solved` and tagged `order_deleted` too, so agents see what happened to it
(not `closed`: Zendesk refuses every update to a closed ticket). The customer is carried in
fields, not as the ticket's requester: a requester would be created as a Zendesk user and
notified of every order.

Writes go through `tickets/create_many` and `tickets/update_many` (≤ 100 each); both answer a
queued job that is polled at `job_statuses/{id}` for per-item results. Zendesk does not match
tickets by `external_id` on write, so the writer decides: a record with the ticket id the sync
stored when the desk confirmed it is updated by id; one without is looked up by `external_id`
(`GET /api/v2/tickets?external_id=`) unless the desk held no ticket when the push began, and
created when the desk has none. Auth is `{email}/token:{api_token}` basic auth.
"""

from __future__ import annotations

import base64
import threading
import time

import httpx

from integration_hub.systems import Credential, System
from integration_hub.systems.kit.writer import (
    DestinationUnusable,
    Outcome,
    Record,
    TransientError,
    Writer,
    json_body,
)

NAME = "support"
TAG, DELETED_TAG = "integration_hub", "order_deleted"
DELETED = "deleted"  # the order status the sync archives with (`assets/syncs.py`, support_orders)
# Payload field -> the title of the desk's custom ticket field that carries it.
FIELDS = {
    "status": "Order status",
    "total": "Order total",
    "currency": "Currency",
    "order_date": "Order date",
    "channel": "Channel",
    "customer_email": "Customer email",
    "customer_name": "Customer name",
}
POLL_BACKOFF_CAP, POLL_DEADLINE = 1.0, 300.0  # seconds
BACKOFF_CAP = 30.0  # seconds: the longest Retry-After a read waits before asking again


class SupportOrders(Writer):
    """Orders as tickets: `tickets/create_many` and `tickets/update_many` (≤ 100), job-status polled."""

    system, object, max_batch, key_field = NAME, "orders", 100, "external_id"

    def __init__(self, base_url: str, email: str | None = None, api_token: str | None = None):
        super().__init__(base_url)
        self._auth = "Basic " + base64.b64encode(f"{email}/token:{api_token}".encode()).decode()
        self._lock = threading.Lock()
        self._field_ids: dict[str, int] | None = None
        # Whether a record without a stored ticket id may already be on the desk (then it is
        # looked up): unknown until the first such record, and true once a create went unconfirmed.
        self._look_up: bool | None = None

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        return {"Authorization": self._auth}

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        fields = self._fields(http)
        ids = self._ticket_ids(http, records)
        creates = [r for r in records if ids[r.key] is None]
        updates = [r for r in records if ids[r.key] is not None]
        outcomes: list[Outcome] = []
        try:
            if creates:
                tickets = [self._ticket(r.payload, None, fields) for r in creates]
                job = self._submit(http, "POST", "/api/v2/tickets/create_many", tickets)
                outcomes += self._outcomes(creates, self._completed(http, job))
            if updates:
                tickets = [self._ticket(r.payload, ids[r.key], fields) for r in updates]
                job = self._submit(http, "PUT", "/api/v2/tickets/update_many", tickets)
                outcomes += self._outcomes(updates, self._completed(http, job))
        except Exception:
            # Whatever the engine does next (retry, split, replay), the desk may hold tickets
            # this batch created without their confirmation: look records up from now on.
            if creates:
                self._look_up = True
            raise
        return outcomes

    def _ticket(self, payload: dict, ticket_id: int | None, fields: dict[str, int]) -> dict:
        """The ticket body for an order payload (a retirement carries only the key and status)."""
        external_id = str(payload[self.key_field])
        if ticket_id is None:
            ticket: dict = {
                "external_id": external_id,
                "subject": f"Order {external_id}",
                "comment": {"body": f"Order {external_id}, kept up to date by the integration hub.",
                            "public": False},
            }  # fmt: skip
        else:
            ticket = {"id": ticket_id}
        if "status" in payload:
            deleted = payload["status"] == DELETED
            ticket["status"] = "solved" if deleted else "open"
            ticket["tags"] = [TAG, DELETED_TAG] if deleted else [TAG]
        ticket["custom_fields"] = [
            {"id": fields[title], "value": payload[name]} for name, title in FIELDS.items() if name in payload
        ]
        return ticket

    def _fields(self, http: httpx.Client) -> dict[str, int]:
        """Custom field title -> id, read once from the desk's ticket fields."""
        with self._lock:
            if self._field_ids is None:
                body = self._read(http, "/api/v2/ticket_fields")
                by_title = {f["title"]: f["id"] for f in body["ticket_fields"]}
                missing = [t for t in FIELDS.values() if t not in by_title]
                if missing:
                    raise DestinationUnusable(
                        f"support: the desk has no custom ticket field titled {', '.join(map(repr, missing))}; "
                        "create them in Zendesk Admin Center (Objects and rules > Tickets > Fields) "
                        "as docs/configuration.md describes"
                    )
                self._field_ids = {t: by_title[t] for t in FIELDS.values()}
            return self._field_ids

    def _ticket_ids(self, http: httpx.Client, records: list[Record]) -> dict[str, int | None]:
        """Each record's ticket id: the one stored at its last confirmed write, else the desk's
        first ticket with its `external_id` (looked up only if the desk may hold it), else None."""
        ids = {r.key: int(r.remote_id) if r.remote_id else None for r in records}
        unknown = [r for r in records if ids[r.key] is None]
        if unknown and self._desk_may_hold(http):
            for r in unknown:
                params = {"external_id": str(r.payload[self.key_field])}
                found = self._read(http, "/api/v2/tickets", params)["tickets"]
                ids[r.key] = min((t["id"] for t in found), default=None)
        return ids

    def _desk_may_hold(self, http: httpx.Client) -> bool:
        with self._lock:
            if self._look_up is None:  # an empty desk cannot hold any: a first push looks up nothing
                count = self._read(http, "/api/v2/tickets/count")["count"]["value"]
                self._look_up = count > 0
            return self._look_up

    def _submit(self, http: httpx.Client, method: str, path: str, tickets: list[dict]) -> dict:
        return json_body(self.send(http, method, path, {"tickets": tickets}))["job_status"]

    def _read(self, http: httpx.Client, path: str, params: dict | None = None) -> dict:
        """A GET whose 429s and 5xx are waited out here (until `POLL_DEADLINE`): retrying the
        whole batch for one of a hundred lookups, or for a job poll, would start it over."""
        deadline = time.monotonic() + POLL_DEADLINE
        while True:
            try:
                return json_body(self.send(http, "GET", path, params=params))
            except TransientError as exc:
                if time.monotonic() > deadline:
                    raise
                time.sleep(min(BACKOFF_CAP, exc.retry_after or 0.5))

    def _completed(self, http: httpx.Client, job: dict) -> list[dict]:
        """The job's per-item results, polled until it completes."""
        deadline, wait = time.monotonic() + POLL_DEADLINE, 0.0
        while job["status"] not in ("completed", "failed"):
            if time.monotonic() > deadline:
                raise TransientError(
                    f"support: job {job['id']} still {job['status']} after {POLL_DEADLINE:g} s"
                )
            time.sleep(wait)
            wait = min(POLL_BACKOFF_CAP, max(0.05, wait * 2))
            job = self._read(http, f"/api/v2/job_statuses/{job['id']}")["job_status"]
        if job["status"] == "failed":
            raise TransientError(f"support: job {job['id']} failed: {job.get('message')}")
        return job.get("results") or []

    def _outcomes(self, records: list[Record], results: list[dict]) -> list[Outcome]:
        """One outcome per result, by its `index` in the request (a record without one is unconfirmed)."""
        outcomes = []
        for res in results:
            index = res.get("index")
            if not isinstance(index, int) or not 0 <= index < len(records):
                continue
            ok = res.get("success", res.get("status") in ("Created", "Updated"))
            error = None if ok else f"{res.get('error', 'Failed')}: {res.get('details', '')}".rstrip(": ")
            ticket_id = res.get("id")
            outcomes.append(
                Outcome(records[index].key, ok, error, str(ticket_id) if ok and ticket_id else None)
            )
        return outcomes


SYSTEM = System(
    name=NAME,
    description="The support desk (Zendesk Support): agents see every order as a ticket with its status and total.",
    sandbox_port=4,
    credentials={
        "api_token": Credential("HUB_SUPPORT_API_TOKEN", sandbox="zd_sandbox_token"),
        "email": Credential("HUB_SUPPORT_EMAIL", sandbox="hub@sandbox.example"),
    },
    writers={"orders": SupportOrders},
)
