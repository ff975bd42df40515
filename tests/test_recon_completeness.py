"""Completeness: rows each source reports vs raw (+ quarantine) vs canonical (+ quarantine)."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import dagster as dg
import pyarrow as pa
import pytest

from assets import reconciliation
from assets.recon_flows import completeness_flows
from integration_hub.engine import audit
from integration_hub.engine.completeness import SOURCE_COUNTS, count_sources
from integration_hub.engine.quarantine import quarantine
from integration_hub.engine.recon_engine import run_flow
from integration_hub.warehouse import Warehouse
from resources import systems
from tests.test_recon_world import canonical_warehouse


@pytest.fixture
def warehouse(tmp_path, tmp_path_factory, sandbox_world) -> Warehouse:
    """A private copy of the world's raw and canonical tables; settlement lines as dlt lands them."""
    shared, _ = canonical_warehouse(sandbox_world, tmp_path_factory)
    shutil.copy(shared.duckdb_path, tmp_path / "warehouse.duckdb")
    copy = Warehouse(path=str(tmp_path / "warehouse.duckdb"))
    with copy.connect() as con:
        con.execute("DROP SCHEMA IF EXISTS recon CASCADE")
        con.execute("ALTER TABLE raw_payments.settlement ADD COLUMN file_name VARCHAR")
        con.execute(
            "UPDATE raw_payments.settlement SET file_name = 'settlement_' || left(automatic_payout_effective_at, 10) || '.csv'"
        )
    return copy


def findings(warehouse, flow_name: str, run_id: str) -> dict[str, tuple]:
    with warehouse.connect() as con:
        rows = con.rows(
            f"SELECT kind, coalesce(left_key, right_key), difference FROM recon.{flow_name}__results WHERE run_id = ?",
            [run_id],
        )
    return {key: (kind, diff) for kind, key, diff in rows}


def test_raw_and_canonical_agree_until_rows_go_missing_and_quarantine_accounts_for_them(warehouse):
    flow = completeness_flows(warehouse)[1]
    clean = run_flow(warehouse, flow, "clean")
    assert (clean.left_rows, clean.matched, clean.total_findings) == (11, 8, 0)  # 8 resources reach canonical

    with warehouse.connect() as con:
        lost = [
            r[0] for r in con.rows("SELECT invoice_id FROM canonical.invoice ORDER BY invoice_id LIMIT 5")
        ]
        con.execute(
            "DELETE FROM canonical.invoice WHERE invoice_id IN (SELECT invoice_id FROM canonical.invoice "
            "ORDER BY invoice_id LIMIT 5)"
        )
    run_flow(warehouse, completeness_flows(warehouse)[1], "lost")
    assert findings(warehouse, "canonical_completeness", "lost") == {
        "billing.invoices": ("rows_missing_in_canonical", -5.0)
    }

    quarantine(
        warehouse,
        "canonical_invoice",
        "build-1",
        [(k, "amount is negative", {"invoice_id": k}) for k in lost],
    )
    accounted = run_flow(warehouse, completeness_flows(warehouse)[1], "accounted")
    assert accounted.total_findings == 0


def test_sources_report_what_raw_holds_and_a_lost_page_is_found(warehouse, sandbox, monkeypatch):
    clients = {key: systems.client(system) for system, key in reconciliation.COUNTED.items()}
    asset = next(a for a in reconciliation.ASSETS if a.key == dg.AssetKey(["recon", "source_completeness"]))
    result = dg.materialize([asset], resources={"warehouse": warehouse, **clients})
    assert result.success
    meta = result.asset_materializations_for_node("recon__source_completeness")[0].metadata
    assert meta["matched"].value == 11 and meta["dagster/row_count"].value == 0
    with warehouse.connect() as con:
        counts = {
            f"{s}.{r}": n for s, r, n in con.rows("SELECT system, resource, rows FROM recon.source_counts")
        }
    assert counts == {k: v for k, v in sandbox.truth["counts"].items() if k != "shop.order_line_items"}

    # A page of shop orders never landed: three rows short, then found in quarantine.
    with warehouse.connect() as con:
        dropped = [r[0] for r in con.rows("SELECT id FROM raw_shop.orders ORDER BY id LIMIT 3")]
        con.execute(
            "DELETE FROM raw_shop.orders WHERE id IN (SELECT id FROM raw_shop.orders ORDER BY id LIMIT 3)"
        )
    run_flow(warehouse, completeness_flows(warehouse)[0], "short")
    assert findings(warehouse, "source_completeness", "short") == {
        "shop.orders": ("rows_missing_in_raw", -3.0)
    }
    quarantine(
        warehouse, "shop__orders", "load-1", [(k, "total_price is not a number", {"id": k}) for k in dropped]
    )
    # The latest load of shop orders refused them (and holds the cursor for them): accounted for.
    audit.record(warehouse, audit.Movement("load-1", "raw/shop/orders", "shop", "load", resource="orders"))
    assert run_flow(warehouse, completeness_flows(warehouse)[0], "quarantined").total_findings == 0
    # A later load that refuses nothing means they were read again and loaded: no longer accounted
    # for by the old refusals, so the three rows (still absent here) are missing again.
    audit.record(warehouse, audit.Movement("load-2", "raw/shop/orders", "shop", "load", resource="orders"))
    run_flow(warehouse, completeness_flows(warehouse)[0], "reloaded")
    assert findings(warehouse, "source_completeness", "reloaded") == {
        "shop.orders": ("rows_missing_in_raw", -3.0)
    }


def test_counts_are_snapshots_kept_over_time(warehouse):
    schema = SOURCE_COUNTS
    for day, rows in ((1, 10), (2, 12)):
        at = dt.datetime(2026, 11, day)
        warehouse.write_arrow(
            "recon",
            "source_counts",
            pa.Table.from_pylist(
                [{"counted_at": at, "system": "billing", "resource": "invoices", "rows": rows}], schema=schema
            ),
        )
    flow = completeness_flows(warehouse)[0]
    result = run_flow(warehouse, flow, "latest")
    # Only the latest snapshot is compared: 12 reported against the raw table's rows.
    with warehouse.connect() as con:
        raw = con.scalar("SELECT count(*) FROM raw_billing.invoices")
        summary = json.loads(con.scalar("SELECT findings FROM recon.summary WHERE run_id = 'latest'"))
    assert result.left_rows == 1 and summary["rows_extra_in_raw"] == 1
    assert findings(warehouse, "source_completeness", "latest")["billing.invoices"] == (
        "rows_extra_in_raw",
        raw - 12,
    )


def test_an_unreachable_source_fails_the_count_with_a_clear_error(make_sandbox, monkeypatch):
    box = make_sandbox(export=True)
    box.set_fault("shop", "outage")
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "1")  # counts retry as loads do: not here
    clients = {system: systems.client(system).source_kwargs() for system in reconciliation.COUNTED}
    with pytest.raises(
        RuntimeError, match=r"could not count shop's rows at https://127\.0\.0\.1:\d+: .*503"
    ) as err:
        count_sources(clients)
    assert clients["shop"]["api_key"] not in str(err.value)
