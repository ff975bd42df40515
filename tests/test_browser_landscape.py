"""The landscape picture as a new hire opens it: `hub landscape --html` in Debian's Chromium.

The page is opened from the file (no webserver): it must draw the hub, every system of the
shipped inventory, each hub flow and each legacy link (with their schedules), and the migration
figures. A screenshot lands in a temp folder (printed on failure).
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from integration_hub.cli import app
from tests.test_browser_ui import CHROMIUM, CHROMIUM_ARGS, _needs_chromium

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


def test_the_landscape_picture_draws_every_link_and_the_figures(tmp_path, monkeypatch):
    _needs_chromium()
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))  # no warehouse: no last successes
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("HUB_LANDSCAPE", raising=False)
    page_file = tmp_path / "landscape.html"
    runner = CliRunner()
    assert runner.invoke(app, ["landscape", "--html", str(page_file)]).exit_code == 0
    expected = json.loads(runner.invoke(app, ["landscape", "--json"]).output)
    shot = tmp_path / "landscape.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(page_file.as_uri())
            page.wait_for_selector("svg#landscape")
            drawn = page.eval_on_selector_all(
                "svg#landscape g.link",
                """gs => gs.map(g => ({name: g.dataset.link, status: g.dataset.status,
                    length: g.querySelector('path').getTotalLength(),
                    label: g.querySelector('text').textContent}))""",
            )
            systems = page.eval_on_selector_all(
                "svg#landscape g.system", "gs => gs.map(g => g.dataset.system)"
            )
            figures = page.text_content("svg#landscape #figures")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    print(f"screenshot: {shot}")
    by_name = {d["name"]: d for d in drawn}
    flows = {f["name"]: f for f in expected["hub_flows"] + expected["links"]}
    assert set(by_name) == set(flows)
    assert all(d["length"] > 50 for d in drawn), drawn  # each link is a visible line, not a dot
    for name, f in flows.items():
        assert by_name[name]["label"].startswith(f["schedule"]), name
        assert by_name[name]["status"] == ("hub" if f["hub"] else f["status"]), name
    assert by_name["support_order_puller"]["status"] == "replaced"
    assert by_name["crm_contacts_to_marketing"]["status"] == "live"
    assert set(systems) == set(expected["systems"])
    assert "1 replaced · 3 live · 0 retired · 75% of flows through the hub · 21 point-to-point" in figures
    assert shot.stat().st_size > 10_000
