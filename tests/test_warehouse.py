"""The warehouse picks its dialect from HUB_WAREHOUSE_URL, inside Dagster and out."""

import dagster as dg

from integration_hub.warehouse import Warehouse, warehouse_from_env
from resources import warehouse as warehouse_resource


def test_the_env_url_decides_the_dialect_outside_dagster_and_its_password_never_shows(monkeypatch):
    monkeypatch.setenv("HUB_WAREHOUSE_URL", "postgresql://hub:s3cret-pw@db.example:5432/wh")
    resource = warehouse_resource.warehouse_from_env()  # names the variable: tests/test_definitions.py

    @dg.asset
    def probe(warehouse: dg.ResourceParam[Warehouse]) -> str:
        return warehouse.dialect

    result = dg.materialize([probe], resources={"warehouse": resource})
    assert result.output_for_node("probe") == "postgres", "a run resolves the variable when it starts"
    warehouse = warehouse_from_env()
    assert warehouse.dialect == "postgres"
    assert "s3cret-pw" not in warehouse.display_name
    assert warehouse.display_name.startswith("postgresql://hub:***@db.example:5432/wh")


def test_no_url_means_the_embedded_duckdb_under_hub_home(monkeypatch, tmp_path):
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    warehouse = warehouse_from_env()
    assert warehouse.dialect == "duckdb"
    assert warehouse.duckdb_path == tmp_path / "warehouse.duckdb"
    with warehouse.connect() as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS answer")
    assert Warehouse().row_count("main", "t") == 1


def test_a_session_keeps_the_duckdb_database_open_for_every_connection_in_it(monkeypatch, tmp_path):
    """Inside a session, connections (any thread's) attach to the one open database: an instance
    setting made on one is seen by the next, and no close checkpoints the file (its WAL stays)
    until the session ends. Connections stay separate: a temporary table is its connection's."""
    import threading

    import pyarrow as pa

    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    warehouse = Warehouse()
    wal = warehouse.duckdb_path.with_name(warehouse.duckdb_path.name + ".wal")
    warehouse.write_arrow("audit_test", "rows", pa.table({"x": [1]}))
    assert not wal.exists(), "outside a session the close of the last connection checkpoints"
    with warehouse.session():
        with warehouse.connect() as con:
            con.execute("SET threads = 1")
            con.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS one")
        with warehouse.connect() as con:
            assert con.scalar("SELECT current_setting('threads')") == 1, "the same open database"
            assert con.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'scratch'") == 0
        other: list = []
        thread = threading.Thread(target=lambda: other.append(warehouse.row_count("audit_test", "rows")))
        thread.start()
        thread.join()
        assert other == [1], "another thread attaches to it too"
        warehouse.write_arrow("audit_test", "rows", pa.table({"x": [2]}))
        assert wal.exists(), "no checkpoint while the session holds the database"
    assert not wal.exists(), "the end of the session checkpoints once"
    with warehouse.connect() as con:
        assert con.scalar("SELECT current_setting('threads')") != 1, "a new database instance"
        assert con.scalar("SELECT count(*) FROM audit_test.rows") == 2, "writes in the session were kept"
