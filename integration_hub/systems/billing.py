"""Billing on QuickBooks Online (Accounting API v3, minorversion 75): invoices and payments read
by the hub; invoices also written.

OAuth 2.0: an access token from Intuit's token endpoint by the refresh-token grant (client id
and secret in HTTP Basic), renewed when it expires or a call answers 401 `AuthenticationFailed`.
Every call names the company (`/v3/company/{realmId}/…`) and `minorversion`.

Source: the query endpoint, `SELECT * FROM Invoice|Payment WHERE MetaData.LastUpdatedTime >= …
AND < … ORDERBY MetaData.LastUpdatedTime STARTPOSITION n MAXRESULTS 1000`, incremental on
`MetaData.LastUpdatedTime` (read as a UTC instant: QuickBooks writes the company's offset).
Deletions: the change data capture endpoint lists records deleted since a time
(`"status": "Deleted"`), within QuickBooks' 30-day look-back; they become tombstones in raw.

Destination: `POST /v3/company/{realmId}/invoice` (`BillingInvoices`), one invoice a request,
made safe to resend by `requestid` (QuickBooks answers a repeated one with its first response).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import quote, urljoin

import dlt
import httpx
import pyarrow as pa
import pyarrow.compute as pc
import requests
from dlt.sources import DltResource

from integration_hub.systems import Credential, System, TraceKeys
from integration_hub.systems.kit.arrow import LandingShape, contracted_table, flatten
from integration_hub.systems.kit.contract import NUMBER, TEXT, Contract, Rejects, looks_like_timestamps
from integration_hub.systems.kit.deletions import Listed
from integration_hub.systems.kit.rest import (
    AFTER_INCREMENTAL,
    BATCH_RECORDS,
    ReauthenticatingClientCredentials,
    _ahead,
    _batches,
    _instant,
    hold_cursor,
    session,
)
from integration_hub.systems.kit.writer import (
    BatchRejected,
    DestinationUnusable,
    Outcome,
    Record,
    TransientError,
    Writer,
    error_text,
    retry_after,
)

log = logging.getLogger("integration_hub.systems")

NAME = "billing"
MINOR_VERSION = 75
ENTITIES = {"invoices": "Invoice", "payments": "Payment"}  # resource -> QuickBooks entity
DESCRIPTIONS = {
    "invoices": "QuickBooks invoices (the ERP order number in the `Order Ref` custom field; USD or EUR).",
    "payments": "QuickBooks payments received, each applied to an invoice (`Line[].LinkedTxn`).",
}
CONTRACTS = {name: Contract("Id", {"Id": TEXT, "TotalAmt": NUMBER}) for name in ENTITIES}
CURSOR = "MetaData__LastUpdatedTime"  # `MetaData.LastUpdatedTime`, flattened as it lands
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_RESULTS = 1000  # QuickBooks' largest query page
CDC_LIMIT = 1000  # objects in one change data capture answer
CDC_LOOK_BACK = dt.timedelta(days=30)
ORDER_REF = "Order Ref"


def auth(
    client_id: str, client_secret: str, refresh_token: str, token_url: str, base_url: str
) -> QuickBooksAuth:
    return QuickBooksAuth(
        access_token_url=urljoin(f"{base_url}/", token_url),
        client_id=client_id,
        client_secret=client_secret,
        refresh_token=refresh_token,
        session=session(),
    )


@dlt.sources.credentials.configspec
class QuickBooksAuth(ReauthenticatingClientCredentials):
    """Intuit's refresh-token grant; a refresh token Intuit rotates is used from then on."""

    refresh_token: str = None
    expired_marks: ClassVar[tuple[str, ...]] = ("AuthenticationFailed",)

    def build_access_token_request(self) -> dict[str, Any]:
        return {
            "headers": {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json",
                        "Authorization": basic(self.client_id, self.client_secret)},
            "data": {"grant_type": "refresh_token", "refresh_token": self.refresh_token},
        }  # fmt: skip

    def parse_access_token(self, response_json: Any) -> str:
        self.refresh_token = response_json.get("refresh_token") or self.refresh_token
        return super().parse_access_token(response_json)


