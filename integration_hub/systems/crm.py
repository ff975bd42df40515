"""The CRM (Salesforce-like): accounts and contacts, read by the hub and written back.

Source: OAuth2 client credentials (re-authenticating when the server expires a token mid-run),
cursor pagination (`next_cursor` → `cursor`), incremental on `LastModifiedDate` through
`modified_since` (inclusive) / `modified_before` (exclusive). `changed_since` is the
cheap "anything new?" call the change sensor makes. Lists include deleted records
(`include_deleted=true`, as Salesforce's `queryAll`): they land with `IsDeleted` true and their
deletion time as `LastModifiedDate`, and become tombstones in raw (`kit/deletions.py`).

Destination: `accounts/upsert` (`CrmAccounts`, ≤ 200 records a call, matched by `AccountNumber`).
"""

from __future__ import annotations

import threading
from typing import Any

import dlt
import httpx
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from integration_hub.systems import Credential, System, TraceKeys
from integration_hub.systems.kit.contract import NUMBER, TEXT, TIMESTAMP, Contract, Rejects
from integration_hub.systems.kit.deletions import Flagged
from integration_hub.systems.kit.rest import (
    Api,
    ReauthenticatingClientCredentials,
    get_json,
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
API = "/services/data/v1"
DESCRIPTIONS = {
    "accounts": "CRM accounts (customers as sales sees them; AccountNumber links to the ERP, may be null).",
    "contacts": "CRM contacts, each under an account (AccountId).",
}
CONTRACTS = {
    "accounts": Contract(
        "Id", {"Id": TEXT, "LastModifiedDate": TIMESTAMP, "Lifetime_Value__c": NUMBER.or_null}
    ),
    "contacts": Contract("Id", {"Id": TEXT, "LastModifiedDate": TIMESTAMP}),
}
NULLABLE_COLUMNS = {
    "accounts": {
        "Lifetime_Value__c": {"data_type": "double", "nullable": True},
        "Last_Order_Date__c": {"data_type": "text", "nullable": True},
    }
}


def auth(base_url: str, client_id: str, client_secret: str) -> ReauthenticatingClientCredentials:
    return ReauthenticatingClientCredentials(
        access_token_url=f"{base_url}/oauth/token",
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
    page_size: int = 500,
    rejects: Rejects | None = None,
) -> dlt.sources.DltSource:
    """Accounts and contacts modified in [start, end); no bounds = since the stored cursor."""
    return rest_source(
        NAME,
        Api(
            path=f"{API}/{{name}}",
            data_selector="records",
            primary_key="Id",
            cursor="LastModifiedDate",
            since="modified_since",
            before="modified_before",
            params={"limit": page_size, "include_deleted": "true"},
        ),
        base_url=base_url,
        auth=auth(base_url, client_id, client_secret),
        paginator=JSONResponseCursorPaginator(cursor_path="next_cursor", cursor_param="cursor"),
        contracts=CONTRACTS,
        rejects=rejects,
        start=start,
        end=end,
        # Fields the CRM fills only later (reverse sync): typed now so the columns exist.
        columns=NULLABLE_COLUMNS,
    )


def changed_since(base_url: str, client_id: str, client_secret: str, since: str | None) -> dict[str, Any]:
    """`{"changed", "count", "latest"}`: whether accounts or contacts changed at or after `since`."""
    client = session()
    token = auth(base_url, client_id, client_secret)
    response = client.get(f"{base_url}{API}/changes", params={"since": since}, auth=token)
    response.raise_for_status()
    return response.json()


def count(base_url: str, client_id: str, client_secret: str) -> dict[str, int]:
    """Accounts and contacts the CRM holds now (its `total_size`)."""
    token = auth(base_url, client_id, client_secret)
    return {
        name: get_json(f"{base_url}{API}/{name}", params={"limit": 1}, auth=token)["total_size"]
        for name in DESCRIPTIONS
    }


class CrmAccounts(Writer):
    """`accounts/upsert` (≤ 200, match `AccountNumber`), OAuth2 client credentials."""

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
            response = http.post(self.base_url + "/oauth/token", data=form)
        except httpx.TransportError as exc:
            raise TransientError(f"crm: {type(exc).__name__} on POST /oauth/token") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(f"crm /oauth/token: {error_text(response)}", retry_after(response))
        if response.status_code >= 400:
            raise DestinationUnusable(
                f"crm /oauth/token: {error_text(response)}; check HUB_CRM_CLIENT_ID / HUB_CRM_CLIENT_SECRET"
            )
        return response.json()["access_token"]

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        response = self.post(http, f"{API}/accounts/upsert", {"records": [r.payload for r in records]})
        by_number = {r.payload[self.key_field]: r.key for r in records}
        return [
            Outcome(
                by_number[res["AccountNumber"]],
                bool(res.get("success")),
                "; ".join(map(str, res.get("errors") or [])) or None,
                res.get("id"),
            )
            for res in json_body(response)["results"]
        ]


SYSTEM = System(
    name=NAME,
    description="The CRM (Salesforce-like): where sales keeps accounts and contacts.",
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
