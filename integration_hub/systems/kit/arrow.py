"""Records as Arrow tables, shaped as dlt's JSON normalizer would land them.

dlt normalizes dict rows one by one in Python (flattening, type coercion, ISO timestamp
detection, child tables): at SF1 that was ~95 % of a REST load's CPU (1.46 M billing
records, 106 CPU-s). Here a page of records becomes one Arrow table, column by column,
and dlt takes it as it takes any Arrow table. The raw tables stay what they were:

- nested objects are flattened into `parent__child` columns;
- lists become child tables `<table>__<field>` with `_dlt_parent_id`, `_dlt_list_idx`,
  `_dlt_root_id` and `_dlt_id` (a list of scalars under `value`), merged by `_dlt_root_id`,
  so the children of every changed root row replace the stored ones (`child_hints`), as dlt's
  own nested merge does; a root row left with no children in a child table sends it one row
  that only deletes (`DELETED`), so a list that became empty (or null) loses its former children;
- text columns whose values are all ISO timestamps become `timestamp[us, UTC]` (naive
  ones are UTC), as dlt's `iso_timestamp` detection types them; a column the schema
  already holds as a timestamp keeps that type, and a row whose value there is not one is
  refused (`bad_timestamps`) rather than failing the load;
- root rows carry `_dlt_load_id` and `_dlt_id`.

A field whose values mix types in one page (a number sent as text) lands as text, unless
the contract refuses the records that mixed it (`contracted_table`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dlt
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from integration_hub.systems.kit.contract import Contract, Rejects, looks_like_timestamps
from integration_hub.systems.kit.dlt_internals import current_schema, make_root_table

SEPARATOR = "__"  # dlt's path separator for nested fields and child tables
UTC_MICROS = pa.timestamp("us", "UTC")
ROW_KEYS = {"_dlt_id", "_dlt_load_id", "_dlt_parent_id", "_dlt_root_id", "_dlt_list_idx"}
ROW_ID_BYTES = 10  # a random `_dlt_id` as dlt makes one: 10 random bytes, base64 without padding
KEY_ID_BYTES = 15  # a key-derived `_dlt_id`: a 15-byte SHAKE-128 digest, base64 without padding
# A child-table row marked here only deletes (dlt's `hard_delete` hint): it carries the root id of
# a root row that has no rows in that table any more, so the table's merge by `_dlt_root_id`
# removes the stored ones, and is itself never inserted. Stored rows hold null.
DELETED = "_hub_deleted"


def random_row_ids(n: int) -> list[str]:
    """`n` random row ids, in the form dlt gives the rows it normalizes itself."""
    data = secrets.token_bytes(n * ROW_ID_BYTES)
    return [
        base64.b64encode(data[i : i + ROW_ID_BYTES]).decode("ascii").rstrip("=")
        for i in range(0, len(data), ROW_ID_BYTES)
    ]


def key_row_id(key: str) -> str:
    """The row id of the row whose key is `key`: the same in every load, so a changed row's child
    rows replace the stored ones. The digest is dlt's `digest128` (SHAKE-128, 15 bytes, base64
    without padding), kept here so the ids of stored rows do not depend on dlt's internals."""
    digest = hashlib.shake_128(key.encode("utf-8")).digest(KEY_ID_BYTES)
    return base64.b64encode(digest).decode("ascii").rstrip("=")


def records_table(rows: Sequence[Mapping[str, Any]]) -> tuple[pa.Table, bool]:
    """The records as a table (a column per field seen in any of them) and whether a field's
    values mixed types (it is then text)."""
    columns, mixed = _columns(rows)
    return pa.table(columns), mixed


def _columns(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, pa.Array], bool]:
    fields = dict.fromkeys(name for row in rows for name in row)
    columns, mixed = {}, False
    for name in fields:
        columns[name], mixed_here = _column([row.get(name) for row in rows])
        mixed = mixed or mixed_here
    return columns, mixed


