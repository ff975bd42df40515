"""Billing as the subset of QuickBooks Online Accounting API v3 (minorversion 75) that the hub uses.

- OAuth 2.0: Intuit's discovery document (`/.well-known/openid_configuration`, which `intuitlib`
  reads when given its URL as the environment) and the token endpoint
  (`/oauth2/v1/tokens/bearer`, `grant_type=refresh_token`, client id and secret in HTTP Basic);
  the access token is a bearer on every API call.
- `GET|POST /v3/company/{realmId}/query`: `SELECT * | COUNT(*) FROM Invoice|Payment [WHERE …]
  [ORDERBY …] [STARTPOSITION n] [MAXRESULTS m]` (m ≤ 1000), filtered on `MetaData.LastUpdatedTime`
  (`>`, `>=`, `<`, `<=`) and `Id` (`=`, `IN`), always ordered by (LastUpdatedTime, Id). A page
  that continues where the previous one of the same query ended is read from that position, so
  a deep `STARTPOSITION` costs no more than the first page.
- `GET /v3/company/{realmId}/cdc?entities=Invoice,Payment&changedSince=…`: records changed and
  deleted (`"status": "Deleted"`) since then, at most 1,000 objects, oldest first.
- `GET /v3/company/{realmId}/invoice/{id}`; `POST /v3/company/{realmId}/invoice` creates (no
  `Id`), updates (`Id` + current `SyncToken`, `sparse` or full) or, with `operation=delete`,
  deletes; a repeated `requestid` answers the first response again and writes nothing.
- Errors in Intuit's fault body (`{"Fault": {"Error": [{"Message", "Detail", "code"}], "type"}}`):
  401 `AuthenticationFailed`, 400 `ValidationFault`, 429 `ThrottleExceeded` with `Retry-After`.

Ids are the world's (`in_…`, `py_…`; QuickBooks' own are numeric strings). Not served: other
entities, `Payment` writes and `batch` (the hub writes one invoice per missing order).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from hub_sandbox import billing_query, secret
from hub_sandbox.api import ApiError, bearer, check_secret, now_ts
from hub_sandbox.app import System, system_app

MINOR_VERSION = 75
ENTITIES = {"Invoice": "invoices", "Payment": "payments"}  # QuickBooks entity -> store resource
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
DISCOVERY_PATH = "/.well-known/openid_configuration"
CURRENCY_NAMES = {"USD": "United States Dollar", "EUR": "Euro"}
ORDER_REF = "Order Ref"  # the invoice custom field that carries the ERP order number


def token_ttl_default() -> float:
    return 3600.0  # Intuit's access tokens live an hour


def qbo_time(stamp: str) -> str:
    """A store timestamp (`…Z`) as QuickBooks writes its times (`…+00:00`, the company's offset)."""
    return stamp.replace("Z", "+00:00")


def fault(
    status: int, kind: str, code: str, message: str, detail: str, headers: dict | None = None
) -> ApiError:
    """An `ApiError` answered in Intuit's fault body."""
    error = ApiError(status, kind, message, headers)
    error.body = {
        "Fault": {"Error": [{"Message": message, "Detail": detail, "code": code}], "type": kind},
        "time": now(),
    }
    return error


def validation(detail: str, code: str = "2020") -> ApiError:
    return fault(400, "ValidationFault", code, "Request has invalid or unsupported property", detail)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+00:00"


def build_app(home: Path) -> FastAPI:
    app, system = system_app("billing", home, "Sandbox billing (QuickBooks Online)")
    # The fault middleware's 503 and 429 answer in Intuit's fault body too.
    system.faults.error = lambda kind, message: (
        (429, fault(429, "ThrottleExceeded", "3001", message, message).body)
        if kind == "rate_limit"
        else (503, fault(503, "ServiceUnavailable", "10000", message, message).body)
    )
    tokens: dict[str, float] = {}  # access token -> issued at (monotonic)
    _add_oauth(app, system, tokens)
    authorize = _token_check(system, tokens)
    billing_query.add_query(app, system, authorize)
    billing_query.add_cdc(app, system, authorize)
    _add_invoice_writes(app, system, authorize)
    return app


def _token_check(system: System, tokens: dict[str, float]) -> Callable[[Request, str], None]:
    """A check that the request carries a live access token and names this company."""

    def authorize(request: Request, realm: str) -> None:
        token = bearer(request)
        issued = tokens.get(token or "")
        if issued is None or time.monotonic() - issued >= system.faults.token_ttl(token_ttl_default()):
            raise fault(
                401, "AUTHENTICATION", "3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                "Token expired or unknown: get a new access token with the refresh token",
            )  # fmt: skip
        if realm != secret("HUB_BILLING_REALM_ID"):
            raise fault(403, "AuthorizationFault", "3100", "message=ApplicationAuthorizationFailed; "
                        "errorCode=003100; statusCode=403", f"no company {realm!r} is connected to this app")  # fmt: skip

    return authorize


def _add_oauth(app: FastAPI, system: System, tokens: dict[str, float]) -> None:
    """Intuit's discovery document and token endpoint (refresh-token grant)."""

    @app.get(DISCOVERY_PATH)
    async def discovery(request: Request) -> dict:
        base = str(request.base_url).rstrip("/")
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/connect/oauth2",
            "token_endpoint": f"{base}{TOKEN_PATH}",
            "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
            "revocation_endpoint": f"{base}/oauth2/v1/tokens/revoke",
            "jwks_uri": f"{base}/oauth2/v1/keys",
        }

    @app.post(TOKEN_PATH)
    async def token(request: Request) -> JSONResponse:
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode(errors="replace")).items()}
        client_id, client_secret = _basic(request)
        if not (check_secret(client_id, secret("HUB_BILLING_CLIENT_ID"))
                and check_secret(client_secret, secret("HUB_BILLING_CLIENT_SECRET"))):  # fmt: skip
            return JSONResponse({"error": "invalid_client"}, 401)
        if form.get("grant_type") != "refresh_token":
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        refresh = secret("HUB_BILLING_REFRESH_TOKEN")
        if not check_secret(form.get("refresh_token"), refresh):
            return JSONResponse({"error": "invalid_grant"}, 400)
        access = secrets.token_urlsafe(32)
        tokens[access] = time.monotonic()
        return JSONResponse({
            "access_token": access, "token_type": "bearer",
            "expires_in": int(system.faults.token_ttl(token_ttl_default())),
            "refresh_token": refresh, "x_refresh_token_expires_in": 8726400,
        })  # fmt: skip


