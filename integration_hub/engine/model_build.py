"""Building a model's table atomically: in full into a scratch table swapped in, or from its
changes merged by key (`engine.incremental` says which and what changed).

A failed or killed build leaves the table, its watermarks and its change log as they were:
the swap or the merge, and the bookkeeping, commit in one transaction; scratch tables of a
build that died before it are dropped by the next build of the same table.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pyarrow as pa

from integration_hub.engine import access, incremental
from integration_hub.engine.dependent_views import dependent_views
from integration_hub.engine.sql_models import (
    Key,
    SqlModel,
    SqlModelError,
    column_lineage,
    expand,
    set_utc,
    table_columns,
    to_dialect,
    upstream_schema,
)
from integration_hub.warehouse import Connection, Warehouse, literal, quote


@dataclass
class Built:
    """What a build produced, for metadata and the audit trail."""

    rows_built: int
    rows_rejected: int
    row_count: int
    columns: list[tuple[str, str]]
    lineage: dict[str, list[tuple[Key, str]]]  # output column -> (upstream table's key, column)
    incremental: bool = False
    reason: str = ""  # why it built in full, or "changes since the last build"
    keys_recomputed: int | None = None  # keys an incremental build recomputed
    keys_changed: int | None = None  # of those, the keys whose rows it changed (and logged)


Vet = Callable[[Connection, str, str], int]


def build(warehouse: Warehouse, model: SqlModel, vet: Vet | None = None, full: bool = False) -> Built:
    """Build `model`: in full into a scratch table swapped in, or (an incremental model with
    state) by recomputing its changed keys and merging them (`engine.incremental`).

    `vet(con, schema, scratch)` removes rejects from the scratch table and returns how many it
    rejected (it must have kept them somewhere, e.g. quarantine). `full` forces a full build.
    """
    warehouse.ensure_schema(model.layer)
    with warehouse.connect() as con, building(con, model.layer, model.name):
        set_utc(con)
        incremental.ensure_state(con)
        sql = expand(model.parsed.body, model.root, columns=lambda s, t: table_columns(con, s, t))
        refs = incremental.references(model.changed_keys) if model.changed_keys else []
        exists = bool(con.rows(TABLE_EXISTS, [model.layer, model.name]))
        win = incremental.window(
            con, model.table, refs, model.fingerprint, exists,
            full=full or not model.config.incremental, watch=model.hub_upstream,
        )  # fmt: skip
        if not model.config.incremental:
            win.reason = "the model is not incremental"
        try:
            if win.full:
                rows_built, rejected, keys, moved = *_build_full(con, model, sql, vet, win), None, None
            else:
                rows_built, rejected, keys, moved = _build_changes(con, model, sql, vet, win)
        except Exception as exc:
            reads = ", ".join("/".join(k) for k in model.upstream)
            raise SqlModelError(
                f"model {model.table} ({model.path.name}) failed: {exc}\n"
                f"It reads {reads}: materialize those first if one is missing, or fix the SQL file."
            ) from exc
        columns = table_columns(con, model.layer, model.name)
        row_count = int(con.scalar(f"SELECT count(*) FROM {quote(model.layer, model.name)}"))
        read_schema = upstream_schema(con, sql)
    return Built(
        rows_built, rejected, row_count, columns, column_lineage(sql, read_schema, columns),
        incremental=not win.full, reason=win.reason, keys_recomputed=keys, keys_changed=moved,
    )  # fmt: skip


TABLE_EXISTS = "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?"


def _build_full(con: Connection, model: SqlModel, sql: str, vet: Vet | None, win) -> tuple[int, int]:
    scratch = _scratch_name(model.name)
    try:
        # Built, then vetted, in a transaction each: DuckDB commits a table that was created
        # and then deleted from (the vet's rejects) in one transaction far more slowly.
        with con.transaction():
            con.execute(f"CREATE TABLE {quote(model.layer, scratch)} AS {to_dialect(sql, con.dialect)}")
            rows_built = int(con.scalar(f"SELECT count(*) FROM {quote(model.layer, scratch)}"))
        with con.transaction():
            rejected = vet(con, model.layer, scratch) if vet else 0
        _swap(con, model.layer, scratch, model.name, then=lambda: _finish(con, model, win))
    except Exception:
        _drop(con, model.layer, scratch)
        raise
    return rows_built, rejected


def _build_changes(
    con: Connection, model: SqlModel, sql: str, vet: Vet | None, win
) -> tuple[int, int, int, int]:
    """Recompute the changed keys' rows into a scratch table, vet them, then in one transaction
    replace the rows of the keys whose rows differ, log those keys and move the watermarks.

    Only keys whose rows a build changed are logged: a key recomputed to the same rows (a source
    record touched without a change this model sees) costs its readers nothing.
    """
    layer, name = model.layer, model.name
    scratch, keys, moved = (_scratch_name(name, kind) for kind in ("", "k", "d"))
    names = ", ".join(quote(c) for c in model.config.unique_key)
    block = expand(win.expand(model.changed_keys), model.root, columns=lambda s, t: table_columns(con, s, t))

    def among(keys_table: str, alias: str = "m") -> str:
        match = " AND ".join(
            f"k.{quote(c)} IS NOT DISTINCT FROM {alias}.{quote(c)}" for c in model.config.unique_key
        )
        return f"EXISTS (SELECT 1 FROM {quote(layer, keys_table)} AS k WHERE {match})"

    try:
        with con.transaction():
            con.execute(
                f"CREATE TABLE {quote(layer, keys)} AS SELECT DISTINCT {names} FROM "
                f"({to_dialect(block, con.dialect)}) AS k"
            )
            con.execute(
                f"CREATE TABLE {quote(layer, scratch)} AS SELECT m.* FROM ({to_dialect(sql, con.dialect)}) AS m "
                f"WHERE {among(keys)}"
            )
            n_keys = int(con.scalar(f"SELECT count(*) FROM {quote(layer, keys)}"))
            rows_built = int(con.scalar(f"SELECT count(*) FROM {quote(layer, scratch)}"))
        with con.transaction():
            rejected = vet(con, layer, scratch) if vet else 0
        columns = ", ".join(quote(c) for c, _ in table_columns(con, layer, name))
        target, new = quote(layer, name), quote(layer, scratch)
        old = f"SELECT {columns} FROM {target} AS m WHERE {among(keys)}"
        with con.transaction():
            # EXCEPT ALL compares whole rows, NULLs equal: the keys with a row added, gone or changed.
            con.execute(
                f"CREATE TABLE {quote(layer, moved)} AS SELECT DISTINCT {names} FROM ("
                f"(SELECT {columns} FROM {new} EXCEPT ALL {old}) UNION ALL "
                f"({old} EXCEPT ALL SELECT {columns} FROM {new})) AS d"
            )
            con.execute(f"DELETE FROM {target} AS m WHERE {among(moved)}")
            con.execute(
                f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {new} AS m WHERE {among(moved)}"
            )
            n_moved = int(con.scalar(f"SELECT count(*) FROM {quote(layer, moved)}"))
            _finish(con, model, win, keys_table=quote(layer, moved))
            for table in (scratch, keys, moved):
                con.execute(f"DROP TABLE {quote(layer, table)}")
    except Exception:
        for table in (scratch, keys, moved):
            _drop(con, layer, table)
        raise
    return rows_built, rejected, n_keys, n_moved


def _finish(con: Connection, model: SqlModel, win, keys_table: str | None = None) -> None:
    """Inside the build's last transaction: its number, its logged keys, its watermarks."""
    seq = incremental.next_seq(con)
    if keys_table is None and model.config.unique_key:  # its readers may ask for its changes
        keys = ", ".join(quote(c) for c in model.config.unique_key)
        keys_table = f"(SELECT {keys} FROM {quote(model.layer, model.name)} WHERE 1 = 0) AS none"
    if keys_table is not None:
        incremental.log_keys(con, model.layer, model.name, keys_table, seq)
    incremental.finish(con, model.table, model.fingerprint, seq, win)