def _column(values: list) -> tuple[pa.Array, bool]:
    """One field's values as an Array. Objects and lists of objects are built field by field
    (pyarrow's own inference of nested values costs ~10x more per value)."""
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, dict) and all(v is None or isinstance(v, dict) for v in values):
        inner, mixed = _columns([v or {} for v in values])
        if inner:
            nulls = pa.array([v is None for v in values])
            return pa.StructArray.from_arrays(list(inner.values()), names=list(inner), mask=nulls), mixed
    elif isinstance(sample, list) and all(v is None or isinstance(v, list) for v in values):
        items = [item for v in values if v for item in v]
        if items and all(isinstance(item, dict) for item in items):
            inner, mixed = _columns(items)
            if inner:
                lengths = np.fromiter((len(v) if v else 0 for v in values), np.int32, len(values))
                offsets = pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int32)]))
                struct = pa.StructArray.from_arrays(list(inner.values()), names=list(inner))
                lists = pa.ListArray.from_arrays(offsets, struct, mask=pa.array([v is None for v in values]))
                return lists, mixed
    try:
        return pa.array(values), False
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return pa.array([_text(v) for v in values], pa.string()), True


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        # As dlt's JSON writer renders it (orjson, compact); a value JSON cannot carry as such
        # (a Decimal) as its text.
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value).lower() if isinstance(value, bool) else str(value)


def flatten(table: pa.Table) -> pa.Table:
    """Nested objects as `parent__child` columns, recursively; null-typed columns dropped
    (dlt creates no column for a field that was only ever null)."""
    while any(pa.types.is_struct(f.type) for f in table.schema):
        columns = {}
        for name, column in zip(table.column_names, table.columns, strict=True):
            if pa.types.is_struct(column.type):
                # `flatten` merges the object's own nulls into its fields' values.
                for child, values in zip(column.type, column.combine_chunks().flatten(), strict=True):
                    columns[f"{name}{SEPARATOR}{child.name}"] = values
            else:
                columns[name] = column
        table = pa.table(columns)
    return table.drop_columns([f.name for f in table.schema if pa.types.is_null(f.type)])


def split_children(
    table: pa.Table, name: str, root_ids: pa.Array | None = None
) -> Iterator[tuple[str, pa.Table]]:
    """`table` without its list columns, then one child table per list column (recursively),
    also when no row has an item there (then with no rows: its name says which table the rows'
    former children live in).

    `table` must carry `_dlt_id`; `root_ids` are the root rows' ids of its rows (its own for a root).
    """
    lists = [f.name for f in table.schema if _is_list(f.type)]
    yield name, table.drop_columns(lists)
    row_ids = table["_dlt_id"].combine_chunks()
    root_ids = row_ids if root_ids is None else root_ids
    for field in lists:
        column = table[field].combine_chunks()
        parents = pc.list_parent_indices(column)
        values = pc.list_flatten(column)
        positions = parents.to_numpy()
        first = np.searchsorted(positions, positions, side="left")
        if pa.types.is_struct(values.type):
            child = pa.Table.from_struct_array(values)
        else:
            child = pa.table({"value": values})
        child = flatten(child)
        child = child.append_column("_dlt_parent_id", row_ids.take(parents))
        child = child.append_column("_dlt_list_idx", pa.array(np.arange(len(positions)) - first, pa.int64()))
        child_roots = root_ids.take(parents)
        child = child.append_column("_dlt_root_id", child_roots)
        child = required(
            child.append_column("_dlt_id", pa.array(random_row_ids(child.num_rows), pa.string()))
        )
        yield from split_children(child, f"{name}{SEPARATOR}{field}", child_roots)


def type_timestamps(table: pa.Table, known: set[str]) -> tuple[pa.Table, dict[str, np.ndarray]]:
    """ISO timestamp text columns as `timestamp[us, UTC]`, and per `known` timestamp column the
    rows whose value is not a timestamp (left null in the table: the caller refuses those rows)."""
    bad = {}
    for i, field in enumerate(table.schema):
        if not pa.types.is_string(field.type) or field.name in ROW_KEYS:
            continue
        column = table.column(i)
        matches = looks_like_timestamps(column)
        if field.name not in known and not (pc.all(matches).as_py() and pc.any(matches).as_py()):
            continue
        failed = pc.and_(pc.invert(pc.fill_null(matches, False)), pc.is_valid(column))
        if pc.any(failed).as_py():
            bad[field.name] = failed.combine_chunks().to_numpy(zero_copy_only=False)
            column = pc.if_else(failed, None, column)
        table = table.set_column(i, field.name, as_utc(column))
    return table, bad


