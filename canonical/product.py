"""A product: an item the business sells, as catalogued in the ERP."""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from canonical._field import field


class Product(pa.DataFrameModel):
    product_id: Series[int] = field("ERP product id.", "erp", unique=True)
    sku: Series[str] = field("Stock keeping unit (`SKU-00000001`), the key other systems use.", "erp",
                             str_matches=r"^SKU-[0-9]+$")  # fmt: skip
    name: Series[str] = field("Product name.", "erp")
    brand: Series[str] = field("Brand.", "erp", nullable=True)
    category: Series[str] = field("Product category (ERP type).", "erp", nullable=True)
    unit_price: Series[float] = field("List price in USD, DECIMAL(18,2).", "erp", ge=0)
    currency: Series[str] = field("Currency of the price as the source states it (ISO 4217).", "erp",
                                  str_matches=r"^[A-Z]{3}$")  # fmt: skip
    source_system: Series[str] = field("The system the record came from.", "hub")
    updated_at: Series[pd.Timestamp] = field("Last change (UTC).", "erp", nullable=True)

    class Config:
        coerce = True
