"""A sales order: one purchase by a customer, placed directly or in the web shop."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from canonical._field import field

STATUSES = ["open", "fulfilled", "partially_fulfilled"]
CHANNELS = ["web", "direct"]


class SalesOrder(pa.DataFrameModel):
    """Its total equals the sum of its order lines within a cent (a cross-table warning check)."""

    order_id: Series[str] = field(
        "Canonical order id, sticky: the id of the order's first record (the ERP order number `SO-…`, "
        "or `SHOP-<shop id>` for an order the shop reported before the ERP); see canonical.order_xref.",
        "hub", unique=True,
    )  # fmt: skip
    erp_order_number: Series[str] = field(
        "The ERP's order number (`SO-…`), when the ERP holds the order.", "erp", nullable=True
    )
    erp_order_id: Series[pd.Int64Dtype] = field("ERP internal order id.", "erp", nullable=True)
    shop_order_id: Series[pd.Int64Dtype] = field(
        "Web-shop order id: the ERP's external reference, or the shop's id for shop-only orders.", "shop",
        nullable=True,
    )  # fmt: skip
    customer_id: Series[str] = field("Canonical customer who placed it.", "hub", nullable=True, soft=True)
    order_date: Series[pd.Timestamp] = field("Order date.", "erp")
    status: Series[str] = field(
        "Fulfilment status: open, fulfilled or partially_fulfilled.", "erp", isin=STATUSES
    )
    total_amount: Series[float] = field("Order total in USD, DECIMAL(18,2).", "erp", ge=0)
    currency: Series[str] = field("Source currency (ISO 4217).", "erp", str_matches=r"^[A-Z]{3}$")
    fx_rate: Series[float] = field("Rate used to convert the source amount to USD.", "hub", gt=0)
    channel: Series[str] = field("Where it was placed: web or direct.", "erp", isin=CHANNELS)
    source_system: Series[str] = field("The system whose record won survivorship.", "hub")
    updated_at: Series[pd.Timestamp] = field("Last change (UTC).", "erp", nullable=True)
    is_deleted: Series[bool] = field("Deleted at its source: kept, not silently dropped.", "hub")
    deleted_at: Series[pd.Timestamp] = field("When its source deleted it (UTC).", "hub", nullable=True)

    class Config:
        coerce = True
