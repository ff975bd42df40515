"""The CRM on Salesforce's REST API: accounts and contacts, read by the hub and written back.

Auth: the OAuth 2.0 client credentials flow of a connected app (`POST /services/oauth2/token`
on the org's My Domain URL, `HUB_CRM_URL`), re-authenticating when a request answers 401
`INVALID_SESSION_ID`. The token's identity URL (`id`, …/{org id}/{user id}) names the app's
integration user: the hub's own writes carry it as `LastModifiedById`.

Source: SOQL through `queryAll` (deleted records included: they land with `IsDeleted` true and
their deletion time as `LastModifiedDate`, and become tombstones in raw, `kit/deletions.py`),
incremental on `SystemModstamp` (`>=` the stored cursor, `<` the window's end), paged by
`nextRecordsUrl` in batches of `BATCH_SIZE` (`Sforce-Query-Options`). `changed_since` is the
change sensor's cheap probe: `SELECT COUNT()` of the records changed since its cursor by anyone
but the integration user, so the hub's own pushes do not come back as changes.

Destination: sObject Collections upsert by external id (`CrmAccounts`: `PATCH
composite/sobjects/Account/AccountNumber`, ≤ 200 records, `allOrNone=false`, one result each).

The API version is `HUB_CRM_API_VERSION` (default `API_VERSION`). dlt's `RESTClient`, not
simple-salesforce: the shared REST source (`kit/rest.py`) pages ahead on a thread and lands Arrow
tables, which the SDK's dict-per-record iterator cannot feed; simple-salesforce is the judge of the
stand-in (tests/test_crm_salesforce_sdk.py).
"""

from __future__ import annotations

import threading
from typing import Any

import dlt
import httpx
from dlt.sources.helpers.rest_client.paginators import JSONLinkPaginator

from integration_hub import settings
from integration_hub.systems import Credential, System, TraceKeys
from integration_hub.systems.kit.contract import NUMBER, TEXT, TIMESTAMP, Contract, Rejects
from integration_hub.systems.kit.deletions import Flagged
from integration_hub.systems.kit.rest import (
    Api,
    ReauthenticatingClientCredentials,
    iso,
    rest_source,
    session,
)
from integration_hub.systems.kit.writer import (
    DestinationUnusable,
    Outcome,
    Record,
    TransientError,
    Writer,
    error_text,
    json_body,
    retry_after,
)

NAME = "crm"
API_VERSION = "62.0"
TOKEN_PATH = "/services/oauth2/token"
BATCH_SIZE = 2000  # records per query page: Salesforce's largest
OBJECTS = {"accounts": "Account", "contacts": "Contact"}
FIELDS = {
    "accounts": ("Id", "AccountNumber", "Name", "Email__c", "Phone", "BillingCountry", "Industry",
                 "Lifetime_Value__c", "Last_Order_Date__c", "CreatedDate", "LastModifiedDate",
                 "LastModifiedById", "SystemModstamp", "IsDeleted"),
    "contacts": ("Id", "AccountId", "FirstName", "LastName", "Email", "Phone", "CreatedDate",
                 "LastModifiedDate", "SystemModstamp", "IsDeleted"),
}  # fmt: skip
DESCRIPTIONS = {
    "accounts": "CRM accounts (customers as sales sees them; AccountNumber links to the ERP, may be null).",
    "contacts": "CRM contacts, each under an account (AccountId).",
}
CONTRACTS = {
    "accounts": Contract(
        "Id",
        {
            "Id": TEXT,
            "SystemModstamp": TIMESTAMP,
            "LastModifiedDate": TIMESTAMP,
            "Lifetime_Value__c": NUMBER.or_null,
        },
    ),
    "contacts": Contract("Id", {"Id": TEXT, "SystemModstamp": TIMESTAMP, "LastModifiedDate": TIMESTAMP}),
}
NULLABLE_COLUMNS = {
    "accounts": {
        "Lifetime_Value__c": {"data_type": "double", "nullable": True},
        "Last_Order_Date__c": {"data_type": "text", "nullable": True},
    }
}