def basic(client_id: str, client_secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


def source(
    base_url: str,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    refresh_token: str = dlt.secrets.value,
    realm_id: str = dlt.secrets.value,
    token_url: str = dlt.secrets.value,
    start=None,
    end=None,
    page_size: int = MAX_RESULTS,
    rejects: Rejects | None = None,
) -> dlt.sources.DltSource:
    """Invoices and payments changed in [start, end); no bounds = since the stored cursor."""
    company = f"{base_url}/v3/company/{realm_id}"
    token = auth(client_id, client_secret, refresh_token, token_url, base_url)
    sink = rejects if rejects is not None else Rejects()
    resources = [_resource(company, token, name, sink, start, end, page_size) for name in ENTITIES]
    return dlt.source(name=NAME)(lambda: resources)()


def _resource(
    company: str, token: QuickBooksAuth, name: str, rejects: Rejects, start, end, page_size: int
) -> DltResource:
    """One entity as a dlt resource: query pages fetched one ahead, batched into Arrow tables."""
    entity, contract = ENTITIES[name], CONTRACTS[name]

    @dlt.resource(name=name, primary_key="Id", write_disposition="merge", file_format="parquet")
    def records(
        changed=dlt.sources.incremental(CURSOR, initial_value=_utc(start) or EPOCH, end_value=_utc(end)),
    ) -> Iterator[pa.Table]:
        pages = _pages(company, token, entity, changed.last_value, changed.end_value, page_size)
        refused_before = len(rejects.by_resource[name])
        for batch in _batches(_ahead(pages), BATCH_RECORDS):
            table, refused = contracted_table(batch, contract)
            rejects.by_resource[name].extend(refused)
            if table.num_rows:
                table = _timed(flatten(table), name, rejects)
            if table.num_rows:
                yield table
        hold_cursor(CURSOR, changed.start_value, rejects.by_resource[name][refused_before:])

    return records.add_yield_map(LandingShape(name, "Id", rejects), insert_at=AFTER_INCREMENTAL)


def _timed(table: pa.Table, name: str, rejects: Rejects) -> pa.Table:
    """The change time as a UTC instant (dlt's cursor compares instants, not offsets as text);
    a row whose change time is missing or not a date-time is refused."""
    if CURSOR not in table.column_names:
        keep = pa.array([False] * table.num_rows)
    else:
        keep = pc.fill_null(looks_like_timestamps(table[CURSOR]), False)
    if not pc.all(keep).as_py():
        mask = keep.combine_chunks() if isinstance(keep, pa.ChunkedArray) else keep
        for row in table.filter(pc.invert(mask)).to_pylist():
            rejects.by_resource[name].append(
                (str(row.get("Id")), "field 'MetaData.LastUpdatedTime': expected ISO timestamp", row)
            )
        table = table.filter(mask)
    if not table.num_rows:
        return table
    at = table.schema.get_field_index(CURSOR)
    return table.set_column(at, CURSOR, pc.cast(table[CURSOR], pa.timestamp("us", "UTC")))


def _pages(company: str, token: QuickBooksAuth, entity: str, since, before, size: int) -> Iterator[list]:
    """The entity's records changed in [since, before), a page at a time, by STARTPOSITION."""
    where = f"MetaData.LastUpdatedTime >= '{_literal(since)}'"
    if before is not None:
        where += f" AND MetaData.LastUpdatedTime < '{_literal(before)}'"
    http, position = session(), 1
    while True:
        query = (f"SELECT * FROM {entity} WHERE {where} ORDERBY MetaData.LastUpdatedTime "
                 f"STARTPOSITION {position} MAXRESULTS {size}")  # fmt: skip
        records = _get(http, token, f"{company}/query", {"query": query})["QueryResponse"].get(entity, [])
        if records:
            yield records
        if len(records) < size:
            return
        position += size


def _get(http: requests.Session, token: QuickBooksAuth, url: str, params: dict) -> dict:
    """One API GET (retried by the session); an error answer raises with Intuit's fault text."""
    response = http.get(url, params={**params, "minorversion": MINOR_VERSION}, auth=token,
                        headers={"Accept": "application/json"})  # fmt: skip
    if response.status_code >= 400:
        raise requests.HTTPError(
            f"billing {url.rsplit('/', 1)[-1]}: HTTP {response.status_code}: {fault_text(response)}"
            + ("; check HUB_BILLING_* credentials and HUB_BILLING_REALM_ID" if response.status_code in (401, 403) else ""),
            response=response,
        )  # fmt: skip
    return response.json()


def fault_text(response: requests.Response | httpx.Response) -> str:
    """Intuit's fault (`Message: Detail` of each error), else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    fault = body.get("Fault") or body.get("fault") if isinstance(body, dict) else None
    if not isinstance(fault, dict):
        return str(body)[:300]
    errors = fault.get("Error") or fault.get("error") or []
    return "; ".join(f"{e.get('Message') or e.get('message')}: {e.get('Detail') or e.get('detail')}"
                     f" (code {e.get('code')})" for e in errors)[:500]  # fmt: skip


def _utc(value) -> dt.datetime | None:
    """A window bound as a UTC instant."""
    if value is None:
        return None
    instant = _instant(value) if isinstance(value, str) else value
    return instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)


def _literal(value) -> str:
    """A date-time for a query or CDC parameter: `YYYY-MM-DDTHH:MM:SS+00:00` (whole seconds down)."""
    instant = _utc(value).astimezone(dt.UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def count(base_url: str, client_id: str, client_secret: str, refresh_token: str, realm_id: str,
          token_url: str) -> dict[str, int]:  # fmt: skip
    """Invoices and payments QuickBooks holds now (`SELECT COUNT(*)`)."""
    token, http = auth(client_id, client_secret, refresh_token, token_url, base_url), session()
    url = f"{base_url}/v3/company/{realm_id}/query"
    return {
        name: _get(http, token, url, {"query": f"SELECT COUNT(*) FROM {entity}"})["QueryResponse"][
            "totalCount"
        ]
        for name, entity in ENTITIES.items()
    }


def deleted(resource: str):
    """The deletion listing of one resource (`kit/deletions.Listed`)."""

    def listing(since, base_url: str, client_id: str, client_secret: str, refresh_token: str, realm_id: str,
                token_url: str) -> pa.Table:  # fmt: skip
        """Records deleted at or after `since`: `id` and `deleted_at` (naive UTC). None = nothing
        landed before, so nothing landed was deleted."""
        ids: list[str] = []
        stamps: list[dt.datetime] = []
        start = _utc(since) if since not in (None, "None") else None
        if start is not None:
            floor = dt.datetime.now(dt.UTC) - CDC_LOOK_BACK + dt.timedelta(minutes=5)
            if start < floor:
                log.warning("billing %s: deletions before %s are past QuickBooks' 30-day change data capture "
                            "look-back and are not seen", resource, floor.isoformat())  # fmt: skip
                start = floor
            token, http = auth(client_id, client_secret, refresh_token, token_url, base_url), session()
            for changed in _changes(
                http, token, f"{base_url}/v3/company/{realm_id}/cdc", ENTITIES[resource], start
            ):
                if changed.get("status") == "Deleted":
                    ids.append(str(changed["Id"]))
                    stamps.append(
                        _instant(changed["MetaData"]["LastUpdatedTime"])
                        .astimezone(dt.UTC)
                        .replace(tzinfo=None)
                    )
        return pa.table(
            {"id": pa.array(ids, pa.string()), "deleted_at": pa.array(stamps, pa.timestamp("us"))}
        )

    return listing


def _changes(
    http: requests.Session, token: QuickBooksAuth, url: str, entity: str, since: dt.datetime
) -> Iterator[dict]:
    """Every object the change data capture lists since `since`: a full answer (`CDC_LIMIT`) is
    followed by another from its latest change time (objects listed twice are harmless here)."""
    while True:
        answer = _get(http, token, url, {"entities": entity, "changedSince": _literal(since)})
        objects = [o for part in answer["CDCResponse"][0]["QueryResponse"] for o in part.get(entity, [])]
        yield from objects
        if len(objects) < CDC_LIMIT:
            return
        latest = max(_instant(o["MetaData"]["LastUpdatedTime"]) for o in objects)
        if latest <= since:
            raise RuntimeError(f"billing cdc: more than {CDC_LIMIT} {entity} changes at {since.isoformat()}; "
                               "QuickBooks cannot page them: ask Intuit support or narrow by time")  # fmt: skip
        since = latest


class BillingInvoices(Writer):
    """`POST /v3/company/{realmId}/invoice`, one invoice per request, made safe to resend by `requestid`.

    The sync's payload (`order_ref`, `customer_email`, `currency`, `amount_due` in cents,
    `invoice_date`) becomes one invoice line of the amount, the order number in the `Order Ref`
    custom field and the email as `BillEmail` and `CustomerRef`."""

    system, object, max_batch, key_field = NAME, "invoices", 1, "order_ref"
    idempotency_keys = True

    def __init__(self, base_url: str, client_id: str, client_secret: str, refresh_token: str, realm_id: str,
                 token_url: str):  # fmt: skip
        super().__init__(base_url)
        self.realm_id, self.token_url = realm_id, urljoin(f"{self.base_url}/", token_url)
        self._client = (client_id, client_secret)
        self._refresh_token = refresh_token
        self._token: str | None = None
        self._lock = threading.Lock()

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if refresh or self._token is None:
                self._token = self._fetch_token(http)
            return {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}

    def _fetch_token(self, http: httpx.Client) -> str:
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh_token}
        try:
            response = http.post(self.token_url, data=form, headers={"Authorization": basic(*self._client),
                                                                     "Accept": "application/json"})  # fmt: skip
        except httpx.TransportError as exc:
            raise TransientError(f"billing token endpoint: {type(exc).__name__}") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"billing token endpoint: {error_text(response)}", retry_after(response))
        if response.status_code >= 400:
            raise DestinationUnusable(
                f"billing token endpoint: {error_text(response)}; check HUB_BILLING_CLIENT_ID, "
                "HUB_BILLING_CLIENT_SECRET, HUB_BILLING_REFRESH_TOKEN and HUB_BILLING_TOKEN_URL"
            )
        body = response.json()
        self._refresh_token = body.get("refresh_token") or self._refresh_token
        return body["access_token"]

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        outcomes = []
        for r in records:
            path = (f"/v3/company/{quote(self.realm_id)}/invoice?minorversion={MINOR_VERSION}"
                    f"&requestid={quote(r.idempotency_key)}")  # fmt: skip
            try:
                response = self.post(http, path, invoice(r.payload))
            except BatchRejected as exc:
                outcomes.append(Outcome(r.key, False, f"{exc}"))
                continue
            body = response.json()
            if "Fault" in body:  # QuickBooks may answer a business fault with 200
                outcomes.append(Outcome(r.key, False, fault_text(response)))
                continue
            outcomes.append(Outcome(r.key, True, None, body["Invoice"]["Id"]))
        return outcomes


def invoice(payload: dict) -> dict:
    """A QuickBooks invoice create body from the sync's payload."""
    amount = round(int(payload["amount_due"]) / 100, 2)
    email = payload.get("customer_email")
    return {
        "CustomerRef": {"value": email or "unknown", "name": email},
        "BillEmail": {"Address": email},
        "CurrencyRef": {"value": str(payload.get("currency") or "usd").upper()},
        "TxnDate": str(payload["invoice_date"])[:10],
        "CustomField": [{"DefinitionId": "1", "Name": ORDER_REF, "Type": "StringType",
                         "StringValue": payload["order_ref"]}],
        "Line": [{"Amount": amount, "DetailType": "SalesItemLineDetail",
                  "SalesItemLineDetail": {"ItemRef": {"value": "1", "name": "Goods"}, "Qty": 1}}],
    }  # fmt: skip


