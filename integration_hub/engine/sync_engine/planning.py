"""A sync's plan: the diff of its source rows against what the destination last confirmed.

`plan` reads the warehouse and sends nothing. A row is an insert or an update when the hash
of its mapped, allow-listed payload differs from the pushed one; rows without a key, with a
repeated key, with a `skip_reason`, or (update mode) unknown to the destination are counted
as filtered, by reason; in mirror mode every pushed key the source lost is a delete. A row
deleted at its source follows the sync's `on_delete`; a pushed key that is now an alias of
another is retired. Given a `scope` (SQL returning the keys that may have changed), the plan
reads only those keys' rows and state: what it finds is what a whole plan would find for them.
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
    RETIRED,
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
    remote_id: str | None = None  # the destination's id stored at the last confirmed write


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


def _scoped(sql: str, column: str, scope: str | None) -> str:
    """`sql`'s rows whose `column` is among the keys `scope` returns (all rows without a scope)."""
    if scope is None:
        return sql
    return (
        f"SELECT * FROM ({sql}) AS s WHERE CAST(s.{column} AS VARCHAR) IN "
        f"(SELECT CAST(k.k AS VARCHAR) FROM ({scope}) AS k(k))"
    )


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


def plan(sync: Sync, warehouse: Warehouse, scope: str | None = None) -> Plan:
    """What `apply` would send now, for every key or (`scope`) the keys that may have changed;
    reads the warehouse, sends nothing."""
    ensure_tables(warehouse, sync)
    with warehouse.connect() as con:
        table = con.arrow(_scoped(sync.query, sync.key, scope))
        stored = con.rows(_scoped(f"SELECT key, hash, remote_id FROM {sync.state_table}", "key", scope))
        retire = _retirements(con, sync)
        discarded = set(
            con.rows(
                f"SELECT key, hash FROM {DEAD_LETTER} WHERE sync = ? AND status = 'discarded'",
                [sync.name],
            )
        )
        letters = open_letters(con, sync.name)
        existing = {str(r[0]) for r in con.rows(sync.existing)} if sync.existing else None

    state = {key: digest for key, digest, _ in stored}
    remote = {key: remote_id for key, _, remote_id in stored if remote_id is not None}
    sent = (*sync.fields, *sync.create_fields)
    needed = {sync.key, *(sync.mapping[f] for f in sent), *([sync.changed_at] if sync.changed_at else [])}
    missing = sorted(needed - set(table.column_names))
    if missing:
        raise ValueError(
            f"sync {sync.name!r}: its source has no column {missing}; it has {table.column_names}"
        )
    changes, seen, counts, filtered = _diff(sync, table, state, discarded, existing)
    key_field = systems.writer_class(sync.destination, sync.object).key_field
    for key in retire:
        counts["retire"] += 1
        changes.append(_retirement(sync, key, key_field))
    if sync.mode == "mirror":
        for key in sorted(set(state) - seen - set(retire)):
            counts["delete"] += 1
            changes.append(Change(key, "delete", state[key], {key_field: key}))
    if remote:  # writers whose API updates by the destination's own id need it
        for change in changes:
            change.remote_id = remote.get(change.key)
    counts["filtered"] = sum(filtered.values())
    counts["dead_letters_open"] = int(letters or 0)
    return Plan(
        sync.name, changes, dict(counts), dict(filtered), sync.withheld, sorted(sync.pii & sync.allow)
    )


def _retirements(con, sync: Sync) -> list[str]:
    """Pushed keys that are now aliases of another record's key, not yet retired."""
    if not sync.aliases:
        return []
    return [
        k for (k,) in con.rows(
            f"SELECT s.key FROM {sync.state_table} AS s WHERE s.hash <> '{RETIRED}' AND s.key IN "
            f"(SELECT CAST(a.k AS VARCHAR) FROM ({sync.aliases}) AS a(k)) ORDER BY s.key"
        )
    ]  # fmt: skip


def _retirement(sync: Sync, key: str, key_field: str) -> Change:
    """Retire an alias key by the sync's deletion rule; its state then marks it retired."""
    if sync.on_delete == "delete":
        return Change(key, "delete", RETIRED, {key_field: key})
    payload = {key_field: key, **dict(sync.archive)} if sync.on_delete == "archive" else {}
    return Change(key, "retire", RETIRED, payload)


def _diff(
    sync: Sync, table: pa.Table, state: dict, discarded: set, existing: set | None
) -> tuple[list[Change], set[str], Counter, Counter]:
    """(changes, keys seen, counts by operation, filtered by reason) of the source rows.

    One pass over plain lists: it runs once per source row."""
    changes: list[Change] = []
    counts = Counter(
        {op: 0 for op in ("insert", "update", "delete", "retire", "unchanged", "filtered", "discarded")}
    )
    filtered: Counter = Counter()
    seen: set[str] = set()
    fields = sync.fields
    columns = [_json_column(table[sync.mapping[f]]) for f in fields]
    extras = sync.create_fields
    on_create = (
        list(zip(*(_json_column(table[sync.mapping[f]]) for f in extras), strict=True)) if extras else []
    )
    skips = table[SKIP_COLUMN].to_pylist() if SKIP_COLUMN in table.column_names else [None] * table.num_rows
    gone = _deleted_at_source(sync, table, columns, skips)
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
    key_field = systems.writer_class(sync.destination, sync.object).key_field
    for key in (k for k in gone if k in state):  # on_delete 'delete': what was pushed goes
        counts["delete"] += 1
        changes.append(Change(key, "delete", state[key], {key_field: key}))
    return changes, seen, counts, filtered


DELETED_REASON = "deleted at source"


def _deleted_at_source(sync: Sync, table: pa.Table, columns: list[list], skips: list) -> list[str]:
    """Apply `on_delete` to the rows deleted at their source, in place: `archive` sets the archive
    values in `columns`; `ignore` and `delete` skip them (counted as deleted at source). Returns
    the keys `delete` removes from the destination."""
    if sync.deleted_column not in table.column_names:
        return []
    deleted = table[sync.deleted_column].to_pylist()
    rows = [i for i, d in enumerate(deleted) if d]
    if sync.on_delete == "archive":
        for field, value in sync.archive:
            column = columns[sync.fields.index(field)]
            for i in rows:
                column[i] = value
        return []
    for i in rows:
        skips[i] = DELETED_REASON
    keys = table[sync.key].to_pylist()
    return [str(keys[i]).strip() for i in rows if keys[i] is not None] if sync.on_delete == "delete" else []
