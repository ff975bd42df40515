"""A customer: one person or company the business sells to, whichever systems know them."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from canonical._field import field


class Customer(pa.DataFrameModel):
    """One row per real customer; `customer_xref` maps every system's record to it."""

    customer_id: Series[str] = field(
        "Hub-assigned customer id; stable across runs (never re-keyed).", "hub", unique=True
    )
    account_number: Series[str] = field(
        "ERP account number (`C000000001`), shared with the CRM's AccountNumber.", "erp", nullable=True
    )
    name: Series[str] = field("Display name of the customer.", "erp", pii=True)
    email: Series[str] = field(
        "Primary email, lower-cased and trimmed.", "erp", pii=True, nullable=True, soft=True,
        str_matches=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    )  # fmt: skip
    phone: Series[str] = field(
        "Phone in E.164 (`+<digits>`).",
        "erp",
        pii=True,
        nullable=True,
        soft=True,
        str_matches=r"^\+[0-9]{7,15}$",
    )
    country_code: Series[str] = field(
        "Country, ISO 3166-1 alpha-2.", "erp", nullable=True, str_matches=r"^[A-Z]{2}$"
    )
    segment: Series[str] = field("Market segment (ERP vocabulary).", "erp", nullable=True)
    source_system: Series[str] = field("The system whose record won survivorship.", "hub")
    created_at: Series[pd.Timestamp] = field(
        "When the customer was first recorded (UTC).", "erp", nullable=True
    )
    updated_at: Series[pd.Timestamp] = field("Latest change in any system (UTC).", "hub", nullable=True)

    class Config:
        coerce = True
