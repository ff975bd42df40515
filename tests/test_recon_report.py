"""`hub recon report`: JSON and HTML from the kept history, and the charts render in Chromium."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assets.reconciliation import FLOWS
from integration_hub.cli import app
from integration_hub.engine.recon_engine import run_flow
from integration_hub.warehouse import Warehouse
from tests.test_recon_world import canonical_warehouse

CHROMIUM = "/usr/bin/chromium"
runner = CliRunner()


@pytest.fixture(scope="module")
def history_home(tmp_path_factory, sandbox_world) -> Path:
    """A HUB_HOME whose warehouse holds three nightly runs; the last lost five invoices."""
    shared, _ = canonical_warehouse(sandbox_world, tmp_path_factory)
    home = tmp_path_factory.mktemp("report_home")
    shutil.copy(shared.duckdb_path, home / "warehouse.duckdb")
    warehouse = Warehouse(path=str(home / "warehouse.duckdb"))
    with warehouse.connect() as con:
        con.execute("DROP SCHEMA IF EXISTS recon CASCADE")
    night = dt.datetime(2026, 11, 20, 2, 0)
    for n in range(3):
        if n == 2:
            with warehouse.connect() as con:
                con.execute(
                    "DELETE FROM canonical.invoice WHERE invoice_id IN "
                    "(SELECT invoice_id FROM canonical.invoice ORDER BY invoice_id LIMIT 5)"
                )
        for flow in FLOWS:
            run_flow(warehouse, flow, f"night-{n}", night + dt.timedelta(days=n))
    return home


def test_json_report_has_the_latest_state_and_the_history(history_home, sandbox_world, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(history_home))
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    result = runner.invoke(app, ["recon", "report", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    truth = sandbox_world.truth["discrepancies"]
    assert set(data["flows"]) == {f.name for f in FLOWS}
    invoices = data["flows"]["order_invoices"]
    assert invoices["run_id"] == "night-2"
    # The five invoices deleted before the last run are five more missing ones.
    assert invoices["findings"]["invoice_missing"] == len(truth["invoice_missing"]) + 5
    assert [r["run_id"] for r in data["history"]["order_invoices"]] == ["night-0", "night-1", "night-2"]
    rates = [r["match_rate"] for r in data["history"]["order_invoices"]]
    assert rates[0] == rates[1] > rates[2]
    assert len(invoices["differences"]) == len(truth["invoice_amount_mismatch"])
    assert all(d >= 1 or d <= -1 for d in invoices["differences"])  # planted mismatches are a dollar or more
    assert "password" not in result.output


def test_html_report_is_self_contained_with_three_charts(history_home, tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(history_home))
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["recon", "report", "--html", str(out)])
    assert result.exit_code == 0, result.output
    assert "order_invoices" in result.output and str(out) in result.output.replace("\n", "")
    page = out.read_text()
    for chart in ("match-rate", "findings-by-kind", "amount-differences"):
        assert f'data-chart="{chart}"' in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    assert "<script" not in page


def test_report_without_any_run_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    result = runner.invoke(app, ["recon", "report"])
    assert result.exit_code == 1
    assert "no reconciliation has run yet" in result.output and "reconciliation" in result.output


@pytest.mark.browser
def test_html_report_renders_its_charts_in_headless_chromium(history_home, tmp_path, monkeypatch):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but Chromium is missing at {CHROMIUM} (run `make browser`)")
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (`make browser` installs it)")
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("HUB_HOME", str(history_home))
    out = tmp_path / "report.html"
    assert runner.invoke(app, ["recon", "report", "--html", str(out)]).exit_code == 0
    args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(out.as_uri())
        charts = {}
        for chart in ("match-rate", "findings-by-kind", "amount-differences"):
            svg = page.locator(f'svg[data-chart="{chart}"]')
            assert svg.is_visible()
            box = svg.bounding_box()
            assert box["width"] > 300 and box["height"] > 100
            charts[chart] = svg
        assert charts["match-rate"].locator("polyline.series").count() == len(FLOWS)
        assert charts["match-rate"].locator("circle").count() == 3 * len(FLOWS)
        bars = charts["findings-by-kind"].locator("rect.bar")
        assert bars.count() >= 14 and bars.first.bounding_box()["width"] > 2
        assert charts["amount-differences"].locator("rect.bin").count() == 20
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()


def test_fail_on_error_exits_non_zero_only_when_a_check_fails_as_an_error(
    history_home, sandbox_world, tmp_path, monkeypatch
):
    """For CI: the sandbox's planted findings warn; losing 3 % of the invoices is an ERROR."""
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("HUB_HOME", str(history_home))
    truth = sandbox_world.truth["discrepancies"]

    assert runner.invoke(app, ["recon", "report", "--fail-on", "error"]).exit_code == 0
    warned = runner.invoke(app, ["recon", "report", "--fail-on", "warn"])
    assert warned.exit_code == 1 and "order_invoices/invoice_missing (WARN" in warned.stderr

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(history_home / "warehouse.duckdb", home / "warehouse.duckdb")
    warehouse = Warehouse(path=str(home / "warehouse.duckdb"))
    with warehouse.connect() as con:
        invoices = con.scalar("SELECT count(*) FROM canonical.invoice")
        con.execute(
            "DELETE FROM canonical.invoice WHERE invoice_id IN (SELECT invoice_id FROM canonical.invoice "
            f"ORDER BY invoice_id DESC LIMIT {invoices * 3 // 100})"
        )
    run_flow(warehouse, next(f for f in FLOWS if f.name == "order_invoices"), "night-3",
             dt.datetime(2026, 11, 23, 2, 0))  # fmt: skip
    monkeypatch.setenv("HUB_HOME", str(home))
    failed = runner.invoke(app, ["recon", "report", "--json", "--fail-on", "error"])
    assert failed.exit_code == 1
    assert "order_invoices/invoice_missing (ERROR" in failed.stderr
    checks = {(c["flow"], c["check"]): c for c in json.loads(failed.stdout)["checks"]}
    missing = checks[("order_invoices", "invoice_missing")]
    assert missing["severity"] == "ERROR" and not missing["passed"] and missing["share"] > 0.005
    assert missing["findings"] > len(truth["invoice_missing"]) + 5
    assert checks[("shop_orders", "shop_status_mismatch")] == {
        "flow": "shop_orders", "check": "shop_status_mismatch", "findings": len(truth["shop_status_mismatch"]),
        "share": checks[("shop_orders", "shop_status_mismatch")]["share"], "passed": False, "severity": "WARN",
    }  # fmt: skip
    assert runner.invoke(app, ["recon", "report"]).exit_code == 0, "without --fail-on it only reports"
