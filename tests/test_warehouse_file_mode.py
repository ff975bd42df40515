"""The embedded DuckDB warehouse is the owner's alone: the hub creates its file 0600 in a 0700 folder."""

from __future__ import annotations

import stat

import pyarrow as pa

from integration_hub.warehouse import Warehouse


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_warehouse_the_hub_creates_is_owner_only(tmp_path):
    path = tmp_path / "home" / "warehouse.duckdb"
    warehouse = Warehouse(path=path)
    warehouse.write_arrow("canonical", "customer", pa.table({"email": ["ada@example.com"]}))
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    assert warehouse.row_count("canonical", "customer") == 1


def test_dlt_gets_a_private_file_too_and_an_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "by_dlt" / "warehouse.duckdb"
    Warehouse(path=path).dlt_destination()
    assert (mode(path), mode(path.parent)) == (0o600, 0o700)
    path.chmod(0o640)  # the owner chose to share it with a group: the hub does not undo that
    with Warehouse(path=path).connect() as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")
    assert mode(path) == 0o640


def test_roles_need_postgres_and_the_cli_says_what_protects_the_file(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from integration_hub.cli import app

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("HUB_ACCESS_ADMIN_URL", raising=False)
    for command in ("apply", "show"):
        result = CliRunner().invoke(app, ["access", command])
        assert result.exit_code == 2, result.output
        assert "need the Postgres warehouse" in result.output and "file permissions" in result.output
