"""The warehouse's roles, proved by logging in as each one on the real Postgres.

Roles are cluster-wide, so each test names its own (a random prefix) and drops them after; the
tables live in the test's own database (`pg_warehouse`).
"""

from __future__ import annotations

import json
import uuid

import psycopg
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from integration_hub.cli import app
from integration_hub.engine import access, audit
from integration_hub.engine.model_build import replace_table
from integration_hub.engine.pii import MASK
from integration_hub.engine.sync_engine.declaration import ensure_tables
from integration_hub.warehouse import Warehouse

pytestmark = pytest.mark.postgres

CUSTOMERS = pa.table(
    {
        "customer_id": ["cus_1", "cus_2"],
        "account_number": ["A-1", "A-2"],
        "name": ["Ada Lovelace", "Alan Turing"],
        "email": ["ada@example.com", None],
        "phone": ["+441234", "+449876"],
        "country_code": ["GB", "GB"],
        "segment": ["retail", "wholesale"],
    }
)


def as_role(warehouse: Warehouse, role: str) -> Warehouse:
    """The same database, logged in as `role` (the test server trusts local logins)."""
    head, db = warehouse.url.rsplit("/", 1)
    scheme, rest = head.split("://", 1)
    return Warehouse(url=f"{scheme}://{role}@{rest.split('@')[-1]}/{db}")


def denied(warehouse: Warehouse, sql: str) -> bool:
    """Whether Postgres refuses `sql` for lack of a privilege (any other error fails the test)."""
    try:
        with warehouse.connect() as con:
            con.execute(sql)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def rows(warehouse: Warehouse, sql: str) -> list[tuple]:
    with warehouse.connect() as con:
        return con.rows(sql)


@pytest.fixture
def roles(pg_warehouse):
    """Roles of this test only; dropped with everything they own or were granted."""
    named = access.Roles.prefixed(f"t{uuid.uuid4().hex[:8]}_")
    yield named
    names = ", ".join(f'"{r.name}"' for r in named)
    with psycopg.connect(pg_warehouse.url, autocommit=True) as con:
        for role in named:  # one at a time: one statement for all trips over their shared default ACLs
            con.execute(f'DROP OWNED BY "{role.name}" CASCADE')
    with psycopg.connect(pg_warehouse.url.rsplit("/", 1)[0] + "/test", autocommit=True) as con:
        con.execute(f"DROP ROLE IF EXISTS {names}")


@pytest.fixture
def world(pg_warehouse):
    """A small warehouse as the hub leaves it: canonical, recon, raw, audit, the changelog, quarantine."""
    wh = pg_warehouse
    replace_table(wh, "canonical", "customer", CUSTOMERS)
    replace_table(
        wh, "canonical", "invoice", pa.table({"invoice_id": ["in_1"], "customer_email": ["ada@example.com"]})
    )
    replace_table(wh, "recon", "summary", pa.table({"flow": ["order_invoices"], "matched": [7]}))
    wh.write_arrow("raw_crm", "contacts", pa.table({"id": ["c1"], "email": ["ada@example.com"]}))
    wh.write_arrow("quarantine", "canonical_customer", pa.table({"reason": ["bad email"]}))
    audit.record(wh, audit.Movement("run-1", "canonical/customer", "hub", "transform", rows_in=2, rows_out=2))
    ensure_tables(wh)
    with wh.connect() as con:
        con.execute(
            "INSERT INTO sync.changelog (run_id, sync, key, operation, status) VALUES ('run-1', 'crm', 'k', 'upsert', 'ok')"
        )
    return wh


