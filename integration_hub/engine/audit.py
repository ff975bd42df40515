"""`audit.data_movement`: one row for every hop a batch of records takes.

Extract, load, transform, quarantine, reconciliation, push, dead-letter transitions and
retention all record here, with the run that moved the rows, so "what happened to this data?"
has one place to look. What each direction's columns mean is in docs/warehouse-tables.md.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

import pyarrow as pa

from integration_hub.warehouse import Warehouse

SCHEMA = "audit"
TABLE = "data_movement"
DIRECTIONS = (
    "extract", "load", "transform", "quarantine", "reconcile", "push", "dead_letter", "retention"
)  # fmt: skip


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@dataclass
class Movement:
    run_id: str
    asset: str
    system: str
    direction: str
    resource: str = ""
    partition: str | None = None
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    cursor_before: str | None = None
    cursor_after: str | None = None
    started_at: dt.datetime = field(default_factory=now)
    finished_at: dt.datetime | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")


_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()), ("asset", pa.string()), ("system", pa.string()), ("direction", pa.string()),
        ("resource", pa.string()), ("partition", pa.string()), ("rows_in", pa.int64()), ("rows_out", pa.int64()),
        ("rows_rejected", pa.int64()), ("cursor_before", pa.string()), ("cursor_after", pa.string()),
        ("started_at", pa.timestamp("us")), ("finished_at", pa.timestamp("us")), ("details", pa.string()),
    ]
)  # fmt: skip


def record(warehouse: Warehouse, *movements: Movement) -> None:
    """Append movements to `audit.data_movement` (finished now unless already set)."""
    if not movements:
        return
    rows = []
    for m in movements:
        row = asdict(m)
        row["finished_at"] = m.finished_at or now()
        row["details"] = json.dumps(m.details, default=str, sort_keys=True)
        rows.append(row)
    warehouse.write_arrow(SCHEMA, TABLE, pa.Table.from_pylist(rows, schema=_SCHEMA))
