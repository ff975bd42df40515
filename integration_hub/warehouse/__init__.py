"""The warehouse: embedded DuckDB by default, Postgres when `HUB_WAREHOUSE_URL` says so.

Every layer reads and writes the warehouse through this one client, so the same engine
runs on both; `resources.warehouse` hands it to Dagster as a resource. No Dagster here. Connections are short-lived: DuckDB lets one process write a
database file at a time, so holding a connection across a step would block every
other run. Opening the file while another process holds it is retried for a while,
then fails with an error that says what to do.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb  # imported with the code location, not by the first step that opens the warehouse
import pyarrow as pa
import pyarrow.csv as pacsv

from integration_hub import settings


class WarehouseLockedError(RuntimeError):
    pass


class WarehouseUnavailable(RuntimeError):
    """The Postgres warehouse refused or never answered a connection; the message names it
    (without its password) and what to do, in one line."""


class Connection:
    """A thin, dialect-neutral cursor: `execute`, `arrow`, `rows`, `scalar`, `df`.

    Parameters are written `?` in both dialects (translated to `%s` for psycopg).
    """

    def __init__(self, raw: Any, dialect: str):
        self.raw = raw
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence | None = None) -> None:
        if self.dialect == "duckdb":
            self.raw.execute(sql, params or [])
        else:
            with self.raw.cursor() as cur:
                cur.execute(_pg_params(sql, params), params)

    def rows(self, sql: str, params: Sequence | None = None) -> list[tuple]:
        if self.dialect == "duckdb":
            return self.raw.execute(sql, params or []).fetchall()
        with self.raw.cursor() as cur:
            cur.execute(_pg_params(sql, params), params)
            return cur.fetchall() if cur.description else []

    def lock_ddl(self) -> None:
        """Postgres: serialise `CREATE … IF NOT EXISTS` across sessions until this transaction ends.

        Two sessions creating the same schema or table at once can both find it missing, and
        the later one then fails on a unique index of the catalog (two Celery workers did).
        DuckDB has one writer, so nothing to do there.
        """
        if self.dialect == "postgres":
            self.execute("SELECT pg_advisory_xact_lock(hashtext('integration_hub.ddl'))")

    def scalar(self, sql: str, params: Sequence | None = None) -> Any:
        rows = self.rows(sql, params)
        return rows[0][0] if rows else None

    def arrow(self, sql: str, params: Sequence | None = None) -> pa.Table:
        if self.dialect == "duckdb":
            if params:
                return self.raw.sql(sql, params=params).to_arrow_table()
            return self.raw.sql(sql).to_arrow_table()
        with self.raw.cursor() as cur:
            cur.execute(_pg_params(sql, params), params)
            names = [d.name for d in cur.description]
            data = cur.fetchall()
        return pa.table({n: [r[i] for r in data] for i, n in enumerate(names)})

    def df(self, sql: str, params: Sequence | None = None):
        return self.arrow(sql, params).to_pandas()

    def stage(self, name: str, table: pa.Table) -> None:
        """Make Arrow `table` queryable as `name` until the current transaction ends: DuckDB
        reads it in place; Postgres copies it into a temporary table dropped at commit."""
        if self.dialect == "duckdb":
            self.raw.register(name, table)
            return
        cols = ", ".join(f"{quote(f.name)} {_pg_type(f.type)}" for f in table.schema)
        with self.raw.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
            cur.execute(f"CREATE TEMP TABLE {name} ({cols}) ON COMMIT DROP")
            with cur.copy(f"COPY {name} FROM STDIN") as cp:
                for row in table.to_pylist():
                    cp.write_row(list(row.values()))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on both dialects: committed when the block ends, rolled back if it raises.

        DuckDB's Python connection autocommits each statement outside an explicit transaction;
        psycopg (autocommit off) is always in one, so the block ends it.
        """
        if self.dialect == "postgres":
            try:
                yield self
            except BaseException:
                self.raw.rollback()
                raise
            self.raw.commit()
            return
        self.execute("BEGIN TRANSACTION")
        try:
            yield self
        except BaseException:
            with contextlib.suppress(Exception):  # the error that got us here is the one to see
                self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")


