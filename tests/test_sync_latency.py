"""Sync latency: each delivered record's source change time and confirmation in the changelog,
and the `latency_p95` check against the sync's target, over real sandbox destinations.

Each test writes, so each gets its own sandbox and warehouse (the `hub` fixture). The check's
test declares the support sync with a target of seconds and stamps the records it changes
with the time just before the push, so a slow destination shows in seconds, not minutes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import statistics

import dagster as dg
import pytest
from typer.testing import CliRunner

from assets import reverse_sync as layer
from assets.syncs import SYNCS
from integration_hub.cli import app
from integration_hub.engine import audit
from integration_hub.engine import sync_engine as rs
from integration_hub.engine.sync_engine import declaration
from integration_hub.warehouse import Warehouse
from tests.test_reverse_sync_e2e import copy_canonical

ORDER_CHANGED = """
    SELECT o.order_id, greatest(o.updated_at, c.updated_at) FROM canonical.sales_order o
    LEFT JOIN canonical.customer c ON c.customer_id = o.customer_id"""


@pytest.fixture
def hub(make_sandbox, canonical_world, monkeypatch):
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box = make_sandbox(export=True)
    warehouse = Warehouse()
    copy_canonical(canonical_world, warehouse)
    return box, warehouse


def changelog(warehouse: Warehouse, sync: str, run_id: str) -> dict[str, tuple]:
    with warehouse.connect() as con:
        rows = con.rows(
            "SELECT key, status, source_changed_at, confirmed_at, changed_at FROM sync.changelog "
            "WHERE sync = ? AND run_id = ?",
            [sync, run_id],
        )
    return {key: rest for key, *rest in rows}


def change_orders(warehouse: Warehouse, keys: list[str]) -> None:
    """What a source does: new content, stamped with the time it changed (now)."""
    with warehouse.connect() as con:
        con.execute(
            f"UPDATE canonical.sales_order SET total_amount = total_amount + 1, updated_at = ? "
            f"WHERE order_id IN ({', '.join('?' for _ in keys)})",
            [audit.now(), *keys],
        )


def test_the_changelog_carries_each_records_source_change_and_its_confirmation(hub):
    box, warehouse = hub
    sync = SYNCS["support_orders"]
    with warehouse.connect() as con:
        truth = {str(k): at for k, at in con.rows(ORDER_CHANGED)}
    assert sum(at is None for at in truth.values()) == 0  # every order carries a change time
    started = audit.now()
    result = rs.apply(sync, warehouse)
    assert result.delivered == len(truth) > 0 and result.failed == result.rejected == 0
    rows = changelog(warehouse, sync.name, result.run_id)
    assert set(rows) == set(truth)
    for key, (status, source_changed_at, confirmed_at, recorded_at) in rows.items():
        assert status == "delivered" and source_changed_at == truth[key]
        assert confirmed_at == recorded_at and started <= confirmed_at <= audit.now()
        assert confirmed_at >= source_changed_at

    # The change time is neither sent nor hashed: a source touching a record without changing
    # what the sync sends plans nothing.
    with warehouse.connect() as con:
        con.execute("UPDATE canonical.sales_order SET updated_at = ?", [audit.now()])
    again = rs.plan(sync, warehouse).counts
    assert (again["insert"], again["update"], again["unchanged"]) == (0, 0, len(truth))


def test_a_refused_record_keeps_its_change_time_and_no_confirmation(hub):
    box, warehouse = hub
    sync = SYNCS["marketing_contacts"]
    box.set_fault("marketing", "reject_writes", share=0.1)
    result = rs.apply(sync, warehouse)
    assert result.rejected > 0 and result.delivered > 0
    rows = changelog(warehouse, sync.name, result.run_id).values()
    refused = [r for r in rows if r[0] == "rejected"]
    assert len(refused) == result.rejected
    assert all(source is not None and confirmed is None for _, source, confirmed, _ in refused)
    delivered = [r for r in rows if r[0] == "delivered"]
    assert len(delivered) == result.delivered
    assert all(confirmed >= source for _, source, confirmed, _ in delivered)


def run_seconds(warehouse: Warehouse, run_id: str) -> list[float]:
    """Each delivered record's latency in a run, from its changelog row."""
    with warehouse.connect() as con:
        rows = con.rows(
            "SELECT source_changed_at, confirmed_at FROM sync.changelog WHERE run_id = ? AND status = 'delivered'",
            [run_id],
        )
    return sorted((confirmed - source).total_seconds() for source, confirmed in rows)


def percentiles(seconds: list[float]) -> tuple[float, float, float]:
    """(p50, p95, max), interpolated as SQL's percentile_cont does."""
    p50 = statistics.quantiles(seconds, n=2, method="inclusive")[0]
    return p50, statistics.quantiles(seconds, n=20, method="inclusive")[18], max(seconds)


def _latency_evaluation(sync, warehouse: Warehouse) -> dg.AssetCheckEvaluation:
    # The test changes canonical rows in place, not through model builds that log their keys:
    # the push plans every key, as the nightly's does.
    result = dg.materialize(
        [layer.sync_asset(sync)], resources={"warehouse": warehouse}, tags={layer.FULL_PLAN_TAG: "true"}
    )
    assert result.success
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == "latency_p95"]
    return evaluation


