"""Housekeeping: the retention asset, which applies `engine/retention_rules.RULES` and audits each deletion.

It runs on its own daily schedule (`definitions/automation.py`), not in the nightly job.
"""

import dagster as dg

from integration_hub.engine.retention_rules import apply_retention, record_deletions
from integration_hub.warehouse import Warehouse
from resources.warehouse import WAREHOUSE_POOL, warehouse_from_env

GROUP = "audit"


@dg.asset(
    key=["audit", "retention"],
    group_name=GROUP,
    kinds={"sql"},
    pool=WAREHOUSE_POOL,
    description="Deletes rows past their retention (integration_hub/engine/retention_rules.py RULES) and audits it.",
)
def retention(
    context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
) -> dg.MaterializeResult:
    deletions = apply_retention(warehouse)
    record_deletions(warehouse, context.run_id, deletions)
    deleted = {f"{d.schema}.{d.table}": d.rows_deleted for d in deletions if d.rows_deleted}
    return dg.MaterializeResult(
        metadata={
            "rows_deleted": sum(deleted.values()),
            "tables_checked": len(deletions),
            "deleted_by_table": dg.MetadataValue.json(deleted),
        }
    )


ASSETS: list = [retention]
RESOURCES: dict = {"warehouse": warehouse_from_env()}