SYSTEM = System(
    name=NAME,
    description="Billing (QuickBooks Online): invoices and the payments received against them.",
    sandbox_port=3,
    credentials={
        "client_id": Credential("HUB_BILLING_CLIENT_ID", sandbox="hub-sandbox-qbo"),
        "client_secret": Credential("HUB_BILLING_CLIENT_SECRET", sandbox="qbo-sandbox-secret"),
        "refresh_token": Credential("HUB_BILLING_REFRESH_TOKEN", sandbox="qbo-sandbox-refresh-token"),
        "realm_id": Credential("HUB_BILLING_REALM_ID", sandbox="9341450000000001"),
        # Intuit's is on another host than the API; the stand-in's is beside its API (a relative URL).
        "token_url": Credential("HUB_BILLING_TOKEN_URL", sandbox="/oauth2/v1/tokens/bearer"),
    },
    resources=DESCRIPTIONS,
    source=source,
    schedule="hourly",
    raw_keys={"invoices": "id", "payments": "id"},
    canonical_rows={
        "invoices": ("invoice", "SELECT count(*) FROM canonical.invoice"),
        "payments": ("payment", "SELECT count(*) FROM canonical.payment"),
    },
    count=count,
    deletions={name: Listed(deleted(name)) for name in ENTITIES},
    trace=TraceKeys(
        # The order number lives in a child table (`invoices__custom_field`): the invoice's own id,
        # which canonical keeps, finds the raw rows.
        raw=(("invoice_id", "invoices", "id"), ("payment_id", "payments", "id")),
        ids=(("invoice", "invoice_id"), ("payment", "payment_id")),
    ),
    writers={"invoices": BillingInvoices},
)
