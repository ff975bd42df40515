"""A payment: money received against an invoice."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from canonical._field import field

STATUSES = ["succeeded", "pending", "failed", "refunded"]


class Payment(pa.DataFrameModel):
    payment_id: Series[str] = field(
        "Billing payment id (`py_…`).", "billing", unique=True, str_startswith="py_"
    )
    invoice_id: Series[str] = field("The invoice paid.", "billing", nullable=True)
    currency: Series[str] = field(
        "Currency paid (ISO 4217, upper case).", "billing", str_matches=r"^[A-Z]{3}$"
    )
    amount: Series[float] = field("Amount in the paid currency.", "billing", ge=0)
    fx_rate: Series[float] = field("Rate from the paid currency to USD.", "hub", gt=0)
    amount_usd: Series[float] = field("Amount in USD, DECIMAL(18,2).", "hub", ge=0)
    method: Series[str] = field(
        "Payment method (card, sepa_debit, bank_transfer, ...).", "billing", nullable=True
    )
    status: Series[str] = field("succeeded, pending, failed or refunded.", "billing", isin=STATUSES)
    paid_at: Series[pd.Timestamp] = field("When the payment was taken (UTC).", "billing", nullable=True)

    class Config:
        coerce = True
