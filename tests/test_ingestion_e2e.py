"""End to end: the sandbox's systems over real HTTP/SQL, real dlt, real Dagster, DuckDB and Postgres.

Every record lands exactly once (against the truth's counts), a second run loads nothing,
and after `tick` an incremental run loads exactly the records the tick changed.
"""

import datetime as dt
import uuid

import dagster as dg
import pytest

from integration_hub.warehouse import Warehouse

RAW_TABLES = [
    ("erp", "customers"), ("erp", "products"), ("erp", "sales_orders"), ("erp", "sales_order_lines"),
    ("crm", "accounts"), ("crm", "contacts"), ("shop", "orders"), ("shop", "customers"),
    ("billing", "invoices"), ("billing", "payments"), ("payments", "settlement"),
]  # fmt: skip


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def load_everything(
    instance: dg.DagsterInstance, files_changed: list | None = None, covered: dict | None = None
) -> dict[tuple[str, str], int]:
    """Materialize every raw asset at the live edge; rows loaded per (system, resource).

    The payments load's report of changed files (same name, other content: replaced) and of
    rejected ones goes to `files_changed`; the past partitions each live-edge load reported as
    covered go to `covered` ((system, resource) -> partition keys).
    """
    from assets import ingestion

    result = dg.materialize(
        ingestion.build_assets(),
        resources=ingestion.build_resources(),
        partition_key=today(),
        instance=instance,
    )
    assert result.success
    loaded = {}
    for event in result.get_asset_materialization_events():
        _, system, resource = event.asset_key.path
        if "covered_by_partition" in event.materialization.metadata:
            assert event.materialization.metadata["covered_by_partition"].value == today()
            if covered is not None:
                covered.setdefault((system, resource), []).append(event.materialization.partition)
            continue
        loaded[(system, resource)] = event.materialization.metadata["rows_loaded"].value
        if files_changed is not None and system == "payments":
            files_changed.extend(event.materialization.metadata["files_replaced"].value)
            files_changed.extend(event.materialization.metadata["files_rejected"].value)
    return loaded


def raw_counts(warehouse: Warehouse) -> dict[str, int]:
    with warehouse.connect() as con:
        counts = {f"{s}.{r}": con.scalar(f'SELECT count(*) FROM "raw_{s}"."{r}"') for s, r in RAW_TABLES}
        counts["shop.order_line_items"] = con.scalar('SELECT count(*) FROM "raw_shop"."orders__line_items"')
        duplicates = con.scalar(
            "SELECT (SELECT count(*) - count(DISTINCT id) FROM raw_shop.orders)"
            " + (SELECT count(*) - count(DISTINCT order_id) FROM raw_erp.sales_orders)"
            " + (SELECT count(*) - count(DISTINCT id) FROM raw_billing.invoices)"
            " + (SELECT count(*) - count(DISTINCT id) FROM raw_crm.accounts)"
        )
    assert duplicates == 0
    return counts


def expected_counts(truth: dict) -> dict[str, int]:
    return {
        k: v
        for k, v in truth["counts"].items()
        if k.split(".")[0] in {"erp", "crm", "shop", "billing", "payments"}
    }


def check_lifecycle(box, warehouse: Warehouse) -> None:
    from assets.ingestion import daily_partitions

    instance = dg.DagsterInstance.ephemeral()

    covered: dict = {}
    first = load_everything(instance, covered=covered)
    assert raw_counts(warehouse) == expected_counts(box.truth)
    assert first[("shop", "orders")] == box.truth["counts"]["shop.orders"]
    # The first load holds each source's whole history: every past day reads as materialized.
    past = [k for k in daily_partitions().get_partition_keys() if k < today()]
    incremental = {(s, r) for s, r in RAW_TABLES if s != "payments"}
    assert {k: sorted(v) for k, v in covered.items()} == dict.fromkeys(incremental, past)
    assert all(
        instance.get_materialized_partitions(dg.AssetKey(["raw", s, r])) >= {*past, today()}
        for s, r in incremental
    )

    covered = {}
    second = load_everything(instance, covered=covered)
    assert second == dict.fromkeys(second, 0), "a run with no source change loads nothing"
    assert covered == {}, "every past day was reported by the first load"

    landing = box.home / "landing" / "payments"
    before = {p.name: p.read_bytes() for p in landing.glob("*.csv")}
    tick = box.tick(0.01)["records"]
    reported: list[str] = []
    third = load_everything(instance, reported)
    changed = {tuple(k.split(".")): v["new"] + v["changed"] for k, v in tick.items()}
    # The tick's settlements arrive as a new file: its rows load, no delivered file changes.
    assert reported == []
    assert all(p.read_bytes() == before[p.name] for p in landing.glob("*.csv") if p.name in before)
    assert {k: third[k] for k in changed} == changed
    assert third[("erp", "products")] == 0
    with warehouse.connect() as con:
        audit = con.rows(
            "SELECT system, resource, count(*), sum(rows_out), sum(rows_rejected) FROM audit.data_movement "
            "WHERE direction = 'load' GROUP BY 1, 2"
        )
    assert {(s, r): (n, out, rej) for s, r, n, out, rej in audit} == {
        (s, r): (3, first[(s, r)] + third[(s, r)], 0) for s, r in RAW_TABLES
    }


def test_duckdb_lands_everything_once_then_nothing_then_exactly_the_tick(make_sandbox):
    box = make_sandbox(export=True)
    check_lifecycle(box, Warehouse())


@pytest.mark.postgres
def test_postgres_lands_everything_once_then_nothing_then_exactly_the_tick(
    make_sandbox, postgres_url, monkeypatch
):
    import psycopg

    database = f"hub_ingest_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{database}"')
    url = postgres_url.rsplit("/", 1)[0] + f"/{database}"
    try:
        box = make_sandbox(export=True)
        monkeypatch.setenv("HUB_WAREHOUSE_URL", url)
        check_lifecycle(box, Warehouse(url=url))
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
