"""Precision and recall against the sandbox truth: every planted discrepancy, nothing else."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from hub_sandbox.truth import RESOLVED_BY_WRITES
from hub_sandbox.world import build_world
from hub_sandbox.world_plants import PLANTS

from assets.reconciliation import FLOWS
from integration_hub.engine.recon_engine import FlowResult, run_flow
from integration_hub.warehouse import Warehouse
from tests.test_recon_world import canonical_warehouse, load_canonical

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


def expected_findings(truth: dict) -> set[tuple]:
    out = set()
    for kind, records in truth["discrepancies"].items():
        for rec in records:
            out.add(
                (kind, tuple(sorted((TRUTH_KEYS[k][0], TRUTH_KEYS[k][1].format(v)) for k, v in rec.items())))
            )
    return out


def reported_findings(warehouse: Warehouse, run_id: str, truth: dict) -> set[tuple]:
    """Findings keyed like the truth: only the key columns the truth names for that kind (both
    keys for a kind it names no record of, which then matches nothing expected)."""
    key_cols: dict[str, list[str]] = defaultdict(list)
    for kind, records in truth["discrepancies"].items():
        if records:
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


def reconcile(warehouse: Warehouse, run_id: str) -> dict[str, FlowResult]:
    return {flow.name: run_flow(warehouse, flow, run_id) for flow in FLOWS}


def assert_exactly_the_truth(warehouse: Warehouse, truth: dict, run_id: str) -> None:
    """The run's findings are the planted discrepancies, key for key, and everything else matched."""
    expected = expected_findings(truth)
    reported = reported_findings(warehouse, run_id, truth)
    assert set(truth["discrepancies"]) == set(PLANTS)
    # Every kind is planted; only the hub's writes may have resolved all of a kind.
    assert set(PLANTS) - set(RESOLVED_BY_WRITES) <= {kind for kind, _ in expected}
    assert reported - expected == set(), "unplanted findings (precision below 100%)"
    assert expected - reported == set(), "planted discrepancies not found (recall below 100%)"
    with warehouse.connect() as con:
        summary = {
            flow: (left, matched, json.loads(findings))
            for flow, left, matched, findings in con.rows(
                "SELECT flow, left_rows, matched, findings FROM recon.summary WHERE run_id = ?", [run_id]
            )
        }
    assert {flow.name for flow in FLOWS} <= set(summary)
    by_kind = {k: n for _, _, found in summary.values() for k, n in found.items() if n}
    assert by_kind == {k: len(v) for k, v in truth["discrepancies"].items() if v}
    # Everything else matched: look-alikes at exactly the tolerance, EUR invoices, identity traps.
    left, matched, _ = summary["order_invoices"]
    assert matched == left - by_kind.get("invoice_missing", 0) - by_kind["invoice_amount_mismatch"]


def test_every_planted_discrepancy_is_found_and_nothing_else(tmp_path_factory, sandbox_world):
    warehouse, _ = canonical_warehouse(sandbox_world, tmp_path_factory)
    reconcile(warehouse, "truth-0.01")
    assert_exactly_the_truth(warehouse, sandbox_world.truth, "truth-0.01")


@pytest.mark.slow
def test_precision_and_recall_hold_at_scale_0_1(tmp_path_factory):
    world = build_world(0.1, 42, tmp_path_factory.mktemp("tpch"))
    warehouse = Warehouse(path=str(tmp_path_factory.mktemp("wh") / "warehouse.duckdb"))
    load_canonical(warehouse, world)
    results = reconcile(warehouse, "truth-0.1")
    assert results["order_invoices"].left_rows > 70_000
    assert_exactly_the_truth(warehouse, world.truth, "truth-0.1")
