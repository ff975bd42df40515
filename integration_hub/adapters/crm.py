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
from dlt.sources.rest_api import rest_api_source

from integration_hub.adapters._contract import NUMBER, TEXT, TIMESTAMP, Contract, Rejects, guarded
from integration_hub.adapters._rest import ReauthenticatingClientCredentials, iso, session

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
EPOCH = "1970-01-01T00:00:00Z"
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
    resources = [
        {
            "name": name,
            "primary_key": "Id",
            "write_disposition": "merge",
            # Fields the CRM fills only later (reverse sync): typed now so the columns exist.
            "columns": NULLABLE_COLUMNS.get(name, {}),
            "endpoint": {
                "path": f"{API}/{name}",
                "data_selector": "records",
                "params": {"limit": page_size},
                "incremental": {
                    "start_param": "modified_since",
                    "end_param": "modified_before",
                    "cursor_path": "LastModifiedDate",
                    "initial_value": iso(start) or EPOCH,
                    "end_value": iso(end),
                },
            },
        }
        for name in DESCRIPTIONS
    ]
    src = rest_api_source(
        {
            "client": {
                "base_url": base_url,
                "auth": auth(base_url, client_id, client_secret),
                "paginator": JSONResponseCursorPaginator(cursor_path="next_cursor", cursor_param="cursor"),
                "session": session(),
            },
            "resources": resources,
        },
        name=SYSTEM,
    )
    return guarded(src, CONTRACTS, rejects)


def changed_since(base_url: str, client_id: str, client_secret: str, since: str | None) -> dict[str, Any]:
    """`{"changed", "count", "latest"}`: whether accounts or contacts changed at or after `since`."""
    client = session()
    token = auth(base_url, client_id, client_secret)
    response = client.get(f"{base_url}{API}/changes", params={"since": since}, auth=token)
    response.raise_for_status()
    return response.json()
