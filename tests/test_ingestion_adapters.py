"""Systems on their own: the registry, row contracts, and the ERP's Postgres COPY path."""

import datetime as dt
import json
import uuid

import dlt
import pyarrow as pa
import pytest

from integration_hub import systems
from integration_hub.systems import erp
from integration_hub.systems.kit.contract import DECIMAL_TEXT, INTEGER, NUMBER, TIMESTAMP, Contract, Rejects


def test_registry_discovers_every_system_module():
    found = systems.registry()
    assert sorted(found) == ["billing", "crm", "erp", "marketing", "payments", "shop", "support"]
    assert sorted(systems.sources()) == ["billing", "crm", "erp", "payments", "shop"]
    assert [s for s, m in systems.sources().items() if not m.incremental] == ["payments"]
    assert {(s.name, o) for s in found.values() for o in s.writers} == {
        ("crm", "accounts"),
        ("marketing", "contacts"),
        ("support", "orders"),
        ("billing", "invoices"),
    }


def test_a_descriptor_that_contradicts_itself_fails_with_what_to_fix():
    with pytest.raises(ValueError, match=r"system 'pos': it declares neither a source nor a writer"):
        systems.System(name="pos", description="Store tills.")
    with pytest.raises(ValueError, match=r"raw_keys name resources it does not have: \['till'\]"):
        systems.System(name="pos", description="Store tills.", source=lambda: None,
                       resources={"members": "Members."}, raw_keys={"till": "id"})  # fmt: skip


def test_contract_names_the_first_broken_field():
    contract = Contract(
        "id", {"id": INTEGER, "updated_at": TIMESTAMP, "total_price": DECIMAL_TEXT, "v": NUMBER.or_null}
    )
    good = {"id": 1, "updated_at": "2026-11-20T10:00:00Z", "total_price": "12.50", "v": None}
    assert contract.violation(good) is None
    assert (
        contract.violation({**good, "total_price": "n/a"})
        == "field 'total_price': expected decimal text, got 'n/a'"
    )
    assert contract.violation({k: v for k, v in good.items() if k != "id"}) == "missing field 'id'"
    assert contract.violation({**good, "id": True}) == "field 'id': expected integer, got True"
    assert contract.violation({**good, "v": "n/a"}) == "field 'v': expected number or null, got 'n/a'"


@pytest.mark.postgres
def test_erp_on_postgres_streams_typed_arrow_within_the_window(postgres_url, sandbox_world, tmp_path):
    import psycopg
    from hub_sandbox.seed import write_erp_postgres

    database = f"hub_erp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{database}"')
    url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    try:
        write_erp_postgres(sandbox_world, url, "adapter-test")
        truth = sandbox_world.tables["erp"]["sales_orders"]

        full = pa.concat_tables(erp.read_table(url, "sales_orders", None, None))
        assert full.num_rows == truth.num_rows
        assert full.schema.field("total_amount").type == pa.decimal128(15, 2)
        assert full.schema.field("updated_at").type == pa.timestamp("us", "UTC")
        assert sorted(full["order_id"].to_pylist()) == sorted(truth["order_id"].to_pylist())
        assert full.sort_by("order_id")["total_amount"].equals(
            truth.sort_by("order_id")["total_amount"].cast(pa.decimal128(15, 2))
        )

        start = dt.datetime.fromisoformat(sandbox_world.truth["anchor"]).replace(
            tzinfo=dt.UTC
        ) - dt.timedelta(days=3)
        end = start + dt.timedelta(days=1)
        window = pa.concat_tables(erp.read_table(url, "sales_orders", start, end))
        naive = truth["updated_at"].to_pylist()
        assert (
            window.num_rows
            == sum(start.replace(tzinfo=None) <= u < end.replace(tzinfo=None) for u in naive)
            > 0
        )

        # Through dlt, incrementally: a second run with no change loads nothing.
        pipeline = dlt.pipeline(
            "erp_pg",
            pipelines_dir=str(tmp_path),
            destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb")),
        )
        pipeline.run(erp.source(url))
        counts = pipeline.last_trace.last_normalize_info.row_counts
        assert {t: counts[t] for t in erp.PRIMARY_KEYS} == {
            t: sandbox_world.tables["erp"][t].num_rows for t in erp.PRIMARY_KEYS
        }
        pipeline.run(erp.source(url))
        assert not {
            t: n
            for t, n in pipeline.last_trace.last_normalize_info.row_counts.items()
            if t in erp.PRIMARY_KEYS
        }
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_settlement_file_lands_as_arrow_and_bad_lines_are_quarantined_with_reasons(tmp_path):
    from integration_hub.systems import payments

    folder = tmp_path / "landing"
    folder.mkdir()
    header = (  # Stripe's itemized payout reconciliation report, the columns the hub needs
        "automatic_payout_id,automatic_payout_effective_at,balance_transaction_id,currency,gross,fee,net,"
        "reporting_category,payment_metadata[payment_id]\n"
    )
    good = [
        f"po_1,2026-11-12 00:00:00,txn_{i:04d},usd,{i}.50,0.10,{i}.40,charge,py_{i:04d}\n"
        for i in range(1, 101)
    ]
    bad = [
        "po_1,2026-11-12 00:00:00,txn_bad,usd,n/a,0.10,1.00,charge,py_bad\n",  # wrong type
        '"",,txn_nodate,usd,1.00,0.10,0.90,charge,py_nodate\n',  # empty required field
        "po_1,2026-11-12 00:00:00,txn_short\n",  # too few fields
    ]
    (folder / "settlement_2026-11-12.csv").write_text(header + "".join(good[:50] + bad + good[50:]))
    rejects = Rejects()
    pipeline = dlt.pipeline(
        "settle", pipelines_dir=str(tmp_path), destination=dlt.destinations.duckdb(str(tmp_path / "w.duckdb"))
    )

    pipeline.run(payments.source(str(folder), rejects=rejects))

    assert pipeline.last_trace.last_normalize_info.row_counts["settlement"] == 100
    assert sorted((key, reason) for key, reason, _ in rejects.by_resource["settlement"]) == [
        ("txn_bad", "field 'gross': expected decimal text, got 'n/a'"),
        ("txn_nodate", "field 'automatic_payout_effective_at': expected text, got ''"),
        ("txn_short", "expected 9 fields, got 3"),
    ]
    with pipeline.sql_client() as client:
        rows = client.execute_sql(
            "SELECT count(*), count(DISTINCT _dlt_id), count(DISTINCT _dlt_load_id), min(gross),"
            " min(file_name) FROM settlement"
        )
    assert rows == [(100, 100, 1, "1.50", "settlement_2026-11-12.csv")]
    pipeline.run(payments.source(str(folder), rejects=Rejects()))
    assert "settlement" not in pipeline.last_trace.last_normalize_info.row_counts, "a loaded file is skipped"


