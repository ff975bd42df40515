"""A Postgres table as Arrow tables, fast: `COPY (SELECT …) TO STDOUT` read through libpq and
parsed by pyarrow in streaming chunks (the next chunk is parsed while the COPY stream goes on).

dlt's default row-by-row SQLAlchemy backend is ~300x slower here (DESIGN.md). Every identifier
written into SQL is quoted: a column named `credit limit` or `order` reads as any other.
"""

from __future__ import annotations

import select
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import OperationalError, pq


class NoSuchTable(LookupError):
    """The database has no such table (or the connection's user cannot see it)."""


def read(
    url: str, namespace: str, table: str, where: str, params: list, only: list[str] | None, chunk_bytes: int
) -> Iterator[pa.Table]:
    """Arrow tables of `namespace.table` (its `only` columns, default all) filtered by `where`
    (a SQL clause with `%s` placeholders for `params`), about `chunk_bytes` of CSV each, typed as
    the database types the columns. `url` is a libpq connection string."""
    with psycopg.connect(url) as con, con.cursor() as cur:
        schema = _arrow_schema(cur, namespace, table)
        if only is not None:
            schema = pa.schema([field for field in schema if field.name in only])
        columns = ", ".join(_ident(name) for name in schema.names)
        query = psycopg.ClientCursor(con).mogrify(
            f"SELECT {columns} FROM {_ident(namespace)}.{_ident(table)}{where}", params
        )
        # One thread per chunk: the reader, this parser, the sink's writer and the database's
        # backend already share the cores; pyarrow's own pool cost ~50 % more CPU for the same parse.
        read = pacsv.ReadOptions(column_names=schema.names, use_threads=False)
        convert = pacsv.ConvertOptions(
            column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False
        )

        def parse(chunk: bytearray) -> pa.Table:
            return pacsv.read_csv(pa.BufferReader(chunk), read_options=read, convert_options=convert)

        # pyarrow parses (without the GIL) while the next chunk streams in: one chunk ahead at most.
        with ThreadPoolExecutor(1) as parser:
            ahead = None
            for chunk in _copy_out(con.pgconn, f"COPY ({query}) TO STDOUT (FORMAT csv)", chunk_bytes):
                if ahead is not None:
                    yield ahead.result()
                ahead = parser.submit(parse, chunk)
            if ahead is not None:
                yield ahead.result()


def _copy_out(pgconn, sql: str, size: int) -> Iterator[bytearray]:
    """The rows of `COPY … TO STDOUT` in chunks of about `size` bytes, each of whole rows (libpq
    hands over one row per call), read through libpq itself (psycopg's documented `pq` layer).

    psycopg's `Copy` iterator costs ~2.4x the CPU per row (a generator and a wait per row) and
    holds the GIL meanwhile, which starves the parser and the sink's writer thread; the row loop
    here is the one Python loop per row of the whole load, so it does nothing else. The first
    chunks are smaller (1/8, 1/4, 1/2 of `size`), so the parser and the sink start working while
    the rest is read instead of waiting for a whole chunk.
    """

    def wait() -> None:
        select.select([pgconn.socket], [], [])
        pgconn.consume_input()

    def result():
        while pgconn.is_busy():
            wait()
        return pgconn.get_result()

    def fail(status) -> OperationalError:
        while result() is not None:  # the connection stays usable (rollback, close)
            pass
        message = (status.error_message if status is not None else b"") or pgconn.error_message
        return OperationalError(f"COPY failed: {message.decode(errors='replace').strip()}")

    pgconn.send_query(sql.encode())
    while pgconn.flush():
        select.select([], [pgconn.socket], [])
    if (started := result()) is None or started.status != pq.ExecStatus.COPY_OUT:
        raise fail(started)
    get_row, chunk, filled, limit = pgconn.get_copy_data, bytearray(), 0, size >> 3
    while True:
        n, row = get_row(1)  # non-blocking: 0 = nothing buffered yet, -1 = the end
        if n > 0:
            chunk += row
            filled += n
            if filled >= limit:
                yield chunk
                chunk, filled, limit = bytearray(), 0, min(limit << 1, size)
        elif n == 0:
            wait()
        else:
            break
    if (final := result()) is None or final.status != pq.ExecStatus.COMMAND_OK:
        raise fail(final)
    while result() is not None:
        pass
    if chunk:
        yield chunk


_PG_ARROW = {
    "bigint": pa.int64(), "integer": pa.int32(), "smallint": pa.int16(), "double precision": pa.float64(),
    "real": pa.float32(), "boolean": pa.bool_(), "date": pa.date32(),
    "timestamp without time zone": pa.timestamp("us"), "timestamp with time zone": pa.timestamp("us", "UTC"),
}  # fmt: skip


def _arrow_schema(cur, namespace: str, table: str) -> pa.Schema:
    cur.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        [namespace, table],
    )
    fields = []
    for column, kind, precision, scale in cur.fetchall():
        if kind == "numeric":
            arrow = pa.decimal128(precision, scale) if precision else pa.float64()
        else:
            arrow = _PG_ARROW.get(kind, pa.string())
        fields.append(pa.field(column, arrow))
    if not fields:
        raise NoSuchTable(f"{namespace}.{table}")
    return pa.schema(fields)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
