"""Deletions at the sources, kept in raw as tombstones: a deleted record never silently disappears.

A system module declares, per resource, how its source tells that a record is gone
(`System.deletions`), in one of three ways:

- `Flagged`: the listing returns deleted records flagged (Salesforce's `queryAll` and
  `IsDeleted`), so they land like any change; a row is gone while its flag is true, since the
  source's time in another column;
- `Listed`: the source lists what it deleted since a time (Shopify's Events API, `verb=destroy`):
  `listing(since=…, **client)` answers an Arrow table of the key column(s) and `deleted_at`;
- `KeySet`: the source can list every key it holds (a database): `keys(resource, **client)`
  answers an Arrow table of the key columns; a raw row whose key is not among them is gone,
  since now.

After each load of the resource, `mark` adds the raw table's `_hub_deleted_at TIMESTAMP` (and
`_dlt_load_id`, which the ERP's Arrow rows lack) if missing, then runs one UPDATE in one
transaction: a gone row gets `_hub_deleted_at` (naive UTC) and keeps its last values; a marked
row the source holds again gets NULL back. Either way the row's `_dlt_load_id` becomes a load id
that sorts after every id in the table (the current load's), so models that pick changed raw
rows by `_dlt_load_id > watermark` see the change.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from integration_hub.warehouse import Connection, Warehouse, literal, quote

DELETED_AT = "_hub_deleted_at"
LOAD_ID = "_dlt_load_id"
FOUND = "_hub_found"  # what a detector found at the source, as a table the UPDATE reads


@dataclass(frozen=True)
class Flagged:
    """Deleted records land flagged: `flag` (a raw column) is true, `at` (a raw column) says when."""

    flag: str
    at: str
    complete = True  # every raw row says itself whether it is deleted

    def found(self, client: Mapping[str, Any], resource: str, since: str | None) -> pa.Table | None:
        return None  # the load brought the flags


@dataclass(frozen=True)
class Listed:
    """The source lists its deletions since a time: `listing(since=…, **client)` → (key…, deleted_at).

    A listed key is gone from its deletion time; a marked row is alive again when a load brings it
    and the listing does not name it (the load's merge wrote it anew)."""

    listing: Callable[..., pa.Table]
    complete = False

    def found(self, client: Mapping[str, Any], resource: str, since: str | None) -> pa.Table | None:
        return self.listing(since=since, **client)


@dataclass(frozen=True)
class KeySet:
    """The source lists every key it holds: `keys(resource, **client)` → the key columns."""

    keys: Callable[..., pa.Table]
    complete = True

    def found(self, client: Mapping[str, Any], resource: str, since: str | None) -> pa.Table | None:
        return self.keys(resource, **client)


Detector = Flagged | Listed | KeySet


@dataclass(frozen=True)
class Marked:
    """What one `mark` changed: rows newly marked deleted, rows back at the source."""

    deleted: int = 0
    revived: int = 0


def mark(
    warehouse: Warehouse,
    dataset: str,
    table: str,
    detector: Detector,
    found: pa.Table | None,
    load_id: str,
    now: dt.datetime,
) -> Marked:
    """Mark the rows of `dataset.table` gone at the source, and unmark those back (see the module doc).

    `found` is what `detector.found` answered; `load_id` the current load's id; `now` (naive UTC)
    the time of a deletion the source does not date.
    """
    if not warehouse.table_exists(dataset, table):
        return Marked()
    target = quote(dataset, table)
    with warehouse.connect() as con:
        con.lock_ddl()
        text = "VARCHAR" if con.dialect == "duckdb" else "TEXT"
        con.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {quote(DELETED_AT)} TIMESTAMP")
        con.execute(f"ALTER TABLE {target} ADD COLUMN IF NOT EXISTS {quote(LOAD_ID)} {text}")
        columns = dict(con.rows(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ?",
            [dataset, table],
        ))  # fmt: skip
        with con.transaction(), _found(con, found):
            gone, at, alive = _predicates(detector, found, columns, load_id, now)
            newer = literal(_newer(con, target, load_id))
            dead = f"r.{quote(DELETED_AT)}"
            changing = f"({gone}) = ({dead} IS NULL)" if detector.complete else (
                f"(({gone}) AND {dead} IS NULL) OR (({alive}) AND {dead} IS NOT NULL)")  # fmt: skip
            changed = con.rows(
                f"UPDATE {target} AS r SET {quote(DELETED_AT)} = CASE WHEN {dead} IS NULL THEN {at} END, "
                f"{quote(LOAD_ID)} = {newer} WHERE {changing} RETURNING {dead} IS NOT NULL"
            )
    deleted = sum(1 for (now_deleted,) in changed if now_deleted)
    return Marked(deleted, len(changed) - deleted)


def _predicates(
    detector: Detector, found: pa.Table | None, columns: Mapping[str, str], load_id: str, now: dt.datetime
) -> tuple[str, str, str]:
    """SQL over raw row `r`: (is gone, when it went, is alive again); `alive` only for a listing."""
    if isinstance(detector, Flagged):
        if detector.flag not in columns:  # no deleted record has landed yet
            return "FALSE", "CAST(NULL AS TIMESTAMP)", ""
        return (
            f"COALESCE(r.{quote(detector.flag)}, FALSE)",
            _utc(f"r.{quote(detector.at)}", columns[detector.at]),
            "",
        )
    keys = [name for name in (found.schema.names if found is not None else []) if name != "deleted_at"]
    match = " AND ".join(f"f.{quote(k)} = r.{quote(k)}" for k in keys) or "FALSE"
    listed = f"EXISTS (SELECT 1 FROM {FOUND} f WHERE {match})"
    if isinstance(detector, KeySet):
        return f"NOT {listed}", f"CAST({literal(f'{now:%Y-%m-%d %H:%M:%S.%f}')} AS TIMESTAMP)", ""
    at = f"(SELECT max(f.deleted_at) FROM {FOUND} f WHERE {match})"
    return listed, at, f"NOT {listed} AND r.{quote(LOAD_ID)} = {literal(load_id)}"


def _utc(expression: str, data_type: str) -> str:
    """A raw time column as a naive UTC timestamp, whatever type it landed as."""
    kind = data_type.lower()
    if "with time zone" in kind:
        return f"timezone('UTC', {expression})"
    if kind.startswith("timestamp"):
        return expression
    return f"CAST({expression} AS TIMESTAMP)"


def _newer(con: Connection, target: str, load_id: str) -> str:
    """`load_id` (this load's: rows it wrote carry it already), or, should the table hold a later
    one (a clock set back), an id sorting after it: a string sorts after every string it starts with."""
    latest = con.scalar(f"SELECT max({quote(LOAD_ID)}) FROM {target}")
    return load_id if latest is None or load_id >= latest else f"{latest}1"


@contextlib.contextmanager
def _found(con: Connection, found: pa.Table | None) -> Iterator[None]:
    """`found` readable as table `_hub_found` for this transaction (a view of the Arrow table on
    DuckDB, a temporary table filled by COPY on Postgres)."""
    if found is None:
        yield
        return
    if con.dialect == "duckdb":
        con.raw.register(FOUND, found)
        try:
            yield
        finally:
            con.raw.unregister(FOUND)
        return
    types = {name: _pg_type(found.schema.field(name).type) for name in found.schema.names}
    con.execute(f"CREATE TEMP TABLE {FOUND} ({', '.join(f'{quote(n)} {t}' for n, t in types.items())}) "
                "ON COMMIT DROP")  # fmt: skip
    buffer = io.BytesIO()
    pacsv.write_csv(found, buffer, write_options=pacsv.WriteOptions(include_header=False))
    with con.raw.cursor() as cur, cur.copy(f"COPY {FOUND} FROM STDIN (FORMAT csv)") as copy:
        copy.write(buffer.getvalue())
    con.execute(f"ANALYZE {FOUND}")
    yield


def _pg_type(kind: pa.DataType) -> str:
    if pa.types.is_integer(kind):
        return "bigint"
    if pa.types.is_timestamp(kind):
        return "timestamp"
    return "text"
