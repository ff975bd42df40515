"""Identity: which canonical customer each system's customer record is."""

from __future__ import annotations

import pandera.pandas as pa
from pandera.typing import Series

from canonical._field import field

MATCH_RULES = ["anchor", "external_id", "email", "phone_name"]


class CustomerXref(pa.DataFrameModel):
    """One row per (system, source id); the pair is the key."""

    system: Series[str] = field("The system holding the record (`erp`, `crm`, `shop`, ...).", "hub")
    source_id: Series[str] = field("The record's id in that system, as text.", "hub")
    customer_id: Series[str] = field("The canonical customer this record is.", "hub")
    match_rule: Series[str] = field(
        "Why: `anchor` (founds the customer), `external_id`, `email` or `phone_name`.",
        "hub",
        isin=MATCH_RULES,
    )
    confidence: Series[float] = field(
        "How sure the match is, 0 to 1.", "hub", in_range={"min_value": 0, "max_value": 1}
    )
    matched_to: Series[str] = field(
        "The record (`system:source_id`) this one was matched to; empty for anchors.", "hub", nullable=True
    )
    precedence: Series[int] = field("Survivorship rank of the record's system (0 wins).", "hub", ge=0)

    class Config:
        coerce = True
        unique = ["system", "source_id"]