def quote(*parts: str) -> str:
    """A (schema-)qualified identifier, each part double-quoted: `quote("raw_erp", "credit limit")`."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def literal(text: str) -> str:
    """A SQL string literal, in both dialects: `literal("it's")` is `'it''s'`."""
    return "'" + text.replace("'", "''") + "'"


class Catalog:
    """The warehouse's tables and columns as read at one moment (`Warehouse.catalog`), answering
    `table_exists` and `columns` as the warehouse does, without a connection per question."""

    def __init__(self, tables: dict[tuple[str, str], list[tuple[str, str]]]):
        self.tables = tables

    def table_exists(self, schema: str, table: str) -> bool:
        return (schema, table) in self.tables

    def columns(self, schema: str, table: str) -> list[tuple[str, str]]:
        return list(self.tables.get((schema, table), []))


class Warehouse:
    """Where raw, staging, canonical, recon, sync, audit and quarantine tables live.

    `url`: a Postgres URL; unset means DuckDB, at `path` when given, else at
    `$HUB_HOME/warehouse.duckdb` (read when the warehouse is used, not when it is made).
    """

    def __init__(self, url: str | None = None, path: str | Path | None = None):
        self.url = url or None
        self.path = Path(path) if path else None

    def __repr__(self) -> str:
        return f"Warehouse({self.display_name})"

    @property
    def dialect(self) -> str:
        url = self.url
        return "postgres" if url and url.startswith(("postgresql", "postgres")) else "duckdb"

    @property
    def resolved_url(self) -> str | None:
        return self.url

    @property
    def duckdb_path(self) -> Path:
        return self.path or settings.hub_home() / "warehouse.duckdb"

    @property
    def display_name(self) -> str:
        """Where the warehouse is, safe to log: a Postgres URL loses its password."""
        if self.dialect == "duckdb":
            return str(self.duckdb_path)
        from sqlalchemy.engine import make_url

        return make_url(self.resolved_url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def connect(self, lock_wait: float | None = None) -> Iterator[Connection]:
        """A short-lived connection; commits on success, rolls back on error.

        `lock_wait`: seconds to wait for DuckDB's file lock (default `HUB_WAREHOUSE_LOCK_WAIT`);
        a reader that must answer quickly (a sensor tick) waits less and hears `WarehouseLockedError`.
        """
        if self.dialect == "postgres":
            import psycopg

            try:
                raw = psycopg.connect(_libpq_url(self.resolved_url), autocommit=False)
            except psycopg.OperationalError as exc:
                reason = (str(exc).strip().splitlines() or ["no answer"])[0]
                raise WarehouseUnavailable(
                    f"cannot connect to the Postgres warehouse {self.display_name} ({reason}): start it, "
                    "or fix HUB_WAREHOUSE_URL (unset it to use the embedded DuckDB warehouse)"
                ) from exc
            with raw:
                yield Connection(raw, "postgres")
                raw.commit()
            return
        raw = _open_duckdb(self.duckdb_path, lock_wait)
        try:
            yield Connection(raw, "duckdb")
        finally:
            raw.close()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Keep the DuckDB database open until the block ends.

        Opening the file takes a while, and the close of its last connection checkpoints it: a
        step that opens and closes half a dozen connections (its own bookkeeping, dlt's state
        and load, the metadata) paid both each time. Inside a session every connection, this
        resource's or dlt's, on any thread, attaches to the open database and the checkpoint
        happens once, at the end (BENCHMARKS.md, "Extraction"). Connections stay
        separate (a temporary table is its connection's). DuckDB's file lock is held for the
        block, as the step's connections hold it anyway. Postgres: no change.
        """
        if self.dialect == "postgres":
            yield
            return
        keep = _open_duckdb(self.duckdb_path)
        try:
            yield
        finally:
            keep.close()

    def dlt_destination(self):
        """The dlt destination for this warehouse (DuckDB file or Postgres)."""
        import dlt

        if self.dialect == "duckdb":
            # Created here rather than by dlt, so the file is private from the start.
            if _private_directory(self.duckdb_path):
                _open_duckdb(self.duckdb_path).close()
            return dlt.destinations.duckdb(str(self.duckdb_path))
        from dlt.destinations.impl.postgres.configuration import PostgresCredentials

        credentials = PostgresCredentials(_libpq_url(self.resolved_url))
        # dlt insists on a password; a server with trust or peer auth ignores an empty one.
        credentials.password = credentials.password or ""
        return dlt.destinations.postgres(credentials=credentials)

    def ensure_schema(self, *schemas: str) -> None:
        with self.connect() as con:
            con.lock_ddl()
            for schema in schemas:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")

    def table_exists(self, schema: str, table: str) -> bool:
        with self.connect() as con:
            return bool(
                con.scalar(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
                    [schema, table],
                )
            )

    def columns(self, schema: str, table: str) -> list[tuple[str, str]]:
        """(name, type) of a table's columns, in order."""
        with self.connect() as con:
            return con.rows(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            )

    def catalog(self) -> Catalog:
        """Every table's columns, read in one query: for code that asks about many tables."""
        with self.connect() as con:
            rows = con.rows(
                "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                "ORDER BY table_schema, table_name, ordinal_position"
            )
        tables: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for schema, table, column, kind in rows:
            tables.setdefault((schema, table), []).append((column, kind))
        return Catalog(tables)

    def row_count(self, schema: str, table: str) -> int:
        with self.connect() as con:
            return int(con.scalar(f"SELECT count(*) FROM {quote(schema, table)}"))

    def write_arrow(self, schema: str, table: str, data: pa.Table, mode: str = "append") -> int:
        """Write an Arrow table (`append` or `replace`); returns rows written."""
        self.ensure_schema(schema)
        qualified = quote(schema, table)
        with self.connect() as con:
            if self.dialect == "duckdb":
                con.raw.register("_incoming", data)
                if mode == "replace":
                    con.execute(f"CREATE OR REPLACE TABLE {qualified} AS SELECT * FROM _incoming")
                else:
                    con.execute(f"CREATE TABLE IF NOT EXISTS {qualified} AS SELECT * FROM _incoming LIMIT 0")
                    con.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM _incoming")
                con.raw.unregister("_incoming")
                return data.num_rows
            _pg_write_arrow(con, schema, table, data, mode)
        return data.num_rows


