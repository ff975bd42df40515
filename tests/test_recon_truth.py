"""Precision and recall against the sandbox truth: every planted discrepancy, nothing else."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

from assets.reconciliation import FLOWS
from integration_hub.reconciliation import run_flow
from integration_hub.sandbox.world import PLANTS, build_world
from resources.warehouse import Warehouse
from tests.test_recon_world import load_canonical

# How a truth key names the finding: (column of recon results, format of the truth value).
TRUTH_KEYS = {
    "order_id": ("left_key", "SO-{:010d}"),
    "shop_order_id": ("right_key", "{}"),
    "invoice_id": ("left_key", "{}"),
    "payment_id": ("left_key", "{}"),
    "customer_id": ("left_key", "{}"),
    "crm_account_id": ("right_key", "{}"),
    "shop_customer_id": ("left_key", "{}"),
}


class FileWarehouse(Warehouse):
    """A DuckDB warehouse at an explicit path, so a test never touches $HUB_HOME."""

    path: str = ""

    @property
    def duckdb_path(self) -> Path:
        return Path(self.path)


def expected_findings(truth: dict) -> set[tuple]:
    out = set()
    for kind, records in truth["discrepancies"].items():
        for rec in records:
            out.add(
                (kind, tuple(sorted((TRUTH_KEYS[k][0], TRUTH_KEYS[k][1].format(v)) for k, v in rec.items())))
            )
    return out


def reported_findings(warehouse: Warehouse, run_id: str, truth: dict) -> set[tuple]:
    """Findings keyed like the truth: only the key columns the truth names for that kind."""
    key_cols: dict[str, list[str]] = defaultdict(list)
    for kind, records in truth["discrepancies"].items():
        key_cols[kind] = sorted(TRUTH_KEYS[k][0] for k in records[0])
    out = set()
    with warehouse.connect() as con:
        for flow in FLOWS:
            rows = con.rows(
                f"SELECT kind, left_key, right_key FROM recon.{flow.results_table} WHERE run_id = ?", [run_id]
            )
            for kind, left_key, right_key in rows:
                values = {"left_key": left_key, "right_key": right_key}
                cols = key_cols.get(kind, ["left_key", "right_key"])
                out.add((kind, tuple((c, values[c]) for c in cols)))
    return out


def reconcile_world(warehouse: Warehouse, scale: float, seed: int, cache: Path, run_id: str):
    world = build_world(scale, seed, cache)
    load_canonical(warehouse, world)
    results = {flow.name: run_flow(warehouse, flow, run_id) for flow in FLOWS}
    return world, results


@pytest.fixture(scope="session")
def tpch_cache(tmp_path_factory) -> Path:
    return Path(os.environ.get("HUB_TPCH_CACHE") or tmp_path_factory.mktemp("tpch"))


def test_every_planted_discrepancy_is_found_and_nothing_else(tmp_path, tpch_cache):
    warehouse = FileWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    world, results = reconcile_world(warehouse, 0.01, 42, tpch_cache, "run-1")

    expected = expected_findings(world.truth)
    reported = reported_findings(warehouse, "run-1", world.truth)
    assert set(PLANTS) == {kind for kind, _ in expected}
    assert reported - expected == set(), "unplanted findings (precision below 100%)"
    assert expected - reported == set(), "planted discrepancies not found (recall below 100%)"

    by_kind = {k: n for r in results.values() for k, n in r.findings.items() if n}
    assert by_kind == {k: len(v) for k, v in world.truth["discrepancies"].items()}
    # Look-alikes at exactly the tolerance, EUR invoices and identity traps are matches.
    orders = results["order_invoices"]
    fulfilled = world.truth["counts"]["erp.sales_orders"]  # upper bound, for the rate's sanity
    assert 0 < orders.matched < fulfilled
    assert (
        orders.matched == orders.left_rows - by_kind["invoice_missing"] - by_kind["invoice_amount_mismatch"]
    )