def test_each_role_reads_and_writes_only_what_it_should(world, roles):
    access.apply(world, roles)
    analyst, auditor, writer = (as_role(world, r.name) for r in (roles.analyst, roles.auditor, roles.writer))

    # The analyst: canonical and recon through masked views, personal data as the model flags it.
    seen = rows(
        analyst, "SELECT customer_id, name, email, phone, segment FROM analyst_canonical.customer ORDER BY 1"
    )
    assert seen == [("cus_1", MASK, MASK, MASK, "retail"), ("cus_2", MASK, None, MASK, "wholesale")]
    assert rows(analyst, "SELECT invoice_id, customer_email FROM analyst_canonical.invoice") == [
        ("in_1", MASK)
    ]
    assert rows(analyst, "SELECT flow, matched FROM analyst_recon.summary") == [("order_invoices", 7)]
    for table in ("canonical.customer", "recon.summary", "raw_crm.contacts", "audit.data_movement",
                  "sync.changelog", "quarantine.canonical_customer"):  # fmt: skip
        assert denied(analyst, f"SELECT * FROM {table}"), table
    assert denied(analyst, "INSERT INTO canonical.customer (customer_id) VALUES ('x')")
    assert denied(analyst, "UPDATE analyst_canonical.customer SET segment = 'x'")
    assert denied(analyst, "DELETE FROM analyst_recon.summary")
    assert denied(analyst, "CREATE TABLE canonical.mine (x int)")
    assert denied(analyst, "CREATE TABLE public.mine (x int)")
    assert denied(analyst, "CREATE SCHEMA mine")

    # The auditor: the audit schema and the changelog, nothing else, read only.
    assert rows(auditor, "SELECT run_id, asset, rows_out FROM audit.data_movement") == [
        ("run-1", "canonical/customer", 2)
    ]
    assert rows(auditor, "SELECT sync, key, status FROM sync.changelog") == [("crm", "k", "ok")]
    for table in ("analyst_canonical.customer", "canonical.customer", "raw_crm.contacts", "sync.dead_letter",
                  "quarantine.canonical_customer", "recon.summary"):  # fmt: skip
        assert denied(auditor, f"SELECT * FROM {table}"), table
    assert denied(auditor, "DELETE FROM audit.data_movement")
    assert denied(auditor, "INSERT INTO sync.changelog (run_id) VALUES ('forged')")

    # The writer: the hub's runs write every layer.
    with writer.connect() as con:
        con.execute("INSERT INTO canonical.customer (customer_id, name) VALUES ('cus_3', 'Grace Hopper')")
        con.execute("DELETE FROM audit.data_movement WHERE run_id = 'none'")
        con.execute("CREATE TABLE raw_crm.accounts (id text)")
        con.execute("CREATE SCHEMA raw_pos")
    assert rows(analyst, "SELECT name FROM analyst_canonical.customer WHERE customer_id = 'cus_3'") == [
        (MASK,)
    ]
    assert rows(world, "SELECT email FROM canonical.customer WHERE customer_id = 'cus_1'") == [
        ("ada@example.com",)
    ]


def test_apply_is_idempotent_and_takes_back_grants_beyond_it(world, roles):
    access.apply(world, roles)
    first = access.show(world, roles)
    with world.connect() as con:  # a grant made by hand, beyond the declared access
        con.execute(f'GRANT USAGE ON SCHEMA raw_crm TO "{roles.analyst.name}"')
        con.execute(f'GRANT SELECT ON raw_crm.contacts TO "{roles.analyst.name}"')
    assert rows(as_role(world, roles.analyst.name), "SELECT email FROM raw_crm.contacts") == [
        ("ada@example.com",)
    ]
    access.apply(world, roles)
    assert access.show(world, roles) == first
    assert denied(as_role(world, roles.analyst.name), "SELECT * FROM raw_crm.contacts")


