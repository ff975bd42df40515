"""The ERP's SuiteQL endpoint: the subset of NetSuite's SuiteQL REST service (2024.x) that the hub uses.

- `POST /services/rest/query/v1/suiteql` with `{"q": "<SuiteQL>"}` and the header `Prefer:
  transient`; `limit` (1…1000, default 1000) and `offset` query parameters; the answer
  `{"links", "count", "hasMore", "items", "offset", "totalResults"}`, each item with `links: []`
  and its non-null fields as text. The query subset is `suiteql.py`.
- Token-based authentication: an OAuth 1.0a `Authorization: OAuth realm="<account id>", …`
  header signed HMAC-SHA256 with the integration record's consumer key/secret and the access
  token's id/secret (`HUB_ERP_*`), verified with oauthlib; a stale timestamp (±5 min) or a
  replayed nonce is refused too.
- NetSuite's error body `{"type", "title", "status", "o:errorDetails": [{"detail", "o:errorCode"}]}`:
  `INVALID_LOGIN` (401), `INVALID_PARAMETER` (400), `CONCURRENCY_LIMIT_EXCEEDED` (429).

It reads the sandbox's ERP database itself (`erp.sqlite`, or schema `erp` of the Postgres the
world was seeded into): the same rows the hub's SQL path reads, so both paths load the same.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from oauthlib.oauth1.rfc5849 import signature, utils

from hub_sandbox import secret, suiteql
from hub_sandbox.api import ApiError, json_body
from hub_sandbox.app import system_app
from hub_sandbox.seed import read_world_info

PATH = "/services/rest/query/v1/suiteql"
PAGE_LIMIT = 1000
CLOCK_SKEW = 300  # seconds a signed request's timestamp may differ from now
TABLES = ("customers", "products", "sales_orders", "sales_order_lines")
TITLES = {400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests", 503: "Service Unavailable"}


def ns_error(status: int, code: str, detail: str, headers: dict | None = None) -> ApiError:
    """An `ApiError` answered with NetSuite's error body."""
    error = ApiError(status, code, detail, headers)
    error.body = _error_body(status, code, detail)
    return error


def _error_body(status: int, code: str, detail: str) -> dict:
    return {
        "type": f"https://www.rfc-editor.org/rfc/rfc9110.html#status.{status}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "o:errorDetails": [{"detail": detail, "o:errorCode": code}],
    }


def _gate_error(kind: str, message: str) -> tuple[int, object]:
    if kind == "rate_limit":
        return 429, _error_body(429, "CONCURRENCY_LIMIT_EXCEEDED", "Concurrent request limit exceeded. "
                                "Request blocked.")  # fmt: skip
    return 503, _error_body(503, "SERVICE_UNAVAILABLE", message)


class ErpDatabase:
    """The sandbox ERP's tables, read-only: SQLite (`erp.sqlite`) or the world's Postgres."""

    def __init__(self, home: Path):
        self.url = (read_world_info(home) or {}).get("erp_url")
        self._lock = threading.Lock()
        if self.url:
            import psycopg

            self.con = psycopg.connect(
                self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            )
        else:
            path = home / "sandbox" / "erp.sqlite"
            self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def table(self, name: str) -> str:
        return f"erp.{name}" if self.url else name

    def rows(self, sql: str, args: list) -> list[tuple]:
        if self.url:
            sql = sql.replace("?", "%s")
        else:  # SQLite holds date-times as 'YYYY-MM-DD HH:MM:SS' text
            args = [a.strftime("%Y-%m-%d %H:%M:%S") if hasattr(a, "strftime") else a for a in args]
        with self._lock:
            return self.con.execute(sql, args).fetchall()

    def counts(self) -> dict[str, int]:
        return {t: self.rows(f"SELECT count(*) FROM {self.table(t)}", [])[0][0] for t in TABLES}