def _basic(request: Request) -> tuple[str | None, str | None]:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except ValueError:
        return None, None
    return user, password


def validate_invoice(body: dict, creating: bool) -> list[str]:
    """What is wrong with an invoice body (empty when fine)."""
    problems = []
    customer = body.get("CustomerRef")
    if creating and not (isinstance(customer, dict) and customer.get("value")):
        problems.append("CustomerRef.value: required")
    lines = body.get("Line")
    if creating and not (isinstance(lines, list) and lines):
        problems.append("Line: at least one line is required")
    for i, line in enumerate(lines if isinstance(lines, list) else []):
        amount = line.get("Amount") if isinstance(line, dict) else None
        if not isinstance(amount, int | float) or isinstance(amount, bool) or amount < 0:
            problems.append(f"Line[{i}].Amount: a number >= 0 is required")
        if isinstance(line, dict) and line.get("DetailType") not in (
            "SalesItemLineDetail",
            "SubTotalLineDetail",
        ):
            problems.append(f"Line[{i}].DetailType: SalesItemLineDetail expected")
    currency = (
        (body.get("CurrencyRef") or {}).get("value") if isinstance(body.get("CurrencyRef"), dict) else None
    )
    if currency is not None and currency not in CURRENCY_NAMES:
        problems.append(
            f"CurrencyRef.value: {currency!r} is not a currency of this company ({', '.join(CURRENCY_NAMES)})"
        )
    if body.get("TxnDate"):
        try:
            dt.date.fromisoformat(str(body["TxnDate"]))
        except ValueError:
            problems.append("TxnDate: must be YYYY-MM-DD")
    return problems


def order_ref(invoice: dict) -> str | None:
    """The ERP order number an invoice carries in its `Order Ref` custom field."""
    for field in invoice.get("CustomField") or []:
        if isinstance(field, dict) and field.get("Name") == ORDER_REF:
            return field.get("StringValue")
    return None


def _add_invoice_writes(app: FastAPI, system: System, authorize: Callable[[Request, str], None]) -> None:
    """Read one invoice; create, update or delete one, once per `requestid`."""
    store = system.store
    store.con.execute(
        "CREATE TABLE IF NOT EXISTS qbo_requests (requestid TEXT PRIMARY KEY, status INTEGER, response TEXT)"
    )

    @app.get("/v3/company/{realm}/invoice/{invoice_id}")
    async def read_invoice(request: Request, realm: str, invoice_id: str) -> JSONResponse:
        authorize(request, realm)
        body = store.get("invoices", invoice_id)
        if body is None:
            raise fault(400, "ValidationFault", "610", "Object Not Found",
                        f"Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees. Invoice {invoice_id}")  # fmt: skip
        return JSONResponse({"Invoice": body, "time": now()})

    @app.post("/v3/company/{realm}/invoice")
    async def write_invoice(request: Request, realm: str) -> Response:
        authorize(request, realm)
        request_id = request.query_params.get("requestid")
        if request_id:
            seen = store.con.execute(
                "SELECT status, response FROM qbo_requests WHERE requestid = ?", [request_id]
            ).fetchone()
            if seen:
                return Response(seen[1].encode(), seen[0], media_type="application/json")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise fault(
                400, "ValidationFault", "2500", "Invalid Request", "the request body must be a JSON object"
            )
        operation = request.query_params.get("operation", "update" if body.get("Id") else "create")
        try:
            status, answer = _invoice_write(system, operation, body)
        except ApiError as error:
            if error.status >= 500 or error.status == 429:
                raise
            status, answer = error.status, error.body
        text = json.dumps(answer, separators=(",", ":"))
        if request_id:
            store.con.execute(
                "INSERT OR IGNORE INTO qbo_requests VALUES (?, ?, ?)", [request_id, status, text]
            )
        return Response(text.encode(), status, media_type="application/json")