def test_grants_survive_a_rebuild_and_cover_new_tables(world, roles):
    access.apply(world, roles)
    analyst, auditor, writer = (as_role(world, r.name) for r in (roles.analyst, roles.auditor, roles.writer))
    with writer.connect() as con:  # an analysts' view on top of theirs, made by the writer
        con.execute(
            "CREATE VIEW analyst_canonical.segments AS "
            "SELECT segment, count(*) AS customers FROM analyst_canonical.customer GROUP BY segment"
        )

    # A full rebuild as the hub does it (scratch table, swap in one transaction), run as the
    # writer, of a model that dropped `phone` and gained `loyalty_tier`.
    rebuilt = CUSTOMERS.slice(0, 1).drop_columns(["phone"]).append_column("loyalty_tier", pa.array(["gold"]))
    replace_table(writer, "canonical", "customer", rebuilt)
    assert rows(analyst, "SELECT customer_id, name, email, loyalty_tier FROM analyst_canonical.customer") == [
        ("cus_1", MASK, MASK, "gold")
    ]
    assert "phone" not in [c for c, _ in world.columns("analyst_canonical", "customer")]
    assert rows(analyst, "SELECT segment, customers FROM analyst_canonical.segments") == [("retail", 1)]
    assert denied(analyst, "SELECT * FROM canonical.customer")

    # A canonical table the hub builds for the first time is the analyst's at once, masked.
    replace_table(
        writer, "canonical", "contact", pa.table({"contact_id": ["k1"], "email": ["k@example.com"]})
    )
    assert rows(analyst, "SELECT contact_id, email FROM analyst_canonical.contact") == [("k1", MASK)]
    assert denied(analyst, "SELECT * FROM canonical.contact")

    # A table the writer adds to audit is the auditor's at once (default privileges).
    with writer.connect() as con:
        con.execute("CREATE TABLE audit.access_log (who text)")
        con.execute("INSERT INTO audit.access_log VALUES ('auditor-visible')")
        con.execute("CREATE TABLE recon.new_flow__results (flow text, left_key text)")
        con.execute("INSERT INTO recon.new_flow__results VALUES ('new_flow', 'k1')")
    assert rows(auditor, "SELECT who FROM audit.access_log") == [("auditor-visible",)]
    assert denied(analyst, "SELECT * FROM audit.access_log")

    # A new recon table (a new flow's findings) waits for the next `apply`.
    assert not world.table_exists("analyst_recon", "new_flow__results")
    access.apply(world, roles)
    assert rows(analyst, "SELECT flow, left_key FROM analyst_recon.new_flow__results") == [("new_flow", "k1")]


def test_cli_shows_who_reads_what_and_never_a_password(world, roles, monkeypatch):
    monkeypatch.setenv("HUB_ACCESS_ADMIN_URL", world.url)
    password = f"pw-{uuid.uuid4().hex}"
    for role in roles:
        monkeypatch.setenv(f"HUB_ACCESS_{role.kind.upper()}_ROLE", role.name)
    monkeypatch.setenv("HUB_ACCESS_ANALYST_PASSWORD", password)
    runner = CliRunner()
    applied = runner.invoke(app, ["access", "apply"])
    assert applied.exit_code == 0, applied.output
    shown = runner.invoke(app, ["access", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    assert password not in applied.output + shown.output
    by_kind = {entry["kind"]: entry for entry in json.loads(shown.output)}
    analyst, auditor, writer = by_kind["analyst"], by_kind["auditor"], by_kind["writer"]
    assert analyst["read"] == {"analyst_canonical": ["customer", "invoice"], "analyst_recon": ["summary"]}
    assert analyst["masked"]["analyst_canonical.customer"] == ["email", "name", "phone"]
    assert analyst["masked"]["analyst_canonical.invoice"] == ["customer_email"]
    assert auditor["read"] == {"audit": ["data_movement"], "sync": ["changelog"]}
    assert analyst["write"] == auditor["write"] == {}
    assert writer["write"]["canonical"] == ["customer", "invoice"] and "raw_crm" in writer["write"]
    assert all(entry["login"] for entry in by_kind.values())
    with world.connect() as con:  # stored as a SCRAM verifier, never as sent
        stored = con.scalar("SELECT rolpassword FROM pg_authid WHERE rolname = ?", [roles.analyst.name])
    assert stored.startswith("SCRAM-SHA-256$") and password not in stored
    table = runner.invoke(app, ["access", "show"])
    assert table.exit_code == 0 and roles.auditor.name in table.output


def test_a_superuser_is_never_taken_as_a_hub_role(world):
    with pytest.raises(access.AccessError, match="superuser"):
        access.apply(
            world, access.Roles(access.Role("writer", "postgres"), *list(access.Roles.prefixed("x_"))[1:])
        )