# What a value carrying SQL looks like: it must land as data, never run.
INJECTIONS = ["'); drop table raw_shop.orders;--", '"); drop table raw_erp.customers;--']


def _odd_erp(url: str) -> list[tuple]:
    """An ERP `customers` table whose columns need quoting (`credit limit`, the keyword `order`),
    with a value carrying SQL; returns its rows (customer_id, credit limit, order)."""
    rows = [(1, 1500.5, INJECTIONS[0]), (2, 0.25, "gold"), (3, None, INJECTIONS[1])]
    ddl = (
        'CREATE TABLE {t} (customer_id BIGINT PRIMARY KEY, "credit limit" NUMERIC(15, 2), "order" TEXT, '
        "updated_at TIMESTAMP)"
    )
    insert = 'INSERT INTO {t} (customer_id, "credit limit", "order", updated_at) VALUES ({m}, {m}, {m}, {m})'
    stamped = [(*row, "2026-11-20 10:00:00") for row in rows]
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
            con.execute(ddl.format(t="customers"))
            con.executemany(insert.format(t="customers", m="?"), stamped)
    else:
        import psycopg

        with psycopg.connect(url) as con:
            con.execute("DROP SCHEMA IF EXISTS erp CASCADE")
            con.execute("CREATE SCHEMA erp")
            con.execute(ddl.format(t="erp.customers"))
            con.cursor().executemany(insert.format(t="erp.customers", m="%s"), stamped)
    return rows


