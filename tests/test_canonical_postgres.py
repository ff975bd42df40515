"""The same SQL models, transpiled by sqlglot, build identical canonical tables on Postgres."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from canonical import MODELS
from resources.warehouse import Warehouse
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