def _pg_params(sql: str, params: Sequence | None) -> str:
    return sql.replace("?", "%s") if params else sql


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://").replace(
        "postgresql+psycopg2://", "postgresql://"
    )


def _private_directory(path: Path) -> bool:
    """Create the warehouse file's directory owner-only (0700) when it is missing; whether the
    file itself is still to be created (then `_make_private` closes it to others once it is)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return not path.exists()


def _make_private(path: Path) -> None:
    """The warehouse file the hub just created: owner read/write only (0600), before any row is in it."""
    if path.exists():
        path.chmod(0o600)


def _open_duckdb(path: Path, wait: float | None = None):
    new = _private_directory(path)
    wait = settings.warehouse_lock_wait() if wait is None else wait
    deadline = time.monotonic() + wait
    delay = 0.05
    while True:
        try:
            raw = duckdb.connect(str(path))
            if new:
                _make_private(path)
            return raw
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                if "lock" in str(exc).lower():
                    raise WarehouseLockedError(
                        f"The DuckDB warehouse {path} is held by another process for more than "
                        f"{wait:.0f}s. DuckDB allows one writer at a time: wait for the other run, "
                        "or use the Postgres profile (HUB_WAREHOUSE_URL) for concurrent runs."
                    ) from exc
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


_PG_TYPES = {
    "int8": "smallint", "int16": "smallint", "int32": "integer", "int64": "bigint",
    "double": "double precision", "float": "real", "bool": "boolean", "string": "text",
    "large_string": "text", "date32[day]": "date",
}  # fmt: skip


def _pg_type(t: pa.DataType) -> str:
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    return _PG_TYPES.get(str(t), "text")


def _pg_write_arrow(con: Connection, schema: str, table: str, data: pa.Table, mode: str) -> None:
    cols = ", ".join(f"{quote(f.name)} {_pg_type(f.type)}" for f in data.schema)
    qualified = quote(schema, table)
    if mode == "replace":
        con.execute(f"DROP TABLE IF EXISTS {qualified}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {qualified} ({cols})")
    buf = io.BytesIO()
    pacsv.write_csv(data, buf, write_options=pacsv.WriteOptions(include_header=False))
    names = ", ".join(quote(n) for n in data.schema.names)
    with (
        con.raw.cursor() as cur,
        cur.copy(f"COPY {qualified} ({names}) FROM STDIN (FORMAT csv)") as cp,
    ):
        cp.write(buf.getvalue())


def warehouse_from_env() -> Warehouse:
    """The warehouse `HUB_WAREHOUSE_URL` names (read now), else the embedded DuckDB."""
    return Warehouse(url=settings.warehouse_url())
