"""A sync's plan: the diff of its source rows against what the destination last confirmed.

`plan` reads the warehouse and sends nothing. A row is an insert or an update when the hash
of its mapped, allow-listed payload differs from the pushed one; rows without a key, with a
repeated key, with a `skip_reason`, or (update mode) unknown to the destination are counted
as filtered, by reason; in mirror mode every pushed key the source lost is a delete.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from integration_hub import systems
from integration_hub.engine.sync_engine.declaration import (
    DEAD_LETTER,
    SKIP_COLUMN,
    Sync,
    ensure_tables,
    hasher,
    open_letters,
)
from integration_hub.warehouse import Warehouse


@dataclass(slots=True)  # not frozen: a plan makes one per changed row, and a frozen __init__ is slower
class Change:
    key: str
    operation: str  # insert | update | delete
    hash: str
    payload: dict
    changed_at: dt.datetime | None = None  # when the source last changed the record (`Sync.changed_at`)


@dataclass
class Plan:
    sync: str
    changes: list[Change]
    counts: dict[str, int]
    filtered: dict[str, int]
    withheld: list[str]
    pii: list[str]

    def to_dict(self, sample: int = 5) -> dict:
        return {
            "sync": self.sync,
            "counts": self.counts,
            "filtered": self.filtered,
            "withheld_fields": self.withheld,
            "pii_fields": self.pii,
            "sample": [dataclasses.asdict(c) for c in self.changes[:sample]],
        }

    def markdown(self, sample: int = 10) -> str:
        """A table of the first changes, for the asset's metadata and the CLI."""
        if not self.changes:
            return "_nothing to send_"
        fields = sorted({f for c in self.changes[:sample] for f in c.payload})
        lines = ["| operation | key | " + " | ".join(fields) + " |", "|---" * (len(fields) + 2) + "|"]
        for c in self.changes[:sample]:
            values = " | ".join(str(c.payload.get(f, "")) for f in fields)
            lines.append(f"| {c.operation} | {c.key} | {values} |")
        return "\n".join(lines)


def _json_column(column: pa.ChunkedArray) -> list:
    """A column as JSON-ready values: money as numbers, dates and times as ISO text (vectorised)."""
    kind = column.type
    if pa.types.is_decimal(kind):  # through text: a direct cast is not correctly rounded
        return column.cast(pa.string()).cast(pa.float64()).to_pylist()
    if pa.types.is_timestamp(kind):
        seconds = column.cast(pa.timestamp("s", tz=kind.tz), safe=False)
        return pc.strftime(seconds, "%Y-%m-%dT%H:%M:%SZ").to_pylist()
    if pa.types.is_date(kind):
        return column.cast(pa.string()).to_pylist()
    return column.to_pylist()


def _change_times(sync: Sync, table: pa.Table) -> list:
    """The `changed_at` column as naive UTC datetimes (None without one), through numpy:
    `to_pylist` builds each datetime far more slowly, and the plan takes every source row's."""
    if not sync.changed_at:
        return [None] * table.num_rows
    column = table[sync.changed_at]
    if pa.types.is_null(column.type):  # Postgres, when every value is NULL
        return [None] * table.num_rows
    if not pa.types.is_timestamp(column.type):
        raise ValueError(
            f"sync {sync.name!r}: its changed_at column {sync.changed_at!r} is {column.type}, not a TIMESTAMP"
        )
    return column.cast(pa.timestamp("us")).to_numpy().tolist()  # a zone-aware column: its UTC time


def plan(sync: Sync, warehouse: Warehouse) -> Plan:
    """What `apply` would send now; reads the warehouse, sends nothing."""
    ensure_tables(warehouse, sync)
    with warehouse.connect() as con:
        table = con.arrow(sync.query)
        state = dict(con.rows(f"SELECT key, hash FROM {sync.state_table}"))
        discarded = set(
            con.rows(
                f"SELECT key, hash FROM {DEAD_LETTER} WHERE sync = ? AND status = 'discarded'",
                [sync.name],
            )
        )
        letters = open_letters(con, sync.name)
        existing = {str(r[0]) for r in con.rows(sync.existing)} if sync.existing else None

    sent = (*sync.fields, *sync.create_fields)
    needed = {sync.key, *(sync.mapping[f] for f in sent), *([sync.changed_at] if sync.changed_at else [])}
    missing = sorted(needed - set(table.column_names))
    if missing:
        raise ValueError(
            f"sync {sync.name!r}: its source has no column {missing}; it has {table.column_names}"
        )
    changes, seen, counts, filtered = _diff(sync, table, state, discarded, existing)
    if sync.mode == "mirror":
        key_field = systems.writer_class(sync.destination, sync.object).key_field
        for key in sorted(set(state) - seen):
            counts["delete"] += 1
            changes.append(Change(key, "delete", state[key], {key_field: key}))
    counts["filtered"] = sum(filtered.values())
    counts["dead_letters_open"] = int(letters or 0)
    return Plan(
        sync.name, changes, dict(counts), dict(filtered), sync.withheld, sorted(sync.pii & sync.allow)
    )


def _diff(
    sync: Sync, table: pa.Table, state: dict, discarded: set, existing: set | None
) -> tuple[list[Change], set[str], Counter, Counter]:
    """(changes, keys seen, counts by operation, filtered by reason) of the source rows.

    One pass over plain lists: it runs once per source row."""
    changes: list[Change] = []
    counts = Counter({op: 0 for op in ("insert", "update", "delete", "unchanged", "filtered", "discarded")})
    filtered: Counter = Counter()
    seen: set[str] = set()
    fields = sync.fields
    columns = [_json_column(table[sync.mapping[f]]) for f in fields]
    extras = sync.create_fields
    on_create = (
        list(zip(*(_json_column(table[sync.mapping[f]]) for f in extras), strict=True)) if extras else []
    )
    skips = table[SKIP_COLUMN].to_pylist() if SKIP_COLUMN in table.column_names else [None] * table.num_rows
    changed = _change_times(sync, table)
    digest_of, inserting = hasher(fields), sync.mode == "insert"
    for row, (raw_key, skip, changed_at, *values) in enumerate(
        zip(table[sync.key].to_pylist(), skips, changed, *columns, strict=True)
    ):
        key = None if raw_key is None else str(raw_key).strip()
        if not key:
            filtered[f"no {sync.key}"] += 1
            continue
        if key in seen:
            filtered[f"duplicate {sync.key}"] += 1
            continue
        seen.add(key)
        if skip:
            filtered[skip] += 1
            continue
        if existing is not None and key not in existing:
            filtered["not in destination (update mode)"] += 1
            continue
        digest = digest_of(values)
        pushed = state.get(key)
        if pushed == digest or (pushed is not None and inserting):
            counts["unchanged"] += 1
        elif (key, digest) in discarded:
            counts["discarded"] += 1
        else:
            op = "insert" if pushed is None else "update"
            counts[op] += 1
            payload = dict(zip(fields, values, strict=True))
            if op == "insert" and extras:
                payload.update((f, v) for f, v in zip(extras, on_create[row], strict=True) if v is not None)
            changes.append(Change(key, op, digest, payload, changed_at))
    return changes, seen, counts, filtered
