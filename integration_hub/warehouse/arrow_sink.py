"""The direct Arrow load into a DuckDB warehouse: an adapter's chunks merged by primary key, all or nothing.

An adapter that reads Arrow (the ERP) can write its rows straight into a DuckDB raw table,
chunk by chunk while it reads, instead of through dlt's Parquet file, staging dataset and
MERGE (BENCHMARKS.md, "Extraction"). dlt still runs the pipeline around it: incremental,
cursor and state stay dlt's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Full, Queue
from typing import Any

import pyarrow as pa

from integration_hub.warehouse import Connection, Warehouse, quote


class DuckDBArrowSink:
    """Merges an adapter's Arrow chunks into a DuckDB raw table by primary key, all or nothing.

    One transaction and one streaming statement per table: a writer thread runs the statement
    over a RecordBatchReader fed with the chunks the caller iterates, so DuckDB inserts (on
    its threads, compressing row groups as it goes) while the next chunk is read, instead of
    one INSERT per chunk and a checkpoint at close. Into an absent or empty table the rows are
    appended: one source query returns each key once, and DuckDB's single writer keeps anyone
    else from filling the table meanwhile. Otherwise they are staged in a temporary table and
    replace the rows with their keys (delete, then insert: dlt's upsert).
    """

    def __init__(self, warehouse: Warehouse, dataset: str, on_rows: Callable[[int], None] | None = None):
        """`on_rows(n)` is told of each chunk handed to the writer (for progress lines)."""
        self.warehouse, self.dataset, self.on_rows = warehouse, dataset, on_rows or (lambda n: None)
        self.rows: dict[str, int] = {}
        self.modes: dict[str, str] = {}

    def write(self, table: str, primary_key: list[str], chunks: Iterable[pa.Table]) -> None:
        """Write `chunks` (iterated on the calling thread) into `dataset.table`."""
        chunks = iter(chunks)
        first = next(chunks, None)
        self.rows[table] = 0
        if first is None:
            return
        self.warehouse.ensure_schema(self.dataset)
        stream: Queue = Queue(2)
        with (
            self.warehouse.connect() as con,
            ThreadPoolExecutor(1, thread_name_prefix="arrow-sink") as writer,
        ):
            try:
                with con.transaction():
                    self._stream(con, writer, table, primary_key, first, chunks, stream)
            finally:  # after the transaction is settled: an aborted one takes no statement
                con.execute("RESET threads")

    def _stream(self, con, writer, table, primary_key, first, chunks, stream) -> None:
        exists = table in self._columns(con, table, tables=True)
        target = quote(self.dataset, table)
        append = not exists or not con.scalar(f"SELECT count(*) FROM (SELECT 1 FROM {target} LIMIT 1)")
        self.modes[table] = "append" if append else "upsert"
        if exists:
            self._add_new_columns(con, table, first.schema)
        reader = pa.RecordBatchReader.from_batches(first.schema, self._batches(table, first, stream))
        done = writer.submit(self._statement, con, table, primary_key, reader, exists, append)
        self.on_rows(first.num_rows)
        try:
            for chunk in chunks:
                _hand(stream, chunk, done)
                self.on_rows(chunk.num_rows)
            _hand(stream, None, done)
            done.result()
        except BaseException:
            while not done.done():  # the writer must stop, and be idle before the rollback
                with contextlib.suppress(Full):
                    stream.put(_FAILED, timeout=0.2)
            done.exception()
            raise  # the transaction rolls back

    def _batches(self, table: str, first: pa.Table, stream: Queue) -> Iterator[pa.RecordBatch]:
        """The chunks as record batches, on the writer's thread; None ends the stream."""
        chunk = first
        while chunk is not None:
            if chunk is _FAILED:
                raise RuntimeError("the source failed mid-stream")
            self.rows[table] += chunk.num_rows
            yield from chunk.to_batches()
            chunk = stream.get()

    def _statement(
        self,
        con: Connection,
        table: str,
        keys: list[str],
        reader: pa.RecordBatchReader,
        exists: bool,
        append: bool,
    ) -> None:
        target = quote(self.dataset, table)
        con.raw.register("_stream", reader)
        # The stream is read, parsed and written by three threads already: DuckDB's own second
        # thread only competes with them for the cores (BENCHMARKS.md, "Extraction"). The
        # setting is the database instance's (other connections of this process share it): `write`
        # resets it once the transaction is settled.
        con.execute("SET threads = 1")
        try:
            if not exists:
                con.execute(f"CREATE TABLE {target} AS SELECT * FROM _stream")
                for key in keys:  # as dlt declares a primary key's columns
                    con.execute(f"ALTER TABLE {target} ALTER COLUMN {quote(key)} SET NOT NULL")
            elif append:
                con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _stream")
            else:
                con.execute("CREATE TEMP TABLE _incoming AS SELECT * FROM _stream")
                con.execute("RESET threads")
                match = " AND ".join(f"{target}.{quote(k)} = _incoming.{quote(k)}" for k in keys)
                con.execute(f"DELETE FROM {target} USING _incoming WHERE {match}")
                con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM _incoming")
                con.execute("DROP TABLE _incoming")
        finally:
            con.raw.unregister("_stream")

    def _add_new_columns(self, con: Connection, table: str, schema: pa.Schema) -> None:
        """Columns new in the source are added, as dlt's schema evolution would."""
        have = self._columns(con, table)
        con.raw.register("_shape", schema.empty_table())
        try:
            for name, kind in con.rows(
                "SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM _shape)"
            ):
                if name not in have:
                    con.execute(f"ALTER TABLE {quote(self.dataset, table)} ADD COLUMN {quote(name)} {kind}")
        finally:
            con.raw.unregister("_shape")

    def _columns(self, con: Connection, table: str, tables: bool = False) -> set[str]:
        """The table's column names (or, with `tables`, the dataset's table names)."""
        kind, name = ("tables", "table_name") if tables else ("columns", "column_name")
        where = "table_schema = ?" + ("" if tables else " AND table_name = ?")
        params = [self.dataset] if tables else [self.dataset, table]
        return {
            found
            for (found,) in con.rows(f"SELECT {name} FROM information_schema.{kind} WHERE {where}", params)
        }


_FAILED = object()  # put on the stream when the caller's chunks fail, so the writer stops


def _hand(stream: Queue, item: Any, writer: Future) -> None:
    """Hand `item` to the writer, or raise its error if it stopped."""
    while True:
        if writer.done():
            writer.result()
            raise RuntimeError("the warehouse writer stopped before the stream ended")
        with contextlib.suppress(Full):
            stream.put(item, timeout=0.5)
            return
