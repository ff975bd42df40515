"""The direct Arrow load into DuckDB (`ingestion.DuckDBArrowSink`): append into an empty
table, upsert by key into a filled one, all or nothing, new source columns added."""

import pyarrow as pa
import pytest

from assets.ingestion import DuckDBArrowSink
from integration_hub.warehouse import Warehouse


def lines(keys: list[tuple[int, int]], qty: int, **extra) -> pa.Table:
    return pa.table(
        {"order_id": [k[0] for k in keys], "line_number": [k[1] for k in keys], "qty": [qty] * len(keys),
         **{name: [value] * len(keys) for name, value in extra.items()}}
    )  # fmt: skip


@pytest.fixture
def warehouse(monkeypatch, tmp_path) -> Warehouse:
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    return Warehouse()


def content(warehouse: Warehouse) -> list[tuple]:
    with warehouse.connect() as con:
        return con.rows("SELECT * FROM raw_erp.lines ORDER BY order_id, line_number")


def test_appends_into_a_new_table_then_upserts_by_composite_key(warehouse):
    sink = DuckDBArrowSink(warehouse, "raw_erp")
    key = ["order_id", "line_number"]
    sink.write("lines", key, iter([lines([(1, 1), (1, 2)], 1), lines([(2, 1)], 1)]))
    assert sink.modes["lines"] == "append" and sink.rows["lines"] == 3
    assert content(warehouse) == [(1, 1, 1), (1, 2, 1), (2, 1, 1)]
    with warehouse.connect() as con:
        nullable = con.rows(
            "SELECT column_name, is_nullable FROM information_schema.columns "
            "WHERE table_schema = 'raw_erp' AND table_name = 'lines' ORDER BY ordinal_position"
        )
    assert nullable == [("order_id", "NO"), ("line_number", "NO"), ("qty", "YES")], (
        "keys NOT NULL, as dlt makes them"
    )

    # (1, 2) and (2, 1) change, (3, 1) is new, (1, 1) is not in the batch: kept as it was.
    sink.write("lines", key, iter([lines([(1, 2), (3, 1)], 5), lines([(2, 1)], 7)]))
    assert sink.modes["lines"] == "upsert" and sink.rows["lines"] == 3
    assert content(warehouse) == [(1, 1, 1), (1, 2, 5), (2, 1, 7), (3, 1, 5)]


def test_a_failure_mid_stream_keeps_nothing_of_the_run(warehouse):
    sink = DuckDBArrowSink(warehouse, "raw_erp")
    sink.write("lines", ["order_id", "line_number"], iter([lines([(1, 1)], 1)]))

    def broken():
        yield lines([(1, 1), (2, 1)], 9)
        raise ConnectionError("the ERP went away")

    with pytest.raises(ConnectionError):
        sink.write("lines", ["order_id", "line_number"], broken())
    assert content(warehouse) == [(1, 1, 1)]


def test_a_new_source_column_is_added(warehouse):
    sink = DuckDBArrowSink(warehouse, "raw_erp")
    sink.write("lines", ["order_id", "line_number"], iter([lines([(1, 1)], 1)]))
    sink.write("lines", ["order_id", "line_number"], iter([lines([(2, 1)], 2, note="gift")]))
    assert content(warehouse) == [(1, 1, 1, None), (2, 1, 2, "gift")]


def test_the_streams_single_thread_setting_does_not_outlive_the_load(warehouse):
    """The sink streams with DuckDB's `threads = 1`, a setting of the database instance: every
    connection of the process shares it, so the steps after a load (in process) would run
    single-threaded unless the sink gives the default back, after a success and after a failure."""
    key = ["order_id", "line_number"]

    def broken():
        yield lines([(2, 1)], 9)
        raise ConnectionError("the ERP went away")

    with warehouse.connect() as con:  # held open: the instance (and its settings) outlives each load
        default = con.scalar("SELECT current_setting('threads')")
        if default == 1:
            pytest.skip("one core: DuckDB's default is one thread already")
        sink = DuckDBArrowSink(warehouse, "raw_erp")
        sink.write("lines", key, iter([lines([(1, 1)], 1)]))
        assert con.scalar("SELECT current_setting('threads')") == default
        with pytest.raises(ConnectionError):
            sink.write("lines", key, broken())
        assert con.scalar("SELECT current_setting('threads')") == default