def build_app(home: Path) -> FastAPI:
    database = ErpDatabase(home)
    app, system = system_app("erp", home, "Sandbox ERP (NetSuite SuiteQL REST subset)", store=database)
    system.faults.error = _gate_error
    authorize = _token_check()

    @app.post(PATH)
    async def query(request: Request, limit: str = str(PAGE_LIMIT), offset: str = "0") -> Response:
        authorize(request)
        if request.headers.get("prefer", "").strip().lower() != "transient":
            raise ns_error(400, "INVALID_HEADER", "The request must carry the header 'Prefer: transient'.")
        if not (limit.isdigit() and 1 <= int(limit) <= PAGE_LIMIT):
            raise ns_error(400, "INVALID_PARAMETER", f"Invalid value for the parameter 'limit': "
                           f"{limit[:20]}. Provide a value between 1 and {PAGE_LIMIT}.")  # fmt: skip
        if not offset.isdigit():
            raise ns_error(
                400, "INVALID_PARAMETER", f"Invalid value for the parameter 'offset': {offset[:20]}."
            )
        text = (await json_body(request)).get("q")
        if not isinstance(text, str):
            raise ns_error(400, "INVALID_PARAMETER", 'The request body must be {"q": "<SuiteQL query>"}.')
        try:
            parsed = suiteql.parse(text)
        except suiteql.SuiteqlError as exc:
            raise ns_error(400, "INVALID_PARAMETER", str(exc)) from None
        return _answer(request, database, parsed, int(limit), int(offset))

    return app


def _answer(
    request: Request, database: ErpDatabase, parsed: suiteql.Query, limit: int, offset: int
) -> Response:
    where = f" WHERE {parsed.where}" if parsed.where else ""
    source = f"FROM {database.table(parsed.table)}{where}"
    total = database.rows(f"SELECT count(*) {source}", list(parsed.args))[0][0]
    selected = ", ".join(c.sql for c in parsed.columns)
    rows = database.rows(
        f"SELECT {selected} {source} ORDER BY {parsed.order} LIMIT ? OFFSET ?", [*parsed.args, limit, offset]
    )
    items = []
    for row in rows:
        item: dict = {"links": []}
        for column, value in zip(parsed.columns, row, strict=True):
            if (shown := suiteql.render(value, column)) is not None:
                item[column.name] = shown  # NetSuite leaves null fields out
        items.append(item)
    has_more = offset + len(items) < total
    base = str(request.base_url).rstrip("/") + PATH

    def link(rel: str, at: int) -> dict:
        return {"rel": rel, "href": f"{base}?{urlencode({'limit': limit, 'offset': at})}"}

    links = [link("self", offset)] + ([link("next", offset + limit)] if has_more else [])
    body = {"links": links, "count": len(items), "hasMore": has_more, "items": items,
            "offset": offset, "totalResults": total}  # fmt: skip
    return Response(orjson.dumps(body), media_type="application/json")


def _token_check():
    """A check of the request's token-based authentication (OAuth 1.0a, HMAC-SHA256, realm = account)."""
    seen: dict[str, float] = {}  # nonce -> when it was used (forgotten after the clock-skew window)

    def refuse() -> ApiError:
        return ns_error(401, "INVALID_LOGIN", "Invalid login attempt. For more details, see the Login "
                        "Audit Trail in the NetSuite UI at Setup > Users/Roles > User Management > View "
                        "Login Audit Trail.")  # fmt: skip

    def authorize(request: Request) -> None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("oauth "):
            raise refuse()
        try:
            params = {k: utils.unescape(v) for k, v in utils.parse_authorization_header(header)}
        except ValueError:
            raise refuse() from None
        now = time.time()
        try:
            stamp = int(params.get("oauth_timestamp", ""))
        except ValueError:
            raise refuse() from None
        nonce = params.get("oauth_nonce", "")
        expected = {
            "realm": secret("HUB_ERP_ACCOUNT_ID"),
            "oauth_consumer_key": secret("HUB_ERP_CONSUMER_KEY"),
            "oauth_token": secret("HUB_ERP_TOKEN_ID"),
            "oauth_signature_method": "HMAC-SHA256",
        }
        if any(params.get(k) != v for k, v in expected.items()) or not nonce or abs(now - stamp) > CLOCK_SKEW:
            raise refuse()
        signed = SimpleNamespace(
            uri=str(request.url),
            http_method=request.method,
            params=signature.collect_parameters(
                uri_query=request.url.query, headers={"Authorization": header}
            ),
            signature=params.get("oauth_signature", ""),
        )
        if not signature.verify_hmac_sha256(
            signed, secret("HUB_ERP_CONSUMER_SECRET"), secret("HUB_ERP_TOKEN_SECRET")
        ):
            raise refuse()
        if len(seen) > 10_000:  # forget nonces too old to pass the timestamp check anyway
            for old in [n for n, t in seen.items() if now - t > 2 * CLOCK_SKEW]:
                del seen[old]
        if nonce in seen:
            raise refuse()
        seen[nonce] = now

    return authorize
