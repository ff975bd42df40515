"""The CRM (Salesforce-like): accounts and contacts.

OAuth2 client credentials (re-authenticating when the server expires a token mid-run),
cursor pagination (`next_cursor` → `cursor`), incremental on `LastModifiedDate` through
`modified_since` (inclusive) / `modified_before` (exclusive). `changed_since` is the
cheap "anything new?" call the change sensor makes.
"""

from __future__ import annotations

from typing import Any

import dlt
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from integration_hub.adapters._contract import NUMBER, TEXT, TIMESTAMP, Contract, Rejects
from integration_hub.adapters._rest import Api, ReauthenticatingClientCredentials, rest_source, session

SYSTEM = "crm"
INCREMENTAL = True
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
        SYSTEM,
        Api(
            path=f"{API}/{{name}}",
            data_selector="records",
            primary_key="Id",
            cursor="LastModifiedDate",
            since="modified_since",
            before="modified_before",
            params={"limit": page_size},
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
