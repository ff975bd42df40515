"""The one `dg.Definitions` of the hub.

Each layer module exports plain lists (`ASSETS`, `CHECKS`, `JOBS`, `SCHEDULES`,
`SENSORS`) and `RESOURCES`; this file only assembles them and applies cross-cutting
policy, so nothing else builds `Definitions` and no layer repeats it:

- freshness matching the schedules: sources loaded hourly (`automation.hourly_systems()`)
  are stale after 2 h, everything loaded or built nightly after 26 h (seeds are files in
  the repository: they change with a deploy, not a schedule);
- owner and warehouse kind defaults for assets whose layer left them out;
- code references to each asset's Python definition, linked to the repository when
  `HUB_GIT_URL` is set (else to the local file);
- the default executor (what a run launched from the UI, a schedule or a sensor uses): in
  process on the embedded DuckDB warehouse, multiprocess on Postgres (see `_default_executor`);
  multiprocess steps fork from a server that imported this code location once, instead of
  each step process importing it again, and run one at a time on DuckDB (see `_multiprocess`).
"""

import datetime as dt
import warnings
from pathlib import Path

import dagster as dg

from assets import ingestion, landscape, reconciliation, retention, reverse_sync, transforms
from integration_hub import settings
from integration_hub.definitions import alerts, automation, dagster_internals, run_guard, scale_out

LAYERS = [
    ingestion,
    transforms,
    reconciliation,
    reverse_sync,
    retention,
    landscape,
    automation,
    alerts,
    run_guard,
    scale_out,
]
OWNERS = ["team:data-platform"]
HOURLY = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=2))
NIGHTLY = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26))
REPO_ROOT = Path(__file__).resolve().parents[2]


def _collect(name: str) -> list:
    return [item for layer in LAYERS for item in getattr(layer, name, [])]


def _resources() -> dict:
    merged: dict = {}
    for layer in LAYERS:
        merged.update(getattr(layer, "RESOURCES", {}))
    return merged


def _freshness(key: dg.AssetKey) -> dg.FreshnessPolicy | None:
    if key.path[0] == "seeds":
        return None
    hourly = key.path[0] == "raw" and key.path[1] in automation.hourly_systems()
    return HOURLY if hourly else NIGHTLY


def _policy(spec: dg.AssetSpec) -> dg.AssetSpec:
    kinds = set(spec.kinds)
    if not kinds & {"duckdb", "postgres"}:
        kinds.add("postgres" if settings.warehouse_url() else "duckdb")
    return spec.replace_attributes(
        owners=spec.owners or OWNERS,
        kinds=kinds,
        freshness_policy=spec.freshness_policy or _freshness(spec.key),
    )


def _with_code_references(assets: list) -> list:
    """Link each asset to its definition; to the repository's web view when `HUB_GIT_URL` is set."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # code references are beta: nothing to act on
        assets = dg.with_source_code_references(assets)
        if not settings.git_url():
            return assets
        return dg.link_code_references_to_git(
            assets,
            git_url=settings.git_url(),
            git_branch=settings.git_branch(),
            file_path_mapping=dg.AnchorBasedFilePathMapping(
                local_file_anchor=REPO_ROOT, file_anchor_path_in_repository=""
            ),
        )


def _multiprocess(config: dict) -> dict:
    """Defaults of multiprocess runs, each overridable in the run config.

    - steps start by `forkserver` with this module preloaded: a step is a fork of an imported
      code location, not a fresh interpreter importing it again;
    - on DuckDB one step at a time: the `warehouse` pool has one slot (one writer), so a second
      concurrent step would only poll for it with Dagster's back-off (1 s and up) per step.
    """
    if "multiprocess" not in config:
        return config
    run = dict(config["multiprocess"])
    run.setdefault("start_method", {"forkserver": {"preload_modules": ["integration_hub.definitions"]}})
    if run.get("max_concurrent") is None and not settings.warehouse_url():
        run["max_concurrent"] = 1
    return {"multiprocess": run}


def _default_executor() -> dg.Field:
    """The executor config a run gets when it names none.

    Embedded DuckDB: in process. The warehouse takes one writer at a time, so step processes
    ran one after another anyway, each paying Dagster's process set-up for isolation only
    (BENCHMARKS.md, "End to end").
    Postgres lifts the limit, so there steps run in parallel processes. Either is selectable
    per run (Launchpad: `execution`).
    """
    default = {"multiprocess": {}} if settings.warehouse_url() else {"in_process": {}}
    return dagster_internals.config_field_with_default(
        dg.multi_or_in_process_executor, default, _default_executor.__doc__
    )


EXECUTOR = dg.multi_or_in_process_executor.configured(_multiprocess, config_schema=_default_executor())


def _assets() -> list:
    return _with_code_references(list(dg.map_asset_specs(_policy, _collect("ASSETS"))))


defs = dg.Definitions(
    assets=_assets(),
    asset_checks=_collect("CHECKS"),
    jobs=_collect("JOBS"),
    schedules=_collect("SCHEDULES"),
    sensors=_collect("SENSORS"),
    resources=_resources(),
    executor=EXECUTOR,
)
