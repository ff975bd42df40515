"""An order line: one product on a sales order."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from canonical._field import field
from canonical.money import MONEY_TOLERANCE

# A line's amount is recomputed from rounded unit prices, so allow a cent per unit.
LINE_TOLERANCE_PER_UNIT = 0.01


class OrderLine(pa.DataFrameModel):
    order_id: Series[str] = field("The canonical sales order (`sales_order.order_id`).", "erp")
    line_number: Series[int] = field("Position on the order, from 1.", "erp", ge=1)
    sku: Series[str] = field("Product SKU as the source states it.", "erp", nullable=True)
    product_id: Series[pd.Int64Dtype] = field(
        "Canonical product, resolved by SKU.", "erp", nullable=True, soft=True
    )
    quantity: Series[int] = field("Units ordered.", "erp", gt=0)
    unit_price: Series[float] = field("Price per unit in USD, DECIMAL(18,2).", "erp", ge=0)
    discount: Series[float] = field(
        "Discount rate, 0 to 1.", "erp", in_range={"min_value": 0, "max_value": 1}
    )
    tax: Series[float] = field("Tax rate, 0 to 1; empty when the source has none.", "erp", nullable=True,
                               in_range={"min_value": 0, "max_value": 1})  # fmt: skip
    line_amount: Series[float] = field(
        "Line total in USD after discount and tax, DECIMAL(18,2).", "erp", ge=0
    )
    source_system: Series[str] = field("The system the line came from.", "hub")

    class Config:
        coerce = True
        unique = ["order_id", "line_number"]

    @pa.dataframe_check(raise_warning=True)
    def line_amount_adds_up(cls, df: pd.DataFrame) -> pd.Series:
        """Soft: amount = quantity × price × (1 − discount) × (1 + tax), within a cent per unit;
        without a stated tax, at least the discounted amount."""
        net = df["quantity"] * df["unit_price"] * (1 - df["discount"])
        tolerance = LINE_TOLERANCE_PER_UNIT * df["quantity"] + MONEY_TOLERANCE
        exact = (df["line_amount"] - net * (1 + df["tax"])).abs() <= tolerance
        return exact.where(df["tax"].notna(), df["line_amount"] >= net - tolerance)
