"""Billing (Stripe-like): invoices and payments.

Bearer API key, token pagination (`next_page` → `page`: every page costs the server the
same, where an offset page costs more the deeper it is), incremental on
`updated_at` through `updated_since` (inclusive) / `updated_before` (exclusive).
Money is integer cents in the invoice's currency.
"""

from __future__ import annotations

import dlt
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from integration_hub.adapters._contract import INTEGER, TEXT, TIMESTAMP, Contract, Rejects
from integration_hub.adapters._rest import Api, rest_source

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


def source(
    base_url: str,
    api_key: str = dlt.secrets.value,
    start=None,
    end=None,
    page_size: int = 1000,
    rejects: Rejects | None = None,
) -> dlt.sources.DltSource:
    """Invoices and payments updated in [start, end); no bounds = since the stored cursor."""
    return rest_source(
        SYSTEM,
        Api(
            path="/v1/{name}",
            data_selector="data",
            primary_key="id",
            cursor="updated_at",
            since="updated_since",
            before="updated_before",
            params={"limit": page_size},
        ),
        base_url=base_url,
        auth=BearerTokenAuth(token=api_key),
        paginator=JSONResponseCursorPaginator(cursor_path="next_page", cursor_param="page"),
        contracts=CONTRACTS,
        rejects=rejects,
        start=start,
        end=end,
    )
