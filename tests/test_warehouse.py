"""The warehouse resource picks its dialect from HUB_WAREHOUSE_URL, inside Dagster and out."""

import dagster as dg

from resources.warehouse import Warehouse, warehouse_from_env


def test_the_env_url_decides_the_dialect_outside_dagster_and_its_password_never_shows(monkeypatch):
    monkeypatch.setenv("HUB_WAREHOUSE_URL", "postgresql://hub:s3cret-pw@db.example:5432/wh")
    warehouse = warehouse_from_env()
    assert isinstance(warehouse.url, dg.EnvVar), "the URL stays an EnvVar, so the UI never shows it"
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


def test_a_session_lends_one_duckdb_connection_to_every_connect_on_its_thread(monkeypatch, tmp_path):
    import threading

    import pyarrow as pa

    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    warehouse = Warehouse()
    with warehouse.session():
        with warehouse.connect() as con:  # a temporary table lives on its connection only
            con.execute("CREATE TEMP TABLE scratch AS SELECT 1 AS one")
        with warehouse.connect() as con:
            assert con.scalar("SELECT count(*) FROM scratch") == 1
        other: list = []
        thread = threading.Thread(target=lambda: other.append(warehouse.table_exists("temp", "scratch")))
        thread.start()
        thread.join()
        assert other == [False], "another thread opens a connection of its own"
        warehouse.write_arrow("audit_test", "rows", pa.table({"x": [1, 2]}))
    with warehouse.connect() as con:  # the session is over: a fresh connection, its temp table gone
        assert con.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'scratch'") == 0
        assert con.scalar("SELECT count(*) FROM audit_test.rows") == 2, "writes in the session were kept"
