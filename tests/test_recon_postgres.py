"""The same flows, transpiled by sqlglot, find exactly the truth on Postgres."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from assets.reconciliation import completeness_flows
from integration_hub.engine.recon_engine import run_flow
from integration_hub.warehouse import Warehouse
from tests.test_recon_truth import assert_exactly_the_truth, reconcile
from tests.test_recon_world import load_canonical


@pytest.fixture
def postgres_warehouse(postgres_url):
    """A private database, so parallel runs and other engineers' tests never share tables."""
    name = f"hub_recon_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield Warehouse(url=postgres_url.rsplit("/", 1)[0] + "/" + name)
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_flows_find_exactly_the_truth_on_postgres(postgres_warehouse, sandbox_world):
    load_canonical(postgres_warehouse, sandbox_world)
    reconcile(postgres_warehouse, "run-1")
    assert_exactly_the_truth(postgres_warehouse, sandbox_world.truth, "run-1")


@pytest.mark.postgres
def test_raw_and_canonical_counts_agree_on_postgres(postgres_warehouse, sandbox_world):
    load_canonical(postgres_warehouse, sandbox_world)
    with postgres_warehouse.connect() as con:  # dlt lands settlement lines with their file's name
        con.execute(
            "ALTER TABLE raw_payments.settlement ADD COLUMN file_name VARCHAR DEFAULT 'settlement.csv'"
        )
    result = run_flow(postgres_warehouse, completeness_flows(postgres_warehouse)[1], "run-1")
    assert (result.left_rows, result.matched, result.total_findings) == (11, 8, 0)
