"""The reconciliation assets in Dagster: keys, deps, metadata and checks against the truth."""

from __future__ import annotations

import dagster as dg

from assets.reconciliation import ASSETS, FLOWS
from tests.test_recon_world import canonical_warehouse


def test_assets_are_declared_in_the_reconciliation_group_with_their_reads():
    keys = {key for a in ASSETS for key in a.keys}
    names = [f.name for f in FLOWS] + ["source_completeness", "canonical_completeness"]
    assert keys == {dg.AssetKey(["recon", name]) for name in names}
    invoices = next(a for a in ASSETS if dg.AssetKey(["recon", "order_invoices"]) in a.keys)
    assert invoices.group_names_by_key[dg.AssetKey(["recon", "order_invoices"])] == "recon"
    assert set(invoices.asset_deps[dg.AssetKey(["recon", "order_invoices"])]) == {
        dg.AssetKey(["canonical", "sales_order"]),
        dg.AssetKey(["canonical", "invoice"]),
    }


def test_materialize_reports_findings_and_runs_threshold_checks(tmp_path_factory, sandbox_world):
    warehouse, _ = canonical_warehouse(sandbox_world, tmp_path_factory)
    truth = sandbox_world.truth["discrepancies"]

    result = dg.materialize(
        [a for a in ASSETS if a.key.path[-1] in ("order_invoices", "crm_customers")],
        resources={"warehouse": warehouse},
        # Tighten the missing-invoice threshold from 0.5% to 0.1% for this run: the planted 0.2% fails it.
        run_config={"ops": {"recon__order_invoices": {"config": {"max_share": {"invoice_missing": 0.001}}}}},
        raise_on_error=False,
    )
    # An ERROR-level check blocks: the findings are recorded, the step fails, what reads it waits.
    assert not result.success

    meta = result.asset_materializations_for_node("recon__order_invoices")[0].metadata
    assert meta["dagster/row_count"].value == sum(
        len(truth[k]) for k in ("invoice_missing", "invoice_duplicated", "invoice_amount_mismatch")
    )
    assert meta["findings"].value["invoice_missing"] == len(truth["invoice_missing"])
    summary = meta["summary"].value
    assert f"| invoice_missing | {len(truth['invoice_missing'])} |" in summary
    assert "**invoice_amount_mismatch** (sample)" in summary

    checks = {
        (e.asset_check_key.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()
    }
    missing = checks[("order_invoices", "invoice_missing")]
    assert not missing.passed and missing.severity == dg.AssetCheckSeverity.ERROR
    assert missing.metadata["max_share"].value == 0.001
    assert checks[("order_invoices", "invoice_duplicated")].passed  # 0.2% planted, default limit 0.5%
    mismatch = checks[("order_invoices", "invoice_amount_mismatch")]
    assert not mismatch.passed and mismatch.severity == dg.AssetCheckSeverity.WARN
    assert checks[("order_invoices", "invoice_without_order")].passed
    assert not checks[("crm_customers", "crm_duplicate_account")].passed
