"""Billing (Stripe-like): bearer key, offset or token pages, `updated_since`, idempotent invoice creation."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response

from hub_sandbox.api import ApiError, bearer_guard, decode_cursor, encode_cursor, json_body, now_ts, parse_ts
from hub_sandbox.app import System, keyset_page, page_response, system_app

INVOICE_FIELDS = {
    "order_ref": str,
    "customer_email": str,
    "currency": str,
    "amount_due": int,
    "invoice_date": str,
}


def validate_invoice(body: dict) -> dict:
    """The invoice request, or a 400 naming every wrong field."""
    problems = [f"{k}: required {t.__name__}" for k, t in INVOICE_FIELDS.items()
                if not isinstance(body.get(k), t) or isinstance(body.get(k), bool)]  # fmt: skip
    problems += [f"{k}: unknown field" for k in sorted(set(body) - set(INVOICE_FIELDS))]
    if not problems:
        if body["currency"] not in ("usd", "eur"):
            problems.append("currency: must be 'usd' or 'eur'")
        if body["amount_due"] < 0:
            problems.append("amount_due: must be >= 0 (integer cents)")
        try:
            dt.date.fromisoformat(body["invoice_date"])
        except ValueError:
            problems.append("invoice_date: must be YYYY-MM-DD")
    if problems:
        raise ApiError(400, "invalid_request", "; ".join(problems))
    return body


def build_app(home: Path) -> FastAPI:
    app, system = system_app("billing", home, "Sandbox billing")
    authorize = bearer_guard("HUB_BILLING_API_KEY", "Invalid API key provided")
    _add_listings(app, system, authorize)
    _add_invoice_creation(app, system, authorize)
    return app


def _add_listings(app: FastAPI, system: System, authorize: Callable[[Request], None]) -> None:
    """`GET /v1/invoices` and `GET /v1/payments`: offset or token pages, filtered on `updated_at`."""

    def listing(resource, request, updated_since, updated_before, offset, limit, page) -> Response:
        """A page by `offset`, or after the position a `page` token names (then offset is null).

        Both answer `next_page`: offset pages cost the server more the deeper they go, tokens don't.
        """
        authorize(request)
        since, before = parse_ts(updated_since, "updated_since"), parse_ts(updated_before, "updated_before")
        if page:
            position = decode_cursor(page, "page")
            since, before, offset = position.get("s"), position.get("b"), None
            data, nxt = keyset_page(system, resource, position, since, before, limit)
        else:
            rows = system.store.page_offset(resource, offset, limit + 1, since, before)
            data = system.faults.shape_bodies(resource, [r[2] for r in rows[:limit]])
            last = rows[limit - 1] if len(rows) > limit else None
            nxt = {"s": since, "b": before, "a": [last[0], last[1]]} if last else None
        extra = {
            "total": system.store.count(resource, since, before),
            "offset": offset,
            "limit": limit,
            "has_more": nxt is not None,
            "next_page": encode_cursor(nxt) if nxt else None,
        }
        return page_response("data", data, extra)

    def add_listing(resource: str) -> None:
        @app.get(f"/v1/{resource}", name=f"list_{resource}")
        async def list_records(
            request: Request,
            updated_since: str | None = None,
            updated_before: str | None = None,
            offset: int = Query(0, ge=0),
            limit: int = Query(100, ge=1, le=1000),
            page: str | None = None,
        ) -> Response:
            return listing(resource, request, updated_since, updated_before, offset, limit, page)

    add_listing("invoices")
    add_listing("payments")


def _add_invoice_creation(app: FastAPI, system: System, authorize: Callable[[Request], None]) -> None:
    """`POST /v1/invoices`: a new open invoice, created once per Idempotency-Key."""

    @app.post("/v1/invoices")
    async def create_invoice(request: Request) -> JSONResponse:
        authorize(request)
        key = request.headers.get("idempotency-key")
        if not key:
            raise ApiError(
                400, "invalid_request", "the Idempotency-Key header is required on POST /v1/invoices"
            )
        body = validate_invoice(await json_body(request))
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        seen = system.store.idempotent(key)
        if seen:
            if seen[0] != digest:
                raise ApiError(
                    409, "idempotency_error", "this Idempotency-Key was used with another request body"
                )
            return JSONResponse(system.store.get("invoices", seen[1]), 200, {"Idempotent-Replayed": "true"})
        if system.faults.rejects(body["order_ref"]):
            raise ApiError(
                422, "invoice_rejected", f"invoice for {body['order_ref']} rejected (fault injection)"
            )
        with system.store.transaction() as con:
            n = con.execute("SELECT count(*) FROM idempotency").fetchone()[0] + 1
            stamp = now_ts()
            invoice = {"id": f"in_n{n:010d}", "number": f"INV-N{n:010d}", **body, "amount_paid": 0,
                       "status": "open", "updated_at": stamp}  # fmt: skip
            con.execute(
                "INSERT INTO records VALUES ('invoices', ?, NULL, ?, ?)",
                [invoice["id"], stamp, json.dumps(invoice)],
            )
            system.store.remember(key, digest, invoice["id"])
            system.store.note_created("invoices", invoice["id"], body["order_ref"], stamp)
        system.stats.records_written += 1
        return JSONResponse(invoice, 201)
