"""The one `dg.Definitions` of the hub.

Each layer module exports plain lists (`ASSETS`, `CHECKS`, `JOBS`, `SCHEDULES`,
`SENSORS`) and `RESOURCES`; this file only assembles them and applies cross-cutting
policy, so nothing else builds `Definitions`.
"""

import dagster as dg

from assets import ingestion, reconciliation, reverse_sync, transforms
from integration_hub import automation, operations

LAYERS = [ingestion, transforms, reconciliation, reverse_sync, automation, operations]


def _collect(name: str) -> list:
    return [item for layer in LAYERS for item in getattr(layer, name, [])]


def _resources() -> dict:
    merged: dict = {}
    for layer in LAYERS:
        merged.update(getattr(layer, "RESOURCES", {}))
    return merged


defs = dg.Definitions(
    assets=_collect("ASSETS"),
    asset_checks=_collect("CHECKS"),
    jobs=_collect("JOBS"),
    schedules=_collect("SCHEDULES"),
    sensors=_collect("SENSORS"),
    resources=_resources(),
)
