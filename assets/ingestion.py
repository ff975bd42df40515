"""Ingestion: every connected system's dlt source as Dagster assets `["raw", system, resource]`.

One multi-asset per system (a step, a dlt pipeline, a load package), built from the
system registry (`integration_hub.systems`), so a new system module appears here without an edit.

Partitions (daily, UTC, from `HUB_PARTITION_START`) for incremental sources:
- the partition that contains *now* is the live edge: it runs the persistent pipeline
  `hub_<system>` whose dlt cursor (state kept in the warehouse) says where the last run
  stopped, so hourly and nightly runs read only what changed;
- any other window (a past day, or a backfill range) reads exactly [start, end) with
  explicit bounds in a throw-away pipeline `hub_<system>__<start>_<end>` (own working dir,
  stateless incremental): the live cursor is untouched and parallel partition runs never
  share dlt state. Rows merge into the same raw tables by primary key: no duplicates.
This is dagster-dlt's documented pattern (pass a source built for the partition to
`DagsterDltResource.run`, here its equal without the noise: `assets/dlt_run.py`), with a
pipeline per window added against state races.
`dlt_assets` takes no resource keys, so the assets are built from the same two parts it is
made of: `build_dlt_asset_specs` and `multi_asset`.

Load contracts: every raw asset has a blocking `load_contract` check, evaluated in its load's
own step from the counts the load just recorded (`assets/load_outcome.py`). Rows the adapter's row contract refused are
quarantined, not lost; a few (up to `HUB_CONTRACT_MAX_REJECT_SHARE`, default 10 %) make a WARN,
more an ERROR, which fails the load step, so the layers below do not rebuild on a source whose
schema changed (a renamed field refuses every row), and fires the check alert. One step loads
a system's resources, so an ERROR on one also holds back the layers below its siblings.

Direct Arrow load (`DuckDBArrowSink`): a system whose source reads Arrow (`arrow_sink=True`, the
ERP) writes its rows straight into a DuckDB warehouse, chunk by chunk while it reads, instead
of through dlt's Parquet file, staging dataset and MERGE (BENCHMARKS.md, "Extraction").
dlt still runs the same pipeline: its incremental filters every chunk and keeps the cursor
and boundary hashes in dlt state, stored in the warehouse by dlt's load as before (with a
`_dlt_loads` row); while dlt's schema lacks the table or a column, dlt also gets a zero-row
table of the same schema, so its schema knows the columns. Bypassed: the Parquet file, the
staging table and dlt's MERGE; `rows_loaded` is the sink's count. `HUB_DIRECT_ARROW_LOAD=0`
turns it off; a Postgres warehouse always loads through dlt.

Deletions at the source: after the load, each loaded resource whose system declares how its
deletions show (`System.deletions`, `integration_hub/systems/kit/deletions.py`) is asked, and
its raw rows deleted at the source become tombstones (`_hub_deleted_at`, with this load's id),
one UPDATE per resource; `rows_deleted` in the materialization and the audit row's details
says how many.
"""

import contextlib
import datetime as dt
import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, build_dlt_asset_specs
from dagster_dlt.translator import DltResourceTranslatorData
from dlt.common.storages.load_package import create_load_id
from dlt.pipeline.exceptions import PipelineStepFailed

from assets import dlt_run
from assets.covered_partitions import covered_days
from assets.load_outcome import contract_specs, finish_load, load_failure, retry_or_fail
from integration_hub import settings, systems
from integration_hub.engine.audit import now
from integration_hub.engine.progress import DltProgress, Meter
from integration_hub.systems import System
from integration_hub.systems.kit import deletions
from integration_hub.systems.kit.contract import Rejects
from integration_hub.systems.kit.files import FileReport
from integration_hub.warehouse import Warehouse
from integration_hub.warehouse.arrow_sink import DuckDBArrowSink
from resources.systems import client, resource_key
from resources.warehouse import WAREHOUSE_POOL, warehouse_from_env


def group(system: str) -> str:
    """A system's raw assets' group: `raw_<system>`, its key prefix and its warehouse schema. A group
    per system, because the graph labels a node by its key's last part only: `raw/erp/customers` and
    `raw/shop/customers` are told apart by the group box they sit in."""
    return f"raw_{system}"