def test_the_latency_check_fails_while_the_destination_is_slow_and_passes_after(hub):
    box, warehouse = hub
    target = dt.timedelta(seconds=6)  # far from both: the slow run's ~14 s, a healthy run's ~1 s
    sync = dataclasses.replace(SYNCS["support_orders"], latency_target=target, batch_size=2, concurrency=1)
    baseline = rs.apply(SYNCS["support_orders"], warehouse)  # the first push: the world's change times
    assert baseline.delivered > 40 and baseline.failed == 0
    with warehouse.connect() as con:
        keys = [str(k) for (k,) in con.rows("SELECT order_id FROM canonical.sales_order ORDER BY order_id")]

    # 10 batches of 2 records, one at a time: a bulk update and its job poll each
    box.set_fault("support", "slow", delay=1.5)
    change_orders(warehouse, keys[:20])
    slow = _latency_evaluation(sync, warehouse)
    assert not slow.passed and slow.severity == dg.AssetCheckSeverity.WARN
    figures = {k: v.value for k, v in slow.metadata.items()}
    assert figures["records"] == 20 and figures["target_seconds"] == 6.0 and figures["p95_seconds"] > 6.0
    shown = (figures["p50_seconds"], figures["p95_seconds"], figures["max_seconds"])
    assert shown == pytest.approx(percentiles(run_seconds(warehouse, figures["run_id"])), abs=0.001)

    box.clear_faults("support")
    change_orders(warehouse, keys[20:40])
    recovered = _latency_evaluation(sync, warehouse)
    assert recovered.passed, recovered.metadata
    figures = {k: v.value for k, v in recovered.metadata.items()}
    assert figures["records"] == 20 and figures["p95_seconds"] <= 6.0
    with warehouse.connect() as con:  # the window is the latest run: the recovered one's 20 orders
        window = con.rows(
            "SELECT key FROM sync.changelog WHERE run_id = ? AND status = 'delivered'", [figures["run_id"]]
        )
    assert sorted(k for (k,) in window) == sorted(keys[20:40])

    cli = CliRunner().invoke(app, ["sync", "latency", "--sync", "support_orders", "--json"])
    assert cli.exit_code == 0, cli.output  # the declared sync's target is 20 minutes
    [shown] = json.loads(cli.output)
    assert (shown["records"], shown["p95_seconds"], shown["target_seconds"]) == (
        20,
        figures["p95_seconds"],
        1200.0,
    )


def test_an_earlier_changelog_gains_the_columns_and_keeps_its_rows(tmp_path):
    warehouse = Warehouse(path=str(tmp_path / "old.duckdb"))
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA sync")
        con.execute(
            "CREATE TABLE sync.changelog (run_id VARCHAR, sync VARCHAR, key VARCHAR, operation VARCHAR, "
            "status VARCHAR, error VARCHAR, changed_at TIMESTAMP)"
        )
        con.execute("INSERT INTO sync.changelog VALUES ('r1', 'support_orders', 'SO-1', 'insert', 'delivered', NULL, ?)",
                    [dt.datetime(2026, 1, 1)])  # fmt: skip
    declaration.ensure_tables(warehouse)
    declaration.ensure_tables(warehouse)  # again: nothing to add
    with warehouse.connect() as con:
        assert con.rows("SELECT key, source_changed_at, confirmed_at FROM sync.changelog") == [
            ("SO-1", None, None)
        ]
    # An old row has no change time: nothing measurable, so nothing to fail on.
    figures = rs.measure_latency(warehouse, SYNCS["support_orders"])
    assert (figures.records, figures.p95_seconds, figures.passed) == (0, None, True)


def test_a_latency_target_must_be_a_positive_duration():
    with pytest.raises(ValueError, match="latency_target must be a positive timedelta"):
        dataclasses.replace(SYNCS["support_orders"], latency_target=dt.timedelta(0))
    assert {s.name: s.latency_target.total_seconds() for s in SYNCS.values()} == {
        "crm_accounts": 3600.0, "marketing_contacts": 3600.0, "support_orders": 1200.0, "billing_invoices": 3600.0,
    }  # fmt: skip
    for s in SYNCS.values():  # declared, never sent, never hashed
        assert s.changed_at and s.changed_at not in s.mapping.values()


@pytest.mark.postgres
def test_latency_on_postgres_from_an_earlier_changelog(pg_warehouse, make_sandbox, canonical_world):
    warehouse = pg_warehouse
    make_sandbox(export=True)
    copy_canonical(canonical_world, warehouse)
    with warehouse.connect() as con:  # the changelog an earlier version created
        con.execute("CREATE SCHEMA sync")
        con.execute(
            "CREATE TABLE sync.changelog (run_id VARCHAR, sync VARCHAR, key VARCHAR, operation VARCHAR, "
            "status VARCHAR, error VARCHAR, changed_at TIMESTAMP)"
        )
    sync = SYNCS["billing_invoices"]
    result = rs.apply(sync, warehouse)
    assert result.delivered > 0 and result.failed == result.rejected == 0
    seconds = run_seconds(warehouse, result.run_id)
    assert len(seconds) == result.delivered
    figures = rs.measure_latency(warehouse, sync)
    assert (figures.run_id, figures.records) == (result.run_id, result.delivered)
    assert (figures.p50_seconds, figures.p95_seconds, figures.max_seconds) == pytest.approx(
        percentiles(seconds), abs=0.001
    )