def _change_erp(url: str) -> None:
    """Customer 2's credit limit changes (a later `updated_at`), filtered by the cursor's WHERE."""
    sql = "UPDATE {t} SET \"credit limit\" = 99.75, updated_at = '2026-11-21 10:00:00' WHERE customer_id = 2"
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url.removeprefix("sqlite:///")) as con:
            con.execute(sql.format(t="customers"))
    else:
        import psycopg

        with psycopg.connect(url) as con:
            con.execute(sql.format(t="erp.customers"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def erp_url(request, tmp_path):
    """An empty ERP database: a SQLite file, or a fresh Postgres database (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'erp.sqlite'}"
        return
    import psycopg

    postgres_url = request.getfixturevalue("postgres_url")
    database = f"hub_erp_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{database}"')
    yield postgres_url.rsplit("/", 1)[0] + f"/{database}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.mark.parametrize("direct", [False, True], ids=["dlt", "arrow-sink"])
def test_erp_columns_that_need_quoting_load_and_values_stay_data(erp_url, direct, tmp_path, monkeypatch):
    from integration_hub.warehouse import Warehouse
    from integration_hub.warehouse.arrow_sink import DuckDBArrowSink

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    rows = _odd_erp(erp_url)
    warehouse = Warehouse()
    pipeline = dlt.pipeline(
        "erp_odd",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=warehouse.dlt_destination(),
        dataset_name="raw_erp",
    )

    sinks: list[DuckDBArrowSink] = []

    def load() -> list[tuple]:
        sink = DuckDBArrowSink(warehouse, "raw_erp") if direct else None
        sinks.extend([sink] if sink else [])
        pipeline.run(erp.source(erp_url, tables=["customers"], sink=sink))
        with warehouse.connect() as con:
            return con.rows(
                'SELECT customer_id, CAST(credit_limit AS DOUBLE), "order" FROM raw_erp.customers ORDER BY 1'
            )

    assert load() == rows
    _change_erp(erp_url)
    assert load() == [rows[0], (2, 99.75, "gold"), rows[2]]
    if direct:  # the rows went the direct way: appended, then the changed one upserted
        assert [(s.rows["customers"], s.modes["customers"]) for s in sinks] == [(3, "append"), (1, "upsert")]
    with warehouse.connect() as con:
        # dlt's column names, whichever path wrote the rows, and each row's load id
        columns = con.rows(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'raw_erp' "
            "AND table_name = 'customers'"
        )
        loads = con.rows(
            "SELECT count(DISTINCT _dlt_load_id), count(*) - count(_dlt_load_id) FROM raw_erp.customers"
        )
    assert {c for (c,) in columns} == {"customer_id", "credit_limit", "order", "updated_at", "_dlt_load_id"}
    assert loads == [(2, 0)], "every row names its load: the first's three, then the changed one's"


def test_a_rest_value_carrying_sql_lands_verbatim_and_runs_nothing(tmp_path, monkeypatch):
    from integration_hub.engine.quarantine import quarantine
    from integration_hub.warehouse import Warehouse
    from tests.shop_stub import ShopStub

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    warehouse = Warehouse()
    pipeline = dlt.pipeline(
        "shop_sql_values",
        pipelines_dir=str(tmp_path / "dlt"),
        destination=warehouse.dlt_destination(),
        dataset_name="raw_shop",
    )

    def tables() -> set[tuple[str, str]]:
        with warehouse.connect() as con:
            return set(con.rows("SELECT table_schema, table_name FROM information_schema.tables"))

    with ShopStub() as shop:
        shop.put("orders", id=1, updated_at="2026-11-20T10:00:00Z", total_price="1.00", note="plain",
                 customer={"email": "a@example.org"}, line_items=[{"sku": "A", "quantity": 1}])  # fmt: skip
        shop.put("customers", id=1, updated_at="2026-11-20T10:00:00Z", first_name="Ann")
        pipeline.run(shop.source())
        before = tables()
        assert {
            ("raw_shop", "orders"),
            ("raw_shop", "orders__line_items"),
            ("raw_shop", "customers"),
        } <= before

        for i, value in enumerate(INJECTIONS, start=2):
            # In a top-level field, a nested object's field, a line item and a customer's name.
            shop.put("orders", id=i, updated_at="2026-11-20T11:00:00Z", total_price="2.00", note=value,
                     customer={"email": value}, line_items=[{"sku": value, "quantity": 1}])  # fmt: skip
            shop.put("customers", id=i, updated_at="2026-11-20T11:00:00Z", first_name=value)
        # ... and in a field the contract refuses, which goes to quarantine with its reason.
        shop.put("orders", id=9, updated_at="2026-11-20T11:00:00Z", total_price=INJECTIONS[0], line_items=[])
        rejects = Rejects()
        pipeline.run(shop.source(rejects=rejects))
    quarantine(warehouse, "shop__orders", "run-1", rejects.by_resource["orders"])

    assert tables() >= before | {("quarantine", "shop__orders")}
    with warehouse.connect() as con:
        assert con.rows("SELECT id, note, customer__email FROM raw_shop.orders ORDER BY id") == [
            (1, "plain", "a@example.org"),
            *((i, v, v) for i, v in enumerate(INJECTIONS, start=2)),
        ]
        assert con.rows(
            "SELECT o.id, li.sku FROM raw_shop.orders__line_items AS li "
            "JOIN raw_shop.orders AS o ON o._dlt_id = li._dlt_parent_id ORDER BY 1"
        ) == [(1, "A"), *enumerate(INJECTIONS, start=2)]
        assert con.rows("SELECT id, first_name FROM raw_shop.customers ORDER BY id") == [
            (1, "Ann"),
            *enumerate(INJECTIONS, start=2),
        ]
        (key, reason, payload), *more = con.rows(
            "SELECT source_key, reason, payload FROM quarantine.shop__orders"
        )
    assert not more and key == "9"
    assert reason == f"field 'total_price': expected decimal text, got {INJECTIONS[0]!r}"
    assert json.loads(payload)["total_price"] == INJECTIONS[0]
