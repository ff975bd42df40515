"""The warehouse as a Dagster resource: it hands assets the engine's `Warehouse` client.

The URL is configured as a reference to `HUB_WAREHOUSE_URL` (resolved when a run starts,
never shown in the UI); assets receive the plain `integration_hub.warehouse.Warehouse`
(`dg.ResourceParam[Warehouse]`), so the engine they call knows nothing of Dagster.
"""

from __future__ import annotations

import dagster as dg

from integration_hub import settings
from integration_hub.warehouse import Warehouse

# The Dagster concurrency pool of every step that writes the warehouse. DuckDB lets one process
# write its file at a time, so the embedded instance gives this pool one slot
# (`integration_hub.definitions.instance`); the Postgres profile widens it.
WAREHOUSE_POOL = "warehouse"


@dg.resource(
    config_schema={
        "url": dg.Field(
            dg.StringSource,
            is_required=False,
            description="Postgres URL (from HUB_WAREHOUSE_URL); unset means DuckDB at $HUB_HOME/warehouse.duckdb.",
        )
    },
    description="Where raw, staging, canonical, recon, sync, audit and quarantine tables live.",
)
def warehouse_resource(context: dg.InitResourceContext) -> Warehouse:
    return Warehouse(url=(context.resource_config or {}).get("url"))


def warehouse_from_env() -> dg.ResourceDefinition:
    """The resource as the code location configures it: the URL stays an environment reference."""
    if settings.warehouse_url():
        return warehouse_resource.configured({"url": {"env": "HUB_WAREHOUSE_URL"}})
    return warehouse_resource
