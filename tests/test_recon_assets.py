"""The reconciliation assets in Dagster: keys, deps, metadata and checks against the truth."""

from __future__ import annotations

import dagster as dg

from assets.reconciliation import ASSETS, FLOWS
from tests.test_recon_world import canonical_warehouse


def test_assets_are_declared_in_the_reconciliation_group_with_their_reads():
    keys = {key for a in ASSETS for key in a.keys}
    names = [f.name for f in FLOWS] + ["source_completeness", "canonical_completeness", "report"]
    assert keys == {dg.AssetKey(["recon", name]) for name in names}
    report = next(a for a in ASSETS if a.key == dg.AssetKey(["recon", "report"]))
    assert set(report.asset_deps[report.key]) == {dg.AssetKey(["recon", n]) for n in names if n != "report"}
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
    duplicated = checks[("order_invoices", "invoice_duplicated")]  # 0.2% planted, an error above 0.5%
    assert not duplicated.passed and duplicated.severity == dg.AssetCheckSeverity.WARN
    mismatch = checks[("order_invoices", "invoice_amount_mismatch")]
    assert not mismatch.passed and mismatch.severity == dg.AssetCheckSeverity.WARN
    assert checks[("order_invoices", "invoice_without_order")].passed
    assert not checks[("crm_customers", "crm_duplicate_account")].passed


def test_the_report_is_an_asset_linked_from_every_flow_and_one_policy_judges_every_kind(
    tmp_path_factory, sandbox_world, monkeypatch
):
    """Any finding warns, value and keyed kinds alike; the key figures read without opening anything."""
    warehouse, _ = canonical_warehouse(sandbox_world, tmp_path_factory)
    truth = sandbox_world.truth["discrepancies"]
    home = tmp_path_factory.mktemp("report_home")
    monkeypatch.setenv("HUB_HOME", str(home))
    monkeypatch.setenv("HUB_UI_URL", "http://dagster.example:8080/")

    result = dg.materialize(
        [a for a in ASSETS if a.key.path[-1] in ("shop_orders", "report")], resources={"warehouse": warehouse}
    )
    assert result.success, "warnings only: nothing in the sandbox's shop orders stops a run"

    meta = result.asset_materializations_for_node("recon__shop_orders")[0].metadata
    status, missing = len(truth["shop_status_mismatch"]), len(truth["erp_order_missing_in_shop"])
    assert meta["findings/shop_status_mismatch"].value == status
    assert meta["findings/erp_order_missing_in_shop"].value == missing
    assert meta["match_rate_pct"].value == round(100 * meta["matched"].value / meta["compared"].value, 2)
    assert 90 < meta["match_rate_pct"].value < 100
    report_file = home / "reports" / "recon_report.html"
    assert meta["report"].value == str(report_file)
    assert meta["report_asset"].value == "http://dagster.example:8080/assets/recon/report"

    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    for kind in ("shop_status_mismatch", "erp_order_missing_in_shop"):
        assert not checks[kind].passed and checks[kind].severity == dg.AssetCheckSeverity.WARN, kind
    assert checks["shop_order_duplicated"].passed == (not truth.get("shop_order_duplicated"))

    report = result.asset_materializations_for_node("recon__report")[0].metadata
    assert report["report"].value == str(report_file)
    assert report["report_file_url"].value == report_file.as_uri()
    page = report_file.read_text(encoding="utf-8")
    assert "<td>shop_orders</td>" in page and f"{meta['match_rate_pct'].value:.2f}%" in page
    assert report["findings"].value >= status + missing


def test_an_error_still_writes_the_report_its_flows_link(tmp_path_factory, sandbox_world, monkeypatch):
    """A stop fails the flow's step before `recon/report` runs: the flow writes the report itself."""
    warehouse, _ = canonical_warehouse(sandbox_world, tmp_path_factory)
    home = tmp_path_factory.mktemp("report_home")
    monkeypatch.setenv("HUB_HOME", str(home))
    result = dg.materialize(
        [a for a in ASSETS if a.key.path[-1] in ("order_invoices", "report")],
        resources={"warehouse": warehouse},
        run_config={"ops": {"recon__order_invoices": {"config": {"max_share": {"invoice_missing": 0.001}}}}},
        raise_on_error=False,
    )
    assert not result.success
    assert not result.asset_materializations_for_node("recon__report")
    page = (home / "reports" / "recon_report.html").read_text(encoding="utf-8")
    assert "invoice_missing" in page
