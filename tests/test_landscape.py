"""`hub landscape` on the inventory shipped in the repository (landscape.yaml), its figures and
the two-writers check, through the CLI and the Dagster asset.

The shipped sample is the seed's example landscape: the finance tool and the ERP both ways,
CRM → marketing still live beside the hub's `marketing_contacts` sync (two writers of the
contacts' names and emails), and the support script that pulled shop orders three times an
hour, replaced by `sync/support_orders`.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from typer.testing import CliRunner

from assets.landscape import KEY, TWO_WRITERS, landscape
from integration_hub.cli import app
from integration_hub.engine import audit
from integration_hub.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "landscape.yaml"
LEGACY = {
    "finance_budgets_to_erp": ("finance", "erp", "live"),
    "erp_actuals_to_finance": ("erp", "finance", "live"),
    "crm_contacts_to_marketing": ("crm", "marketing", "live"),
    "support_order_puller": ("shop", "support", "replaced"),
}
HUB_FLOWS = {
    "raw/billing", "raw/crm", "raw/erp", "raw/payments", "raw/shop",
    "sync/billing_invoices", "sync/crm_accounts", "sync/marketing_contacts", "sync/support_orders",
}  # fmt: skip


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path / "home"))
    for var in ("HUB_WAREHOUSE_URL", "HUB_LANDSCAPE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def _landscape(*args: str) -> dict:
    out = CliRunner().invoke(app, ["landscape", "--json", *args])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def _inventory(tmp_path: Path, change) -> Path:
    doc = yaml.safe_load(SAMPLE.read_text())
    change(doc)
    path = tmp_path / "landscape.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_the_shipped_sample_shows_each_link_and_the_migration_figures(home):
    found = _landscape()
    links = {link["name"]: (link["from"], link["to"], link["status"]) for link in found["links"]}
    assert links == LEGACY
    assert {f["name"] for f in found["hub_flows"]} == HUB_FLOWS
    replaced = next(link for link in found["links"] if link["name"] == "support_order_puller")
    assert replaced["replaced_by"] == "sync/support_orders" and replaced["schedule"].startswith("3x an hour")
    assert found["figures"] == {
        "links_replaced": 1, "links_live": 3, "links_retired": 0, "hub_flows": 9,
        "share_through_hub": 0.75,  # 9 hub flows of 9 + 3 live links
        "connected_systems": 7, "hub_connections": 7,
        "point_to_point_avoided": 21,  # 7 * 6 / 2
    }  # fmt: skip
    text = CliRunner().invoke(app, ["landscape"], env={"COLUMNS": "250"})
    assert text.exit_code == 0, text.output
    for name in [*LEGACY, *HUB_FLOWS]:
        assert name in text.output
    assert (
        "1 legacy links replaced, 3 still live, 0 retired; 75% of 12 flows go through the hub" in text.output
    )
    assert "instead of 21 point-to-point links" in text.output


def test_a_live_link_writing_a_hub_flows_field_is_two_writers(home):
    assert _landscape()["two_writers"] == [
        {"link": "crm_contacts_to_marketing", "hub_flow": "sync/marketing_contacts", "system": "marketing",
         "fields": ["contacts.email", "contacts.firstname", "contacts.lastname"]}
    ]  # fmt: skip

    def replace(doc):
        link = next(link for link in doc["links"] if link["name"] == "crm_contacts_to_marketing")
        del link["status"]
        link["replaced_by"] = "sync/marketing_contacts"

    replaced = _landscape("--file", str(_inventory(home, replace)))
    assert replaced["two_writers"] == []
    assert replaced["figures"]["links_replaced"] == 2 and replaced["figures"]["links_live"] == 2
    retired = _landscape("--file", str(_inventory(home, lambda d: d["links"][2].update(status="retired"))))
    assert retired["two_writers"] == [] and retired["figures"]["links_retired"] == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["links"][0].update(to="ledger"), "`to: ledger` is no system"),
        (
            lambda d: d["links"][3].update(replaced_by="sync/nothing"),
            "`replaced_by: sync/nothing` is no hub flow",
        ),
        (lambda d: d["links"][0].update(status="paused"), "status must be live, retired"),
        (lambda d: d["links"][1].pop("owner"), "lacks owner"),
    ],
)
def test_a_bad_inventory_is_refused_naming_the_link(home, change, message):
    out = CliRunner().invoke(
        app, ["landscape", "--file", str(_inventory(home, change))], env={"COLUMNS": "400"}
    )
    assert out.exit_code == 2
    assert message in out.output and "links[" in out.output


def test_the_asset_carries_the_table_and_picture_and_warns_on_two_writers(home):
    warehouse = Warehouse(path=str(home / "warehouse.duckdb"))
    audit.record(
        warehouse,
        audit.Movement(run_id="r1", asset="raw/shop/orders", system="shop", direction="load", rows_out=3),
        audit.Movement(run_id="r1", asset="sync/support_orders", system="support", direction="push",
                       details={"failed": 0}),
        audit.Movement(run_id="r2", asset="sync/crm_accounts", system="crm", direction="push",
                       details={"failed": 2}),
    )  # fmt: skip
    result = dg.materialize([landscape], resources={"warehouse": warehouse})
    assert result.success
    metadata = result.asset_materializations_for_node("audit__landscape")[0].metadata
    picture = Path(metadata["picture"].value)
    assert picture == home / "home" / "reports" / "landscape.html"
    assert "<svg" in picture.read_text() and "support_order_puller" in picture.read_text()
    table = metadata["table"].value
    for name in [*LEGACY, *HUB_FLOWS]:
        assert f"| {name} (" in table
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert "| — |" not in rows["raw/shop (hub)"]  # its last load
    assert "| — |" not in rows["sync/support_orders (hub)"]  # its last push without failures
    assert rows["sync/crm_accounts (hub)"].endswith("| — |")  # its only push had failures
    assert metadata["share_through_hub"].value == 0.75
    (check,) = result.get_asset_check_evaluations()
    assert (check.asset_key, check.check_name, check.passed) == (KEY, TWO_WRITERS, False)
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert "crm_contacts_to_marketing" in check.description and "sync/marketing_contacts" in check.description