def api_version() -> str:
    return settings.env("HUB_CRM_API_VERSION", API_VERSION).lstrip("v")


def data_path(rest: str) -> str:
    return f"/services/data/v{api_version()}/{rest}"


def soql(
    name: str, since: Any = None, before: Any = None, *, select: str | None = None, where: tuple = ()
) -> str:
    """The SOQL of `name`'s records changed in [since, before), oldest change first."""
    conditions = [*where]
    if since is not None:
        conditions.append(f"SystemModstamp >= {iso(since)}")
    if before is not None:
        conditions.append(f"SystemModstamp < {iso(before)}")
    text = f"SELECT {select or ', '.join(FIELDS[name])} FROM {OBJECTS[name]}"
    if conditions:
        text += " WHERE " + " AND ".join(conditions)
    return text + ("" if select == "COUNT()" else " ORDER BY SystemModstamp, Id")


def auth(base_url: str, client_id: str, client_secret: str) -> ReauthenticatingClientCredentials:
    return ReauthenticatingClientCredentials(
        access_token_url=f"{base_url}{TOKEN_PATH}",
        client_id=client_id,
        client_secret=client_secret,
        session=session(),
    )


def source(
    base_url: str,
    client_id: str = dlt.secrets.value,
    client_secret: str = dlt.secrets.value,
    start=None,
    end=None,
    page_size: int | None = None,
    rejects: Rejects | None = None,
) -> dlt.sources.DltSource:
    """Accounts and contacts modified in [start, end); no bounds = since the stored cursor."""
    return rest_source(
        NAME,
        Api(
            path=data_path("queryAll"),
            data_selector="records",
            primary_key="Id",
            cursor="SystemModstamp",
            query=lambda name, since, before: {"q": soql(name, since, before)},
            drop=("attributes",),
        ),
        base_url=base_url,
        auth=auth(base_url, client_id, client_secret),
        paginator=JSONLinkPaginator(next_url_path="nextRecordsUrl"),
        contracts=CONTRACTS,
        rejects=rejects,
        start=start,
        end=end,
        # Fields the CRM fills only later (reverse sync): typed now so the columns exist.
        columns=NULLABLE_COLUMNS,
        headers={"Sforce-Query-Options": f"batchSize={page_size or BATCH_SIZE}"},
    )


def login(base_url: str, client_id: str, client_secret: str) -> tuple[str, str]:
    """(access token, the integration user's id) from the token endpoint's answer and identity URL."""
    response = session().post(
        f"{base_url}{TOKEN_PATH}",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
    )
    if response.status_code >= 400:
        raise RuntimeError(
            f"crm {TOKEN_PATH}: HTTP {response.status_code} {response.text[:200]}; "
            "check HUB_CRM_URL, HUB_CRM_CLIENT_ID and HUB_CRM_CLIENT_SECRET"
        )
    body = response.json()
    return body["access_token"], body["id"].rstrip("/").rsplit("/", 1)[-1]


def _query(base_url: str, token: str, text: str, all_rows: bool = True) -> dict:
    response = session().get(
        f"{base_url}{data_path('queryAll' if all_rows else 'query')}",
        params={"q": text},
        headers={"Authorization": f"Bearer {token}"},
    )
    response.raise_for_status()
    return response.json()


def changed_since(base_url: str, client_id: str, client_secret: str, since: str | None) -> dict[str, Any]:
    """`{"changed", "count", "latest"}`: whether others than the hub changed (or deleted) accounts or
    contacts at or after `since`; the hub's own writes (its integration user's) are not changes."""
    token, user = login(base_url, client_id, client_secret)
    others = (f"LastModifiedById != '{user}'",)
    count, latest = 0, []
    for name in OBJECTS:
        count += _query(base_url, token, soql(name, since, select="COUNT()", where=others))["totalSize"]
        newest = soql(name, since, select="SystemModstamp", where=others).replace(
            "ORDER BY SystemModstamp, Id", "ORDER BY SystemModstamp DESC LIMIT 1"
        )
        latest += [r["SystemModstamp"] for r in _query(base_url, token, newest)["records"]]
    return {"changed": count > 0, "count": count, "latest": max(latest, default=None)}


