"""The Dagster UI as an operator uses it, in Debian's Chromium (Playwright, headless).

`dagster dev` serves the code location on a free port with a fresh instance (the hub's own
`dagster.yaml`) against a private sandbox whose warehouse was built beforehand (the
session's canonical warehouse). The test sees every layer's group in the asset graph,
materializes a source asset with the Materialize button and watches its run succeed, then
opens a reconciliation asset and reads its report. Screenshots land in a temp folder
(printed on failure). See /work/shared/UI-TESTING.md for the quirks handled here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from hub_sandbox import runner

from integration_hub.definitions import instance
from integration_hub.warehouse import Warehouse
from tests.conftest import start_copy

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
GROUPS = ("sources", "staging", "canonical", "reconciliation", "reverse_sync", "operations")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]


def _needs_chromium() -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {CHROMIUM} is missing: `make browser` installs it")
        pytest.skip(f"{CHROMIUM} is missing (`make browser` installs Debian's Chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _poll(what: str, check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def ui(sandbox_template, canonical_world, tmp_path_factory):
    """(base URL, instance, screenshots folder, port): `dagster dev` against a private sandbox."""
    _needs_chromium()
    warehouse, _ = canonical_world
    box = start_copy(sandbox_template, tmp_path_factory.mktemp("ui_home"))
    try:
        shutil.copy(warehouse.path, box.home / "warehouse.duckdb")
        with Warehouse(path=str(box.home / "warehouse.duckdb")).connect() as con:
            # The UI loads the settlement files for real: dlt must find its own schema, not the fixture's.
            con.execute("DROP SCHEMA raw_payments CASCADE")
        # One settlement file to load: the landing sensor would otherwise queue a run per file.
        for extra in sorted((box.home / "landing" / "payments").glob("*.csv"))[:-1]:
            extra.unlink()
        dagster_home = box.home / "dagster"
        dagster_home.mkdir()
        (dagster_home / "dagster.yaml").write_text(instance.dagster_yaml())
        with _dagster_dev(box, dagster_home) as (url, port), pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAGSTER_HOME", str(dagster_home))
            with dg.DagsterInstance.from_config(str(dagster_home)) as inst:
                yield url, inst, tmp_path_factory.mktemp("screenshots"), port
    finally:
        runner.stop(box.home)


@contextlib.contextmanager
def _dagster_dev(box, dagster_home: Path):
    """`dagster dev` in its own process group, stopped with SIGINT (SIGKILL if it lingers)."""
    port = _free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HUB_")}, **box.env(),
           "DAGSTER_HOME": str(dagster_home)}  # fmt: skip
    log_path = box.home / "dagster-dev.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
             "-p", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"dagster dev exited: {log_path.read_text()[-3000:]}")
            try:
                return httpx.get(f"{url}/server_info", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            _poll("dagster dev to answer", answers, timeout=120)
            _stop_sensors(port)
            yield url, port
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


SENSORS = """query { sensorsOrError(repositorySelector: {repositoryName: "__repository__",
  repositoryLocationName: "integration_hub.definitions"}) { ... on Sensors { results { id name } } } }"""
STOP = "mutation($id: String) { stopSensor(id: $id) { __typename } }"


def _stop_sensors(port: int) -> None:
    """Switch the sensors off, as an operator would in Automation: the test launches its own runs."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    sensors = _poll(
        "the sensors to load", lambda: client._execute(SENSORS)["sensorsOrError"].get("results"), 60
    )
    for sensor in sensors:
        client._execute(STOP, {"id": sensor["id"]})


def _finished(inst: dg.DagsterInstance, run_id: str) -> str | None:
    run = inst.get_run_by_id(run_id)
    return run.status.value if run and run.is_finished else None


def _shows(page, text: str) -> bool:
    """Whether the page shows `text`; reloads it when not (some views refresh only every 15 s)."""
    if page.get_by_text(text, exact=True).count() > 0:
        return True
    page.reload()
    return False


