"""`quarantine.<name>`: rows the hub refused, each with its reason and raw payload.

Nothing is dropped silently: a malformed source row or a canonical row that breaks
a rule is kept here, counted, and can be inspected or replayed.
"""

from __future__ import annotations

import json

import pyarrow as pa

from integration_hub.engine.audit import now
from integration_hub.warehouse import Warehouse, quote

SCHEMA = "quarantine"

_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("source_key", pa.string()),
        ("reason", pa.string()),
        ("payload", pa.string()),
        ("quarantined_at", pa.timestamp("us")),
    ]
)


def quarantine(warehouse: Warehouse, name: str, run_id: str, rejects: list[tuple[str, str, dict]]) -> int:
    """Store `(source_key, reason, payload)` rejects in `quarantine.<name>`; returns how many."""
    if not rejects:
        return 0
    at = now()
    rows = [
        {"run_id": run_id, "source_key": str(key), "reason": reason,
         "payload": json.dumps(payload, default=str, sort_keys=True), "quarantined_at": at}
        for key, reason, payload in rejects
    ]  # fmt: skip
    return warehouse.write_arrow(SCHEMA, name, pa.Table.from_pylist(rows, schema=_SCHEMA))


def top_reasons(warehouse: Warehouse, name: str, run_id: str, limit: int = 3) -> str:
    """The most frequent reasons of a run's rows in `quarantine.<name>`, with their counts."""
    with warehouse.connect() as con:
        rows = con.rows(
            f"SELECT reason, count(*) FROM {quote(SCHEMA, name)} WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC "
            f"LIMIT {int(limit)}",
            [run_id],
        )
    return "; ".join(f"{reason} ({n})" for reason, n in rows)
