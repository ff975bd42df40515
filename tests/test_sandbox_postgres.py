"""The ERP in Postgres (`--erp-url`): same tables and rows as the SQLite ERP, and ticks apply to it."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from hub_sandbox import runner
from hub_sandbox.seed import is_seeded, write_world
from hub_sandbox.tick import run_tick

from tests.conftest import SCALE, SEED, free_port_base

pytestmark = pytest.mark.postgres


@pytest.fixture
def erp_database(postgres_url):
    """A throwaway database, so parallel runs and other tests never share schema `erp`."""
    import psycopg

    name = f"hub_sandbox_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield postgres_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_erp_in_postgres_holds_the_world_and_ticks(
    tmp_path, erp_database, sandbox_world, sandbox, monkeypatch
):
    import psycopg
    from hub_sandbox import tls

    from integration_hub import systems
    from integration_hub.systems import erp

    base = free_port_base()
    status = runner.start(tmp_path, base, 0.01, 42, erp_url=erp_database)
    try:
        assert status["world"]["erp_url"] == erp_database
        assert not (tmp_path / "sandbox" / "erp.sqlite").exists()
        with psycopg.connect(erp_database) as con:
            for name, table in sandbox_world.tables["erp"].items():
                assert con.execute(f"SELECT count(*) FROM erp.{name}").fetchone()[0] == table.num_rows
            row = con.execute("SELECT * FROM erp.sales_orders WHERE order_id = 1").fetchone()
            expected = sandbox_world.tables["erp"]["sales_orders"].slice(0, 1).to_pylist()[0]
            assert row == tuple(expected.values())
            assert isinstance(row[5], Decimal)
        assert (tmp_path / "sandbox" / "truth.json").read_text() == (
            sandbox.home / "sandbox" / "truth.json"
        ).read_text()

        report = run_tick(tmp_path, 0.01)
        with psycopg.connect(erp_database) as con:
            changed = con.execute(
                "SELECT count(*) FROM erp.sales_orders WHERE updated_at >= %s", [report["at"].rstrip("Z")]
            ).fetchone()[0]
        records = report["records"]["erp.sales_orders"]
        assert changed == records["new"] + records["changed"] == 300

        # The SuiteQL stand-in serves the Postgres ERP, ticks included.
        monkeypatch.setenv("HUB_CA_BUNDLE", str(tls.files(tmp_path).bundle))
        client = systems.get("erp").client_kwargs(
            f"https://127.0.0.1:{base + systems.get('erp').sandbox_port}"
        )
        assert erp.count(**client) == erp.count(erp_database)
        token = erp.suiteql.TokenAuth(**{k: v for k, v in client.items() if k != "url"})
        chunks = erp.read_table(client["url"], "sales_orders", report["at"], None, ["order_id"], token)
        assert sum(chunk.num_rows for chunk in chunks) == changed
    finally:
        runner.stop(tmp_path)


def test_a_postgres_erp_another_home_seeded_since_is_not_taken_for_this_world(
    tmp_path, erp_database, sandbox_world
):
    """Two homes pointing at one database: the second seeding replaces schema `erp`, so the
    first home no longer holds its world intact and its next `up` must seed again."""
    first, second = tmp_path / "first", tmp_path / "second"
    write_world(first, sandbox_world, erp_database)
    assert is_seeded(first, SCALE, SEED, erp_database)
    write_world(second, sandbox_world, erp_database)
    assert is_seeded(second, SCALE, SEED, erp_database)
    assert not is_seeded(first, SCALE, SEED, erp_database)
