"""The same SQL models, transpiled by sqlglot, build identical canonical tables on Postgres."""

from __future__ import annotations

import uuid

import psycopg
import pyarrow as pa
import pytest

from canonical import MODELS
from integration_hub.engine import model_build, sql_models
from integration_hub.engine.model_build import replace_table
from integration_hub.warehouse import Warehouse
from tests.raw_world import load_raw_world, materialize_transforms


@pytest.fixture
def postgres_warehouse(postgres_url):
    """A private database, so parallel runs and other engineers' tests never share tables."""
    name = f"hub_canonical_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield Warehouse(url=postgres_url.rsplit("/", 1)[0] + "/" + name)
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table(warehouse: Warehouse, entity: str) -> tuple[list[str], list[tuple]]:
    """Columns and rows, sorted in Python: the two databases may collate text differently."""
    with warehouse.connect() as con:
        columns = [n for n, _ in warehouse.columns("canonical", entity)]
        rows = con.rows(f'SELECT * FROM canonical."{entity}"')
    return columns, sorted(rows, key=lambda r: tuple(str(v) for v in r))


@pytest.mark.postgres
def test_postgres_builds_the_same_canonical_tables_as_duckdb(
    postgres_warehouse, sandbox_world, canonical_world
):
    load_raw_world(postgres_warehouse, sandbox_world)
    result = materialize_transforms(postgres_warehouse)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    duck, _ = canonical_world
    for entity in MODELS:
        pg_columns, pg_rows = table(postgres_warehouse, entity)
        duck_columns, duck_rows = table(duck, entity)
        assert pg_columns == duck_columns, entity
        assert len(pg_rows) == len(duck_rows) > 0, entity
        assert pg_rows == duck_rows, entity


@pytest.mark.postgres
def test_a_rebuild_keeps_the_views_that_read_the_table(postgres_warehouse):
    """Analysts' views on a canonical table survive its rebuild, grants and all; a view the new
    table cannot serve fails the rebuild and leaves the old table and views in place."""
    wh, role = postgres_warehouse, f"hub_reader_{uuid.uuid4().hex[:8]}"
    replace_table(wh, "canonical", "widgets", pa.table({"id": [1, 2], "name": ["a", "b"]}))
    with wh.connect() as con:
        con.execute(f'CREATE ROLE "{role}"')
        con.execute("CREATE SCHEMA reporting")
        con.execute(
            "CREATE VIEW canonical.widget_names AS SELECT id, upper(name) AS name FROM canonical.widgets"
        )
        con.execute("CREATE VIEW reporting.widget_count AS SELECT count(*) AS n FROM canonical.widget_names")
        con.execute("CREATE MATERIALIZED VIEW reporting.widget_ids AS SELECT id FROM canonical.widgets")
        con.execute("CREATE INDEX widget_ids_id ON reporting.widget_ids (id)")
        con.execute(f'GRANT SELECT ON canonical.widget_names TO "{role}"')
        con.execute("COMMENT ON VIEW canonical.widget_names IS 'names for the sales deck'")
    try:
        new = pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"], "colour": ["red", "blue", "green"]})
        replace_table(wh, "canonical", "widgets", new)
        with wh.connect() as con:
            assert sorted(con.rows("SELECT id, name FROM canonical.widget_names")) == [
                (1, "A"),
                (2, "B"),
                (3, "C"),
            ]
            assert con.scalar("SELECT n FROM reporting.widget_count") == 3
            assert con.scalar("SELECT count(*) FROM reporting.widget_ids") == 3
            assert con.scalar("SELECT count(*) FROM pg_indexes WHERE indexname = 'widget_ids_id'") == 1
            assert con.scalar(f"SELECT has_table_privilege('{role}', 'canonical.widget_names', 'SELECT')")
            assert (
                con.scalar("SELECT obj_description('canonical.widget_names'::regclass, 'pg_class')")
                == "names for the sales deck"
            )

        with pytest.raises(
            RuntimeError,
            match=r"the view canonical\.widget_names,.*cannot be created again.*widgets\.name does not exist",
        ):
            replace_table(wh, "canonical", "widgets", pa.table({"id": [9]}))  # `name` is gone
        with wh.connect() as con:
            assert con.scalar("SELECT count(*) FROM canonical.widgets") == 3
            assert con.scalar("SELECT n FROM reporting.widget_count") == 3
            assert con.scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE '_build_widgets_%'") == 0
    finally:
        with wh.connect() as con:
            con.execute("DROP SCHEMA reporting CASCADE")
            con.execute("DROP VIEW canonical.widget_names")
            con.execute(f'DROP ROLE "{role}"')


@pytest.mark.postgres
def test_a_failed_build_leaves_the_previous_table_whole_on_postgres(postgres_warehouse, tmp_path):
    """A broken model or a failing vet leaves no scratch table and the table as it was; a vet's
    deletions are committed with the build when it passes."""
    wh = postgres_warehouse
    replace_table(wh, "canonical", "widget_source", pa.table({"id": [1, 2, 3], "name": ["a", "b", "x"]}))
    (tmp_path / "canonical").mkdir()
    path = tmp_path / "canonical" / "widgets.sql"
    model = sql_models.SqlModel("canonical", "widgets", path, tmp_path)

    def drop_x(con, schema, table):
        con.execute(f"DELETE FROM {schema}.{table} WHERE name = 'x'")
        return 1

    def vet_that_fails(con, schema, table):
        drop_x(con, schema, table)
        raise RuntimeError("validation blew up")

    path.write_text("SELECT id, name FROM canonical.widget_source\n")
    built = model_build.build(wh, model, vet=drop_x)
    assert (built.rows_built, built.rows_rejected, built.row_count) == (3, 1, 2)
    with pytest.raises(sql_models.SqlModelError, match="validation blew up"):
        model_build.build(wh, sql_models.SqlModel("canonical", "widgets", path, tmp_path), vet=vet_that_fails)
    path.write_text("SELECT CAST(name AS INTEGER) AS id FROM canonical.widget_source\n")
    with pytest.raises(sql_models.SqlModelError, match=r"canonical\.widgets \(widgets\.sql\)"):
        model_build.build(wh, sql_models.SqlModel("canonical", "widgets", path, tmp_path))
    with wh.connect() as con:
        assert sorted(con.rows("SELECT id, name FROM canonical.widgets")) == [(1, "a"), (2, "b")]
        assert con.scalar("SELECT count(*) FROM pg_tables WHERE tablename LIKE '_build_%'") == 0