def _swap(
    con: Connection, schema: str, scratch: str, table: str, then: Callable[[], None] | None = None
) -> None:
    """Replace `schema.table` by `schema.scratch` in one transaction: readers see old or new, never half.

    On Postgres the views that read the table (directly or through other views: analysts' and
    BI tools' views on canonical tables) would block the drop. They are dropped with it and
    created again on the new table in the same transaction, with their grants, comments and,
    for materialized views, indexes. A view the new table cannot serve (a column it reads is
    gone) fails the swap, which leaves the old table and every view as they were. DuckDB binds
    views by name when they are queried: nothing to do there.
    """
    with con.transaction():
        views = dependent_views(con, schema, table) if con.dialect == "postgres" else []
        con.execute(f"DROP TABLE IF EXISTS {quote(schema, table)}" + (" CASCADE" if views else ""))
        con.execute(f"ALTER TABLE {quote(schema, scratch)} RENAME TO {quote(table)}")
        if con.dialect == "postgres":  # the analyst's masked view follows the new columns (docs/security.md)
            views = access.views_after_swap(con, schema, table, views)
        for view in views:
            view.create(con)
        if then is not None:  # bookkeeping that must commit with the swap, or not at all
            then()


SCRATCH = "_build_{table}_"  # + 8 hex digits: one build's table before it is swapped in