@pytest.fixture(scope="module")
def page(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
        ctx.add_init_script("window.localStorage.setItem('communityNux', '\"1\"')")
        ctx.set_default_timeout(60_000)
        yield ctx.new_page()
        browser.close()


def test_the_asset_graph_shows_every_layer(ui, page):
    url, _, shots, _ = ui
    page.goto(f"{url}/asset-groups")
    for group in GROUPS:
        page.get_by_text(group, exact=True).first.wait_for()
    page.screenshot(path=str(shots / "asset-graph.png"), full_page=True)
    text = page.inner_text("body")
    assert all(group in text for group in GROUPS), f"groups missing from the graph; see {shots}"


def test_materialize_a_source_from_the_ui(ui, page):
    url, inst, shots, _ = ui
    before = {r.run_id for r in inst.get_runs()}
    page.goto(f"{url}/assets/raw/payments/settlement")
    page.get_by_text("settlement", exact=True).first.wait_for()
    page.get_by_role("button", name="Materialize").first.click()
    page.get_by_text("Launched run").first.wait_for()
    page.screenshot(path=str(shots / "launched.png"))

    run = _poll("the run to be recorded", lambda: [r for r in inst.get_runs() if r.run_id not in before], 60)[
        0
    ]
    finished = _poll("the run to finish", lambda: _finished(inst, run.run_id), timeout=360, every=2)
    page.goto(f"{url}/runs/{run.run_id}")
    page.screenshot(path=str(shots / "run.png"), full_page=True)
    assert finished == "SUCCESS", f"run {run.run_id} ended {finished}; see {shots / 'run.png'}"
    _poll("the run page to say Success", lambda: _shows(page, "Success"), timeout=60, every=5)
    assert run.asset_selection == {dg.AssetKey(["raw", "payments", "settlement"])}

    page.goto(f"{url}/assets/raw/payments/settlement")
    page.get_by_text("rows_loaded").first.wait_for()
    page.screenshot(path=str(shots / "settlement.png"), full_page=True)
    assert "preview" in page.inner_text("body")


def test_the_reconciliation_asset_shows_its_report(ui, page):
    from dagster_graphql import DagsterGraphQLClient

    url, _, shots, port = ui
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("__ASSET_JOB", asset_selection=[["recon", "shop_orders"]])
    status = _poll(
        "the reconciliation run to finish",
        lambda: (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s,
        timeout=180, every=2,
    )  # fmt: skip
    assert status == "SUCCESS"

    page.goto(f"{url}/assets/recon/shop_orders")
    page.get_by_text("summary").first.wait_for()
    page.get_by_text("Fails if more than 26 hours since last materialization").first.wait_for()
    page.screenshot(path=str(shots / "recon-asset.png"), full_page=True)
    page.get_by_text("[Show Markdown]").last.click()  # the summary is the last Markdown value
    page.get_by_text("matched of").first.wait_for()
    page.screenshot(path=str(shots / "recon.png"), full_page=True)
    text = page.inner_text("body")
    assert "shop_orders" in text and "shop_order_missing_in_erp" in text


def test_the_reconciliation_report_is_an_asset_its_flows_link(ui, page):
    """`recon/report` writes the HTML report; the flows' pages show their key figures and link it."""
    from dagster_graphql import DagsterGraphQLClient

    url, inst, shots, port = ui
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(
        "__ASSET_JOB", asset_selection=[["recon", "shop_orders"], ["recon", "report"]]
    )
    status = _poll(
        "the report run to finish",
        lambda: (s := client.get_run_status(run_id).value) in ("SUCCESS", "FAILURE", "CANCELED") and s,
        timeout=180, every=2,
    )  # fmt: skip
    assert status == "SUCCESS"
    report = inst.get_latest_materialization_event(dg.AssetKey(["recon", "report"])).asset_materialization
    path = Path(report.metadata["report"].value)
    assert path.name == "recon_report.html" and path.parent.name == "reports" and path.is_file()
    flow = inst.get_latest_materialization_event(dg.AssetKey(["recon", "shop_orders"])).asset_materialization
    assert flow.metadata["report"].value == str(path)
    assert flow.metadata["report_asset"].value.endswith("/assets/recon/report")

    page.goto(f"{url}/assets/recon/shop_orders")
    page.get_by_text("match_rate_pct").first.wait_for()
    text = page.inner_text("body")
    assert f"{flow.metadata['match_rate_pct'].value}" in text, "the match rate reads without opening anything"
    assert "findings/shop_status_mismatch" in text and str(path) in text
    link = page.locator('a[href$="/assets/recon/report"]').first
    assert link.is_visible(), "the flow's page links the report's asset"
    page.goto(f"{url}/assets/recon/report")
    page.get_by_text("report_file_url").first.wait_for()
    page.screenshot(path=str(shots / "recon-report-asset.png"), full_page=True)
    page.goto(path.as_uri())
    page.locator('svg[data-chart="match-rate"]').wait_for()
    assert "shop_orders" in page.inner_text("body")
    page.screenshot(path=str(shots / "recon-report.png"), full_page=True)
