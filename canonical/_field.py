"""How a canonical field is declared: its meaning, the system that owns it, and whether it is PII.

The metadata lives on the pandera field itself, so the model, its checks and its
documentation can never drift apart.
"""

from __future__ import annotations

from typing import Any

import pandera.pandas as pa

# Who decides a field's value: a source system wins survivorship for the fields it owns;
# "hub" marks values the hub derives itself (keys, conversions, identity).
OWNERS = ("erp", "crm", "shop", "billing", "hub")


def field(meaning: str, owner: str, *, pii: bool = False, soft: bool = False, **checks: Any) -> Any:
    """A documented pandera field.

    `soft=True` makes its value checks warnings: the row stays in the canonical table and
    the failure is reported; otherwise a failing row is quarantined.
    """
    if owner not in OWNERS:
        raise ValueError(f"owner must be one of {OWNERS}, got {owner!r}")
    return pa.Field(description=meaning, metadata={"owner": owner, "pii": pii}, raise_warning=soft, **checks)