def count(base_url: str, client_id: str, client_secret: str) -> dict[str, int]:
    """Accounts and contacts the CRM holds now (`SELECT COUNT()`, deleted ones left out)."""
    token, _ = login(base_url, client_id, client_secret)
    return {
        name: _query(base_url, token, soql(name, select="COUNT()"), all_rows=False)["totalSize"]
        for name in OBJECTS
    }


class CrmAccounts(Writer):
    """sObject Collections upsert by external id `AccountNumber` (≤ 200, `allOrNone=false`)."""

    system, object, max_batch, key_field = NAME, "accounts", 200, "AccountNumber"

    def __init__(self, base_url: str, client_id: str, client_secret: str):
        super().__init__(base_url)
        self.client_id, self._client_secret = client_id, client_secret
        self._token: str | None = None
        self._lock = threading.Lock()

    def auth_headers(self, http: httpx.Client, refresh: bool = False) -> dict[str, str]:
        with self._lock:
            if refresh or self._token is None:
                self._token = self._fetch_token(http)
            return {"Authorization": f"Bearer {self._token}"}

    def _fetch_token(self, http: httpx.Client) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret,
        }
        try:
            response = http.post(self.base_url + TOKEN_PATH, data=form)
        except httpx.TransportError as exc:
            raise TransientError(f"crm: {type(exc).__name__} on POST {TOKEN_PATH}") from None
        limited = response.status_code == 403 and b"REQUEST_LIMIT_EXCEEDED" in response.content
        if response.status_code == 429 or response.status_code >= 500 or limited:
            raise TransientError(f"crm {TOKEN_PATH}: {error_text(response)}", retry_after(response))
        if response.status_code >= 400:
            raise DestinationUnusable(
                f"crm {TOKEN_PATH}: {error_text(response)}; check HUB_CRM_CLIENT_ID / HUB_CRM_CLIENT_SECRET"
            )
        return response.json()["access_token"]

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        body = {
            "allOrNone": False,
            "records": [{"attributes": {"type": "Account"}, **r.payload} for r in records],
        }
        response = self.post(
            http, data_path("composite/sobjects/Account/AccountNumber"), body, method="PATCH"
        )
        # One result per record, in the order sent.
        return [
            Outcome(
                record.key,
                bool(res.get("success")),
                "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in res.get("errors") or [])
                or None,
                res.get("id"),
            )
            for record, res in zip(records, json_body(response), strict=True)
        ]


SYSTEM = System(
    name=NAME,
    description="The CRM (Salesforce REST API): where sales keeps accounts and contacts.",
    sandbox_port=1,
    credentials={
        "client_id": Credential("HUB_CRM_CLIENT_ID", sandbox="hub-sandbox"),
        "client_secret": Credential("HUB_CRM_CLIENT_SECRET", sandbox="crm-sandbox-secret"),
    },
    resources=DESCRIPTIONS,
    source=source,
    schedule="hourly",
    changes=changed_since,
    raw_keys={"accounts": "id", "contacts": "id"},
    # Customer records are counted in the xref: identity resolution keeps every record, merged or not.
    canonical_rows={"accounts": (None, "SELECT count(*) FROM canonical.customer_xref WHERE system = 'crm'")},
    count=count,
    # dlt's names of `IsDeleted` and `LastModifiedDate`
    deletions=dict.fromkeys(DESCRIPTIONS, Flagged(flag="is_deleted", at="last_modified_date")),
    identity_rank=1,
    trace=TraceKeys(customers=("accounts", "id")),
    writers={"accounts": CrmAccounts},
)