def _invoice_write(system: System, operation: str, body: dict) -> tuple[int, dict]:
    """(status, answer) of one create, update or delete."""
    store, stamp = system.store, now_ts()
    if operation == "create":
        if problems := validate_invoice(body, creating=True):
            raise validation("; ".join(problems))
        ref = order_ref(body)
        if system.faults.rejects(ref or body["CustomerRef"]["value"]):
            raise fault(400, "ValidationFault", "6000", "A business validation error has occurred while "
                        "processing your request", f"invoice for {ref} rejected (fault injection)")  # fmt: skip
        with store.transaction() as con:
            n = con.execute("SELECT count(*) FROM api_created WHERE resource = 'invoices'").fetchone()[0] + 1
            invoice = _new_invoice(body, f"in_n{n:010d}", f"INV-N{n:010d}", stamp)
            con.execute("INSERT INTO records VALUES ('invoices', ?, ?, ?, ?)",
                        [invoice["Id"], ref, stamp, json.dumps(invoice, separators=(",", ":"))])  # fmt: skip
            store.note_created("invoices", invoice["Id"], ref, stamp)
        system.stats.records_written += 1
        return 200, {"Invoice": invoice, "time": now()}
    current = store.get("invoices", str(body.get("Id")))
    if current is None:
        raise fault(
            400, "ValidationFault", "610", "Object Not Found", f"Invoice {body.get('Id')!r} does not exist"
        )
    if str(body.get("SyncToken")) != current["SyncToken"]:
        raise fault(400, "ValidationFault", "5010", "Stale Object Error",
                    f"You and {'someone else'} are working on the same thing; the invoice's SyncToken is "
                    f"{current['SyncToken']}, not {body.get('SyncToken')!r}: read it again")  # fmt: skip
    if operation == "delete":
        store.delete("invoices", [(current["Id"], order_ref(current))], stamp)
        system.stats.records_written += 1
        return 200, {"Invoice": {"domain": "QBO", "status": "Deleted", "Id": current["Id"]}, "time": now()}
    if operation != "update":
        raise validation(f"operation: {operation!r} is not one of create, update, delete", "4001")
    if problems := validate_invoice(body, creating=False):
        raise validation("; ".join(problems))
    fields = {k: v for k, v in body.items() if k not in ("Id", "SyncToken", "sparse", "MetaData", "domain")}
    merged = {**current, **fields} if body.get("sparse") else {**_new_invoice(body, current["Id"],
              current["DocNumber"], stamp), "MetaData": current["MetaData"]}  # fmt: skip
    merged = _totals(merged)
    merged["SyncToken"] = str(int(current["SyncToken"]) + 1)
    merged["MetaData"] = {**current["MetaData"], "LastUpdatedTime": qbo_time(stamp)}
    store.put("invoices", [(merged["Id"], order_ref(merged), stamp, merged)])
    system.stats.records_written += 1
    return 200, {"Invoice": merged, "time": now()}


def _new_invoice(body: dict, invoice_id: str, number: str, stamp: str) -> dict:
    """A stored invoice from a request body: QuickBooks fills the number, totals and metadata."""
    currency = ((body.get("CurrencyRef") or {}).get("value")) or "USD"
    invoice = {
        "Id": invoice_id, "SyncToken": "0", "domain": "QBO", "sparse": False,
        "DocNumber": body.get("DocNumber") or number,
        "TxnDate": body.get("TxnDate") or stamp[:10],
        "CurrencyRef": {"value": currency, "name": CURRENCY_NAMES[currency]},
        "CustomerRef": _present(body["CustomerRef"]),
        "BillEmail": _present(body.get("BillEmail") or {}),
        "CustomField": [_present(f) for f in body.get("CustomField") or [] if isinstance(f, dict)],
        "Line": [{**_present(line), "Id": str(i + 1), "LineNum": i + 1} for i, line in enumerate(body["Line"])],
        "MetaData": {"CreateTime": qbo_time(stamp), "LastUpdatedTime": qbo_time(stamp)},
    }  # fmt: skip
    return _totals(_present(invoice), paid=0.0)


def _present(item: dict) -> dict:
    """An object without its null and empty fields (an SDK sends every field it knows)."""
    return {k: v for k, v in item.items() if v not in (None, "", [], {})}


def _totals(invoice: dict, paid: float | None = None) -> dict:
    """`TotalAmt` from the lines; `Balance` what is left to pay (kept paid amount when not given)."""
    total = round(sum(line.get("Amount", 0) for line in invoice.get("Line") or []), 2)
    already = paid if paid is not None else round(invoice.get("TotalAmt", 0) - invoice.get("Balance", 0), 2)
    return {**invoice, "TotalAmt": total, "Balance": round(total - already, 2)}