OWNERS = ["team:data-platform"]
ADAPTER_LOG = "integration_hub.systems"


def daily_partitions() -> dg.DailyPartitionsDefinition:
    """Daily UTC partitions; `end_offset=1` makes today's (the live edge) selectable."""
    return dg.DailyPartitionsDefinition(start_date=settings.partition_start(), end_offset=1)


def dialect() -> str:
    return "postgres" if settings.warehouse_url() else "duckdb"


class RawTranslator(DagsterDltTranslator):
    """Asset specs of a system's raw tables: keys, group, kinds, owners, descriptions."""

    def __init__(self, source_system: System):
        self.source_system = source_system

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        system, name = self.source_system.name, data.resource.name
        return (
            super()
            .get_asset_spec(data)
            .replace_attributes(
                key=dg.AssetKey(["raw", system, name]),
                deps=[],
                group_name=group(system),
                kinds={"dlt", dialect(), system},
                description=f"{self.source_system.resources.get(name, name)} Loaded by dlt into raw_{system}.{name}.",
                owners=OWNERS,
            )
        )


@contextlib.contextmanager
def _adapter_logs_to(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Show the adapters' warnings (retries, re-authentication, changed files) in the run log."""

    class ToRunLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            context.log.log(record.levelno, record.getMessage())

    logger, handler = logging.getLogger(ADAPTER_LOG), ToRunLog(logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _window(context: dg.AssetExecutionContext) -> tuple[dt.datetime, dt.datetime, bool]:
    """(start, end, live): live when the run is exactly the partition that contains now."""
    window = context.partition_time_window
    start, end = window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC)
    current = dt.datetime.now(dt.UTC)
    live = start <= current < end and end - start == dt.timedelta(days=1)
    return start, min(end, current.replace(microsecond=0)), live


def _pipeline(system: str, warehouse: Warehouse, name: str, pipelines_dir: Path) -> dlt.Pipeline:
    """The load's dlt pipeline; a long extract, normalize or load logs dlt's counters in the run
    (through the adapters' logger, `_adapter_logs_to`)."""
    return dlt.pipeline(
        pipeline_name=name,
        pipelines_dir=str(pipelines_dir),
        destination=warehouse.dlt_destination(),
        dataset_name=f"raw_{system}",
        progress=DltProgress(logging.getLogger(f"{ADAPTER_LOG}.progress")),
    )


def _cursors(pipeline: dlt.Pipeline, system: str) -> dict[str, str]:
    """The stored incremental cursor of each resource (last value seen), as text."""
    resources = pipeline.state.get("sources", {}).get(system, {}).get("resources", {})
    out = {}
    for name, state in resources.items():
        for cursor in state.get("incremental", {}).values():
            out[name] = str(cursor.get("last_value"))
    return out


def _run(
    context: dg.AssetExecutionContext,
    source_system: System,
    source: Any,
    pipeline: dlt.Pipeline,
    translator: DagsterDltTranslator,
    where: str,
) -> list:
    """Run the dlt pipeline for the selected assets, the adapters' warnings in the run log; a
    failed load is retried as a step (`retry_or_fail`), `where` saying what was not loaded."""
    with _adapter_logs_to(context):
        try:
            return list(dlt_run.run(context, source, pipeline, translator))
        except PipelineStepFailed as exc:
            raise retry_or_fail(context, load_failure(source_system.name, exc, where)) from exc


def _mark_deletions(
    context: dg.AssetExecutionContext, source_system: System, warehouse: Warehouse, pipeline: dlt.Pipeline,
    events: list, since: dict[str, str],
) -> dict[str, int]:  # fmt: skip
    """Tombstone the raw rows the source deleted, for each loaded resource that declares how its
    deletions show; rows newly marked per resource. `since`: where each resource's load started."""
    system, loaded = source_system.name, [e.asset_key.path[-1] for e in events]
    declared = [r for r in loaded if r in source_system.deletions]
    if not declared:
        return {}
    info = pipeline.last_trace.last_load_info if pipeline.last_trace else None
    load_id = max(info.loads_ids) if info and info.loads_ids else create_load_id()
    client = getattr(context.resources, resource_key(system)).source_kwargs()
    found: dict[str, int] = {}
    for resource in declared:
        detector = source_system.deletions[resource]
        try:
            listed = detector.found(client, resource, since.get(resource))
        except Exception as exc:  # the load is kept; the step is retried to ask again
            raise retry_or_fail(context, load_failure(system, exc, f"the deletions of {resource}")) from exc
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        marked = deletions.mark(warehouse, f"raw_{system}", resource, detector, listed, load_id, now)
        found[resource] = marked.deleted
        if marked.deleted or marked.revived:
            context.log.info(f"{system}.{resource}: {marked.deleted} row(s) deleted at the source marked "
                             f"in raw, {marked.revived} back at the source unmarked (load {load_id})")  # fmt: skip
    return found


def _with_deleted(results: list[dg.MaterializeResult], found: dict[str, int]) -> list[dg.MaterializeResult]:
    """Each materialization with `rows_deleted`: its raw rows the source deleted, newly marked."""
    return [
        dg.MaterializeResult(
            asset_key=r.asset_key,
            check_results=r.check_results,
            data_version=r.data_version,
            tags=r.tags,
            metadata={**(r.metadata or {}), "rows_deleted": found.get(r.asset_key.path[-1], 0)},
        )  # fmt: skip
        for r in results
    ]


def _cursors_or(
    pipeline: dlt.Pipeline, source_system: System, live: bool, bound: dt.datetime
) -> dict[str, str]:
    """The live edge's stored cursor of each resource, else the window's bound (for the audit)."""
    if live:
        return _cursors(pipeline, source_system.name)
    return dict.fromkeys(source_system.resources, bound.isoformat())


def _sink(
    context: dg.AssetExecutionContext, source_system: System, warehouse: Warehouse
) -> DuckDBArrowSink | None:
    """The direct Arrow load, when the system's source reads Arrow and the warehouse is DuckDB;
    a long one logs its progress in the run (dlt's counters do not see these rows)."""
    enabled = settings.direct_arrow_load()
    if enabled and source_system.arrow_sink and warehouse.dialect == "duckdb":
        dataset = f"raw_{source_system.name}"
        meter = Meter(f"{source_system.name}: direct load into {dataset}", "rows", None, context.log.info)
        return DuckDBArrowSink(warehouse, dataset, on_rows=meter.add)
    return None


def _specs(source_system: System, translator: DagsterDltTranslator) -> list[dg.AssetSpec]:
    template = source_system.source(**source_system.describe_kwargs())
    return dlt_run.plain(build_dlt_asset_specs(template, _spec_pipeline(source_system.name), translator))


def incremental_assets(source_system: System) -> dg.AssetsDefinition:
    """The daily-partitioned assets of a system read by updated-at window."""
    system, key = source_system.name, resource_key(source_system.name)
    translator = RawTranslator(source_system)
    specs = _specs(source_system, translator)

    @dg.multi_asset(
        name=f"raw_{system}",
        specs=specs,
        check_specs=contract_specs(specs),
        can_subset=True,
        partitions_def=daily_partitions(),
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
        required_resource_keys={"dlt", "warehouse", key},
    )
    def load(context: dg.AssetExecutionContext):
        warehouse: Warehouse = context.resources.warehouse
        start, end, live = _window(context)
        partition = context.partition_key if live else f"{start:%Y-%m-%d}..{end:%Y-%m-%dT%H:%M:%S}"
        rejects = Rejects()
        bounds = {} if live else {"start": start, "end": end}
        sink = _sink(context, source_system, warehouse)
        source = source_system.source(
            **getattr(context.resources, key).source_kwargs(), rejects=rejects, **bounds,
            **({"sink": sink} if sink else {}),
        )  # fmt: skip
        with _pipelines_dir(live) as pipelines_dir, warehouse.session():
            name = f"hub_{system}" if live else f"hub_{system}__{start:%Y%m%dT%H%M}_{end:%Y%m%dT%H%M%S}"
            pipeline = _pipeline(system, warehouse, name, pipelines_dir)
            if live:  # the stored cursor, restored first, is the audit's "before"
                pipeline.sync_destination()
                pipeline.config.restore_from_destination = False  # else dlt's run syncs once more
            before = _cursors_or(pipeline, source_system, live, start)
            started = now()
            context.log.info(
                f"{system}: {'live edge, from the stored cursor' if live else f'window [{start}, {end})'} "
                f"with dlt pipeline {name} into raw_{system} on {warehouse.display_name}"
            )
            events = _run(context, source_system, source, pipeline, translator, f"partition {partition}")
            after = _cursors_or(pipeline, source_system, live, end)
            found = _mark_deletions(context, source_system, warehouse, pipeline, events, before)
            results = _with_deleted(finish_load(
                context, source_system, warehouse, pipeline, events, rejects, partition=partition, started=started,
                cursors=(before, after), sink=sink,
                details={"pipeline": name, "mode": "live" if live else "window",
                         "load_path": f"direct arrow ({', '.join(sorted(set(sink.modes.values())))})"
                         if sink else "dlt", **({"rows_deleted": found} if found else {})},
            ), found)  # fmt: skip
            if live:  # first, so each asset's latest materialization is the load's own
                yield from covered_days(context, results, before)
            yield from results

    return load


class FilesConfig(dg.Config):
    """Which dropped files to load: by name; empty means every file not loaded yet."""

    files: list[str] = []


def file_assets(source_system: System) -> dg.AssetsDefinition:
    """The assets of a system that drops files in a landing folder (each file loaded once)."""
    system, key = source_system.name, resource_key(source_system.name)
    translator = RawTranslator(source_system)
    specs = _specs(source_system, translator)

    @dg.multi_asset(
        name=f"raw_{system}",
        specs=specs,
        check_specs=contract_specs(specs),
        can_subset=True,
        pool=WAREHOUSE_POOL,
        required_resource_keys={"dlt", "warehouse", key},
    )
    def load(context: dg.AssetExecutionContext, config: FilesConfig):
        warehouse: Warehouse = context.resources.warehouse
        rejects, report = Rejects(), FileReport()
        try:
            source = source_system.source(
                **getattr(context.resources, key).source_kwargs(),
                files=config.files or None,
                rejects=rejects,
                report=report,
            )
        except ValueError as exc:  # a `files=` name that is no file of the folder: fails once, no retry
            raise dg.Failure(description=str(exc)) from None
        with _pipelines_dir(live=True) as pipelines_dir, warehouse.session():
            pipeline = _pipeline(system, warehouse, f"hub_{system}", pipelines_dir)
            started = now()
            where = f"files {config.files or 'pending'}"
            events = _run(context, source_system, source, pipeline, translator, where)
            files = report.metadata()  # the adapter logged each rejected, replaced or waiting file
            found = _mark_deletions(context, source_system, warehouse, pipeline, events, {})
            yield from _with_deleted(finish_load(
                context, source_system, warehouse, pipeline, events, rejects, partition=None, started=started,
                cursors=({}, {}), details={"pipeline": pipeline.pipeline_name, **files,
                                           **({"rows_deleted": found} if found else {})},
            ), found)  # fmt: skip

    return load


@contextlib.contextmanager
def _pipelines_dir(live: bool) -> Iterator[Path]:
    """The live pipelines' working dirs persist under $HUB_HOME; a window's is thrown away."""
    if live:
        path = settings.hub_home() / "dlt" / "pipelines"
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path = Path(tempfile.mkdtemp(prefix="hub-dlt-window-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _spec_pipeline(system: str) -> dlt.Pipeline:
    """A pipeline used only to describe the assets (destination kind); it never runs."""
    return dlt.pipeline(
        pipeline_name=f"hub_{system}_spec_{dialect()}",
        pipelines_dir=str(Path(tempfile.gettempdir()) / "hub-dlt-specs"),
        destination=dialect(),
        dataset_name=f"raw_{system}",
    )


def build_assets() -> list[dg.AssetsDefinition]:
    """One multi-asset per system the hub reads from."""
    return [
        (incremental_assets if source_system.incremental else file_assets)(source_system)
        for source_system in systems.sources().values()
    ]


def build_resources() -> dict[str, Any]:
    return {
        "dlt": DagsterDltResource(),
        "warehouse": warehouse_from_env(),
        **{resource_key(system): client(system) for system in systems.sources()},
    }


ASSETS: list = build_assets()
CHECKS: list = []
RESOURCES: dict = build_resources()
