"""An invoice: what billing asked a customer to pay for an order."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from canonical._field import field
from canonical.money import MONEY_TOLERANCE


class Invoice(pa.DataFrameModel):
    invoice_id: Series[str] = field(
        "Billing invoice id (`in_…`).", "billing", unique=True, str_startswith="in_"
    )
    invoice_number: Series[str] = field("Human invoice number.", "billing", nullable=True)
    order_id: Series[str] = field("The sales order billed (ERP order number).", "billing", nullable=True)
    customer_id: Series[str] = field("Canonical customer, resolved by the billing email.", "hub", nullable=True,
                                     soft=True)  # fmt: skip
    customer_email: Series[str] = field(
        "Billing email, lower-cased and trimmed.", "billing", pii=True, nullable=True
    )
    currency: Series[str] = field(
        "Currency billed (ISO 4217, upper case).", "billing", str_matches=r"^[A-Z]{3}$"
    )
    amount: Series[float] = field("Amount due in the billed currency.", "billing", ge=0)
    fx_rate: Series[float] = field("Rate from the billed currency to USD (seed `fx_rates`).", "hub", gt=0)
    amount_usd: Series[float] = field("Amount due in USD, DECIMAL(18,2).", "hub", ge=0)
    amount_paid_usd: Series[float] = field("Amount paid so far in USD, DECIMAL(18,2).", "hub", ge=0)
    status: Series[str] = field("open or paid.", "billing", isin=["open", "paid"])
    invoice_date: Series[pd.Timestamp] = field("Invoice date.", "billing", nullable=True)
    updated_at: Series[pd.Timestamp] = field("Last change (UTC).", "billing", nullable=True)

    class Config:
        coerce = True

    @pa.dataframe_check
    def converted_at_recorded_rate(cls, df: pd.DataFrame) -> pd.Series:
        """amount_usd is the billed amount at the recorded rate, within a cent."""
        return (df["amount_usd"] - df["amount"] * df["fx_rate"]).abs() <= MONEY_TOLERANCE
