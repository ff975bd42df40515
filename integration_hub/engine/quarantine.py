"""`quarantine.<name>`: rows the hub refused, each with its reason and raw payload.

Nothing is dropped silently: a malformed source row or a canonical row that breaks
a rule is kept here, counted, and can be inspected or replayed.
"""

from __future__ import annotations

import json
from collections import Counter

import pyarrow as pa

from integration_hub.engine import audit
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


def quarantine(
    warehouse: Warehouse,
    name: str,
    run_id: str,
    rejects: list[tuple[str, str, dict]],
    *,
    asset: str = "",
    system: str = "hub",
) -> int:
    """Store `(source_key, reason, payload)` rejects in `quarantine.<name>`; returns how many.

    Each batch stored is also one `audit.data_movement` row (direction `quarantine`, the
    reasons counted in its details), so the refused rows are part of the audit trail."""
    if not rejects:
        return 0
    at = now()
    rows = [
        {"run_id": run_id, "source_key": str(key), "reason": reason,
         "payload": json.dumps(payload, default=str, sort_keys=True), "quarantined_at": at}
        for key, reason, payload in rejects
    ]  # fmt: skip
    stored = warehouse.write_arrow(SCHEMA, name, pa.Table.from_pylist(rows, schema=_SCHEMA))
    reasons = Counter(reason for _, reason, _ in rejects)
    audit.record(
        warehouse,
        audit.Movement(
            run_id=run_id, asset=asset or f"{SCHEMA}/{name}", system=system, direction="quarantine",
            resource=f"{SCHEMA}.{name}", rows_in=len(rejects), rows_out=stored, started_at=at,
            details={"reasons": dict(sorted(reasons.items()))},
        ),
    )  # fmt: skip
    return stored


def top_reasons(warehouse: Warehouse, name: str, run_id: str, limit: int = 3) -> str:
    """The most frequent reasons of a run's rows in `quarantine.<name>`, with their counts."""
    with warehouse.connect() as con:
        rows = con.rows(
            f"SELECT reason, count(*) FROM {quote(SCHEMA, name)} WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC "
            f"LIMIT {int(limit)}",
            [run_id],
        )
    return "; ".join(f"{reason} ({n})" for reason, n in rows)
