"""Billing (Stripe-like): invoices and payments, read by the hub; invoices also written.

Bearer API key, token pagination (`next_page` → `page`: every page costs the server the
same, where an offset page costs more the deeper it is), incremental on
`updated_at` through `updated_since` (inclusive) / `updated_before` (exclusive).
Money is integer cents in the invoice's currency.

Destination: `POST /v1/invoices` (`BillingInvoices`), one invoice a request, made safe to
resend by `Idempotency-Key`.
"""

from __future__ import annotations

import dlt
import httpx
from dlt.sources.helpers.rest_client.auth import BearerTokenAuth
from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

from integration_hub.systems import Credential, System, TraceKeys
from integration_hub.systems.kit.contract import INTEGER, TEXT, TIMESTAMP, Contract, Rejects
from integration_hub.systems.kit.rest import Api, get_json, rest_source
from integration_hub.systems.kit.writer import BatchRejected, BearerTokenWriter, Outcome, Record

NAME = "billing"
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
        NAME,
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


def count(base_url: str, api_key: str) -> dict[str, int]:
    """Invoices and payments billing holds now (its listings' `total`)."""
    headers = {"Authorization": f"Bearer {api_key}"}
    return {
        name: get_json(f"{base_url}/v1/{name}", params={"limit": 1}, headers=headers)["total"]
        for name in DESCRIPTIONS
    }


class BillingInvoices(BearerTokenWriter):
    """`POST /v1/invoices`, one invoice per request, made safe to resend by `Idempotency-Key`."""

    system, object, max_batch, key_field = NAME, "invoices", 1, "order_ref"
    idempotency_keys = True

    def write(self, http: httpx.Client, records: list[Record]) -> list[Outcome]:
        outcomes = []
        for r in records:
            try:
                response = self.post(http, "/v1/invoices", r.payload, {"Idempotency-Key": r.idempotency_key})
            except BatchRejected as exc:
                outcomes.append(Outcome(r.key, False, str(exc)))
                continue
            outcomes.append(Outcome(r.key, True, None, response.json().get("id")))
        return outcomes


SYSTEM = System(
    name=NAME,
    description="Billing (Stripe-like): invoices and the payments taken against them.",
    sandbox_port=3,
    credentials={"api_key": Credential("HUB_BILLING_API_KEY", sandbox="sk_test_sandbox")},
    resources=DESCRIPTIONS,
    source=source,
    schedule="hourly",
    raw_keys={"invoices": "id", "payments": "id"},
    canonical_rows={
        "invoices": ("invoice", "SELECT count(*) FROM canonical.invoice"),
        "payments": ("payment", "SELECT count(*) FROM canonical.payment"),
    },
    count=count,
    trace=TraceKeys(
        raw=(("order_id", "invoices", "order_ref"), ("invoice_id", "payments", "invoice")),
        ids=(("invoice", "invoice_id"), ("payment", "payment_id")),
    ),
    writers={"invoices": BillingInvoices},
)
