"""The landscape in the Dagster UI: every flow between the systems, the hub's and the legacy ones.

One asset (`audit/landscape`, group `operations`, run on demand) reads the inventory
(`landscape.yaml`, or `HUB_LANDSCAPE`) with the hub's own flows and their last successes, writes
the picture to `$HUB_HOME/reports/landscape.html`, and carries the flow table, the migration
figures and the picture's path in its metadata. Its `two_writers` check warns when a live legacy
link writes a destination field a hub flow also writes.
"""

from pathlib import Path

import dagster as dg

from assets.retention import GROUP
from assets.syncs import SYNCS
from integration_hub import settings, systems
from integration_hub.engine import landscape as engine
from integration_hub.engine import landscape_picture as drawing
from integration_hub.warehouse import Warehouse
from resources.warehouse import WAREHOUSE_POOL

KEY = dg.AssetKey(["audit", "landscape"])
TWO_WRITERS = "two_writers"


def build(warehouse: Warehouse | None, path: Path | None = None) -> engine.Landscape:
    """The inventory at `path` (default `settings.landscape_path()`) with the hub's flows (and
    their last successes, when `warehouse` has an audit trail)."""
    flows = engine.hub_flows(systems.registry(), SYNCS)
    if warehouse is not None:
        flows = engine.last_successes(warehouse, flows)
    return engine.load(path or settings.landscape_path(), systems.registry(), flows)


@dg.asset(
    key=KEY,
    group_name=GROUP,
    kinds={"yaml"},
    pool=WAREHOUSE_POOL,
    description="How data flows between the company's systems: the hub's flows and the legacy "
    "point-to-point links of landscape.yaml, with the migration figures and one picture.",
    check_specs=[
        dg.AssetCheckSpec(
            TWO_WRITERS, asset=KEY,
            description="Warns when a live legacy link and a hub flow write the same destination field.",
        )
    ],
)  # fmt: skip
def landscape(context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]):
    found = build(warehouse)
    picture = settings.hub_home() / "reports" / "landscape.html"
    picture.parent.mkdir(parents=True, exist_ok=True)
    picture.write_text(drawing.to_html(found))
    figures = found.figures
    yield dg.MaterializeResult(
        metadata={
            "table": dg.MetadataValue.md(drawing.to_markdown(found)),
            "picture": dg.MetadataValue.path(str(picture)),
            "figures": dg.MetadataValue.json(figures),
            "share_through_hub": figures["share_through_hub"],
            "links_live": figures["links_live"],
            "links_replaced": figures["links_replaced"],
            "point_to_point_avoided": figures["point_to_point_avoided"],
            "inventory": dg.MetadataValue.path(found.source),
        }
    )
    yield two_writers_result(found)


def two_writers_result(found: engine.Landscape) -> dg.AssetCheckResult:
    clashes = found.two_writers
    return dg.AssetCheckResult(
        asset_key=KEY,
        check_name=TWO_WRITERS,
        passed=not clashes,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "; ".join(
                f"{c['link']} (legacy, live) and {c['hub_flow']} both write {c['system']} {', '.join(c['fields'])}: "
                f"retire the link or mark it replaced_by {c['hub_flow']}"
                for c in clashes
            )
            or "no destination field has two writers"
        ),
        metadata={"two_writers": dg.MetadataValue.json(clashes)},
    )


ASSETS: list = [landscape]
