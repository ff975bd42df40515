"""What the adapters need from dlt that dlt does not offer publicly: the one home of dlt internals.

Everything else in `systems/` uses dlt's documented API (`dlt.source`/`dlt.resource`,
`dlt.sources.incremental`, `dlt.current`, `dlt.mark`, `DltResource.add_yield_map`/`add_filter`,
the `dlt.sources.helpers` clients). Each function here says which internal it relies on, why no
public form does the job, and what would replace it; a dlt upgrade that breaks one breaks it here.
"""

from __future__ import annotations

import dlt
import numpy as np
import pyarrow as pa

# dlt raises this from `dlt.current.source_schema()` outside an extraction; it lives only in
# `dlt.extract.exceptions` (no public module re-exports it), and dlt offers no public way to ask
# whether an extraction is running. A public `dlt.current` accessor that returns None would replace it.
from dlt.extract.exceptions import CurrentSourceSchemaNotAvailable

# dlt's Arrow incremental numbers the rows it filters in a column of this name and drops it again
# (`dlt.extract.incremental.transform.ArrowIncremental._dlt_index`); given a table that carries
# it already, dlt uses it instead of numbering the rows itself.
INCREMENTAL_ROW_INDEX = "_dlt_index"
ROW = "_hub_row"  # a chunk's row numbers while dlt's incremental filters it (see `incremental_rows`)


def current_schema() -> dlt.Schema | None:
    """The schema of the source being extracted (as `dlt.current.source_schema()`), or None when
    called outside an extraction (a resource iterated on its own, a unit test)."""
    try:
        return dlt.current.source_schema()
    except CurrentSourceSchemaNotAvailable:
        return None


def make_root_table(schema: dlt.Schema, table: str, resource: str) -> None:
    """Turn `table`, if `schema` holds it as a nested (child) table, into a root table of `resource`,
    and drop the primary-key hint from its columns, in place.

    dlt's public schema API only merges hints (`Schema.update_table`, `apply_hints`,
    `dlt.mark.with_hints`): a merge never removes a table's `parent` nor a column's `primary_key`,
    so the table's entry in `Schema.tables` is edited directly. A public "drop hint" / "detach
    nested table" operation would replace this.
    """
    known = schema.tables.get(table)
    if known is None:
        return
    if known.pop("parent", None):
        known.setdefault("resource", resource)
    for column in known.get("columns", {}).values():
        column.pop("primary_key", None)


def incremental_rows(incremental, chunk: pa.Table, cursor: str, keys: list[str]) -> pa.Table | None:
    """`chunk` after dlt's incremental, called as its pipe step would be (same filter, cursor and
    boundary hashes), on the only columns it reads: the cursor and the primary key.

    `incremental` is the `dlt.sources.incremental` bound to the running resource. dlt documents
    it as a resource argument (its `last_value`, `end_value`), not as a callable: calling it is
    calling its pipe step, the way dlt's extract does, so the rows that skip dlt's extract (an
    Arrow sink) pass the same filter and move the same cursor. A public "filter these rows and
    advance the cursor" method on `Incremental` would replace this.

    Given the whole chunk, dlt copies every column through two filters (null cursors, start value)
    and numbers the rows from a Python `range` (any key given as a list), most of a large load's
    extract step. Here it filters a narrow table whose rows are already numbered (in dlt's own
    row-number column, `INCREMENTAL_ROW_INDEX`), and the chunk is taken only when it removed rows
    (at the start boundary).
    """
    rows = pa.array(np.arange(chunk.num_rows))
    values = chunk[cursor]
    narrow = pa.Table.from_arrays(
        [values, *(chunk[k] for k in keys), rows, rows],
        schema=pa.schema(
            [chunk.schema.field(cursor).with_nullable(values.null_count > 0),
             *(chunk.schema.field(k) for k in keys),
             pa.field(ROW, pa.int64()), pa.field(INCREMENTAL_ROW_INDEX, pa.int64())]
        ),
    )  # fmt: skip
    kept = incremental(narrow)
    if kept is None or not kept.num_rows:
        return None
    return chunk if kept.num_rows == chunk.num_rows else chunk.take(kept[ROW])