def _scratch_name(table: str, kind: str = "") -> str:
    """A scratch table's name; `kind` (one letter, e.g. `k` for a build's changed keys) replaces a
    hex digit, so every scratch of the table has the leftover cleanup's shape."""
    return SCRATCH.format(table=table) + (kind + uuid.uuid4().hex)[:8]


@contextlib.contextmanager
def building(con: Connection, schema: str, table: str) -> Iterator[None]:
    """While a table is (re)built: the only build of it, with the scratch tables of builds that
    died before their swap (a killed process) dropped first, so they cannot pile up.

    DuckDB has one writer, so no other build runs meanwhile; on Postgres a session lock per table
    keeps a second build of the same table waiting, so a live build's scratch is never taken
    for a dead one's.
    """
    lock = f"hashtext({literal('hub.build:' + schema + '.' + table)})"
    if con.dialect == "postgres":
        con.execute(f"SELECT pg_advisory_lock({lock})")
        con.raw.commit()
    try:
        prefix = SCRATCH.format(table=table)
        leftovers = [
            name
            for (name,) in con.rows(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
            )
            if name.startswith(prefix) and len(name) == len(prefix) + 8
        ]
        for name in leftovers:
            _drop(con, schema, name)
        yield
    finally:
        if con.dialect == "postgres":
            con.raw.rollback()  # a failed statement leaves the session in an aborted transaction
            con.execute(f"SELECT pg_advisory_unlock({lock})")
            con.raw.commit()


def _drop(con: Connection, schema: str, scratch: str) -> None:
    """Drop the scratch table of a failed vet or swap (a failed build left none)."""
    with con.transaction():
        con.execute(f"DROP TABLE IF EXISTS {quote(schema, scratch)}")


def replace_table(warehouse: Warehouse, schema: str, table: str, data: pa.Table) -> int:
    """Atomically replace a table with Arrow data (written to a scratch table first)."""
    scratch = _scratch_name(table)
    warehouse.ensure_schema(schema)
    with warehouse.connect() as con, building(con, schema, table):
        warehouse.write_arrow(schema, scratch, data, mode="replace")
        try:
            _swap(con, schema, scratch, table)
        except Exception:
            _drop(con, schema, scratch)
            raise
    return data.num_rows
