"""Billing (Stripe-like): invoices and payments.

Bearer API key, offset pagination (`offset`/`limit`, `total`), incremental on
`updated_at` through `updated_since` (inclusive) / `updated_before` (exclusive).
Money is integer cents in the invoice's currency.
"""

from __future__ import annotations

import dlt
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import OffsetPaginator
from dlt.sources.rest_api import rest_api_source

from integration_hub.adapters._contract import INTEGER, TEXT, TIMESTAMP, Contract, Rejects, guarded
from integration_hub.adapters._rest import iso, session

SYSTEM = "billing"
INCREMENTAL = True
DESCRIPTIONS = {
    "invoices": "Billing invoices (order_ref = ERP order number; amounts in cents, usd or eur).",
    "payments": "Payments taken against invoices (amount in cents).",
}
CONTRACTS = {
    "invoices": Contract("id", {"id": TEXT, "updated_at": TIMESTAMP, "amount_due": INTEGER}),
    "payments": Contract("id", {"id": TEXT, "updated_at": TIMESTAMP, "amount": INTEGER}),
}
EPOCH = "1970-01-01T00:00:00Z"


def source(
    base_url: str,
    api_key: str = dlt.secrets.value,
    start=None,
    end=None,
    page_size: int = 1000,
    rejects: Rejects | None = None,
) -> dlt.sources.DltSource:
    """Invoices and payments updated in [start, end); no bounds = since the stored cursor."""
    resources = [
        {
            "name": name,
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {
                "path": f"/v1/{name}",
                "data_selector": "data",
                "incremental": {
                    "start_param": "updated_since",
                    "end_param": "updated_before",
                    "cursor_path": "updated_at",
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
                "auth": BearerTokenAuth(token=api_key),
                "paginator": OffsetPaginator(limit=page_size, total_path="total"),
                "session": session(),
            },
            "resources": resources,
        },
        name=SYSTEM,
    )
    return guarded(src, CONTRACTS, rejects)