def as_utc(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """ISO timestamp text as UTC; values without a zone are taken as UTC."""
    try:
        return column.cast(UTC_MICROS)
    except pa.ArrowInvalid:
        zoned = pc.match_substring_regex(column, r"(Z|[+-]\d{2}:?\d{2})$")
        naive = pc.if_else(zoned, None, column).cast(pa.timestamp("us")).cast(UTC_MICROS)
        return pc.if_else(zoned, pc.if_else(zoned, column, None).cast(UTC_MICROS), naive)


def with_row_columns(table: pa.Table, key: str, nested: bool = False) -> pa.Table:
    """dlt's load id and row ids, which rows loaded as dicts carry: retention and lineage read them.

    A table with list fields (or, `nested`, with child tables stored already) gets row ids derived
    from its `key` column, so the child tables of a changed row replace their stored rows by
    `_dlt_root_id`; other tables random ones, as dlt.
    """
    load_id = dlt.current.load_package_state()["load_id"]
    if nested or any(_is_list(f.type) for f in table.schema):
        ids = pa.array([key_row_id(f"{v}") for v in table[key].to_pylist()], pa.string())
    else:
        ids = pa.array(random_row_ids(table.num_rows), pa.string())
    table = table.append_column("_dlt_load_id", pa.array([load_id] * table.num_rows, pa.string()))
    return required(not_null(table.append_column("_dlt_id", ids), [key]))


def with_deletions(child: pa.Table | None, root_ids: pa.Array) -> pa.Table:
    """`child` (None: no rows) plus one `DELETED` row for each of `root_ids` that has no row in
    it, so the table's merge by `_dlt_root_id` removes what those root rows had there before."""
    if child is not None and child.num_rows:
        root_ids = root_ids.filter(
            pc.invert(pc.is_in(root_ids, value_set=child["_dlt_root_id"].combine_chunks()))
        )
    # Only the root id matters to the merge; the other row columns are filled because dlt
    # declares them not null.
    deletions = required(
        pa.table(
            {
                "_dlt_parent_id": root_ids,
                "_dlt_list_idx": pa.array(np.full(len(root_ids), -1), pa.int64()),
                "_dlt_root_id": root_ids,
                "_dlt_id": pa.array(random_row_ids(len(root_ids)), pa.string()),
                DELETED: pa.array(np.ones(len(root_ids), bool)),
            }
        )
    )
    if child is None:
        return deletions
    return pa.concat_tables([child, deletions], promote_options="default") if len(root_ids) else child


def required(table: pa.Table) -> pa.Table:
    """dlt's row columns declared not null, as dlt's schema has them (so the two agree)."""
    return table.cast(
        pa.schema([f.with_nullable(f.nullable and f.name not in ROW_KEYS) for f in table.schema])
    )


def not_null(table: pa.Table, columns: Sequence[str]) -> pa.Table:
    """The primary key `columns` declared not null, as dlt's schema declares a primary key: when
    the two differ, dlt warns at every extraction that it kept its own hints. A key column that
    holds a null keeps its type, for the load to refuse as it would any row without a key."""
    fields = [
        f.with_nullable(False) if f.name in columns and not table.column(f.name).null_count else f
        for f in table.schema
    ]
    return table if fields == list(table.schema) else table.cast(pa.schema(fields))


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind)


def schema_timestamps(table: str) -> set[str]:
    """The columns of `table` the current dlt schema holds as timestamps (source names unknown:
    the schema's normalized names), or nothing outside an extraction."""
    schema = current_schema()
    if schema is None:
        return set()
    columns = schema.tables.get(schema.naming.normalize_table_identifier(table), {}).get("columns", {})
    return {name for name, column in columns.items() if column.get("data_type") == "timestamp"}


def child_tables(resource: str) -> set[str]:
    """The child tables of `resource` the current dlt schema holds (its normalized names), at any
    depth, or nothing outside an extraction."""
    schema = current_schema()
    if schema is None:
        return set()
    prefix = schema.naming.normalize_tables_path(resource) + SEPARATOR
    return {
        name
        for name, table in schema.tables.items()
        if name.startswith(prefix) and "_dlt_root_id" in table.get("columns", {})
    }


def normalized(name: str) -> str:
    """A column name as dlt's schema spells it (as given outside an extraction)."""
    schema = current_schema()
    return name if schema is None else schema.naming.normalize_identifier(name)


def contracted_table(
    records: Sequence[Any], contract: Contract
) -> tuple[pa.Table, list[tuple[str, str, Any]]]:
    """The records that keep `contract` as one table, and the refused ones as `(key, reason, record)`."""
    objects = [row for row in records if isinstance(row, Mapping)]
    refused = [(str(None), contract.violation(row), row) for row in records if not isinstance(row, Mapping)]
    table, mixed = records_table(objects)
    if table.num_rows != len(objects):  # records without a single field
        refused += [(str(None), contract.violation(row), row) for row in objects]
        return pa.table({}), refused
    table, broken = contract.split(table, objects)
    if broken and mixed:  # the refused records may have been what mixed a field's types
        out = {id(row) for _, _, row in broken}
        table = records_table([row for row in objects if id(row) not in out])[0]
    return table, refused + broken


class LandingShape:
    """A dlt yield-map step (`DltResource.add_yield_map`): the table as it lands (flattened,
    timestamps typed, dlt's row columns, then its child tables). Placed right after dlt's
    incremental, it shapes only new rows; a row whose value in a timestamp column is not one goes
    to `rejects`.

    Every child table, of this batch's lists or stored already, gets a `DELETED` row for each root
    row without rows there: a child table that receives no rows in a load is not merged at all,
    and one that does deletes only the children of the root rows it has rows for.
    """

    def __init__(self, resource: str, key: str, rejects: Rejects):
        self.resource, self.key, self.rejects = resource, key, rejects

    def __call__(self, item: pa.Table) -> Iterator[Any]:
        table = flatten(item)
        known = schema_timestamps(self.resource)
        table, bad = type_timestamps(table, {c for c in table.column_names if normalized(c) in known})
        if bad:
            table = self._refuse(table, bad)
        stored = child_tables(self.resource)
        tables = split_children(with_row_columns(table, self.key, nested=bool(stored)), self.resource)
        root = next(tables)[1]
        yield root
        root_ids = root["_dlt_id"].combine_chunks()
        for name, child in tables:
            stored.discard(normalized_table(name))
            yield from _child_item(name, with_deletions(child, root_ids))
        for name in sorted(stored):  # a list null or missing in every row of this batch
            yield from _child_item(name, with_deletions(None, root_ids))

    def _refuse(self, table: pa.Table, bad: dict[str, np.ndarray]) -> pa.Table:
        refused = np.zeros(table.num_rows, bool)
        for mask in bad.values():
            refused |= mask
        for i in np.flatnonzero(refused):
            row = table.slice(int(i), 1).to_pylist()[0]
            field = next(name for name, mask in bad.items() if mask[i])
            reason = f"field {field!r}: expected ISO timestamp, got a value that is not one"
            self.rejects.by_resource[self.resource].append((str(row.get(self.key)), reason, row))
        return table.filter(pa.array(~refused))


def _child_item(name: str, child: pa.Table) -> Iterator[Any]:
    if child.num_rows:
        yield dlt.mark.with_hints(child, child_hints(name), create_table_variant=True)


def normalized_table(name: str) -> str:
    """A table name as dlt's schema spells it (as given outside an extraction)."""
    schema = current_schema()
    return name if schema is None else schema.naming.normalize_tables_path(name)


def child_hints(table: str) -> dict:
    """A child table merges by its root row: the children of every root row in a load replace
    the stored ones (a root row's `_dlt_id` derives from its key, so it stays the same). It has
    no primary key: dlt would delete where the key *or* the root matches, a join DuckDB runs as
    a nested loop over the whole child table. Its `DELETED` rows
    (see `with_deletions`) take part in the delete and are left out of the insert (`hard_delete`).

    dlt keeps such tables as root tables: it cannot take nested tables from Arrow items (its
    extract refuses a nested table's variant hints after the first item). A child table made
    by dlt's normalizer from dict rows, before this step existed, is turned into one."""
    make_root_table(dlt.current.source_schema(), table, resource=table.split(SEPARATOR, 1)[0])
    return dlt.mark.make_hints(
        table_name=table,
        write_disposition={"disposition": "merge", "strategy": "delete-insert"},
        primary_key=[],
        merge_key="_dlt_root_id",
        columns={DELETED: {"data_type": "bool", "nullable": True, "hard_delete": True}},
    )
