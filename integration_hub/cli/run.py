"""`hub run` and `hub backfill`: the operator's commands for runs.

They act on the Dagster instance in `$DAGSTER_HOME` (see `integration_hub.definitions.instance`), so
what they start shows in the UI like anything started there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import typer
from rich.console import Console
from rich.table import Table

console = Console()

# `hub run hourly` is the hourly job of integration_hub.definitions.automation.
JOB_ALIASES = {"hourly": "hourly_sources"}
CELERY_EXECUTOR = "hub_celery_executor"  # integration_hub.definitions.scale_out.celery_job
FINISHED_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def _defs():
    from integration_hub.definitions import defs

    return defs


# ---- hub run ------------------------------------------------------------------------------


def run_job(name: str, partition: str | None = None, defs=None):
    """Execute a job in this process against the hub's instance; returns Dagster's result.

    A partitioned job without `partition` runs its live edge (the newest partition). A
    `<job>_celery` job runs with its own executor instead: steps on the Celery workers.
    """
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    from integration_hub.definitions.instance import get_instance

    defs = defs or _defs()
    name = JOB_ALIASES.get(name, name)
    try:
        job = defs.resolve_job_def(name)
    except dg.DagsterInvariantViolationError:
        names = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
        raise typer.BadParameter(f"no job named {name!r}; jobs: {', '.join(names)}") from None
    if job.partitions_def is not None and partition is None:
        keys = job.partitions_def.get_partition_keys()
        partition = keys[-1] if keys else None
    tags = {"hub/trigger": "cli"}
    with get_instance() as instance:
        if job.executor_def.name != CELERY_EXECUTOR:
            return job.execute_in_process(
                instance=instance, partition_key=partition, raise_on_error=False, tags=tags
            )
        # Celery workers rebuild the job from its module, so it runs from there, not from `defs`.
        recon = ReconstructableRepository.for_module(
            "integration_hub.definitions", "defs", working_directory=os.getcwd()
        ).get_reconstructable_job(name)
        if partition:
            tags["dagster/partition"] = partition
        return dg.execute_job(recon, instance=instance, tags=tags)


def summarize(result) -> dict:
    """Steps, materializations (with row counts) and failed checks of an executed run."""
    from integration_hub.definitions.alerts import root_cause

    steps, assets, checks = {}, [], []
    for event in result.all_events:
        if event.is_step_success or event.is_step_failure:
            data = event.event_specific_data
            steps[event.step_key] = {
                "status": "success" if event.is_step_success else "failure",
                "seconds": round(data.duration_ms / 1000, 2) if getattr(data, "duration_ms", None) else None,
                "error": None if event.is_step_success else root_cause(data.error)[:500],
            }
        elif event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            rows = next(
                (
                    v.value
                    for k, v in mat.metadata.items()
                    if k in ("dagster/row_count", "rows", "row_count", "rows_loaded")
                ),
                None,
            )
            assets.append({"asset": "/".join(mat.asset_key.path), "partition": mat.partition, "rows": rows})
        elif event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.asset_check_evaluation_data
            if not ev.passed:
                checks.append(
                    {
                        "asset": "/".join(ev.asset_key.path),
                        "check": ev.check_name,
                        "severity": ev.severity.value,
                    }
                )
    return {
        "run_id": result.run_id,
        "job": result.job_def.name,
        "success": result.success,
        "steps": steps,
        "materializations": assets,
        "failed_checks": checks,
    }


def run_command(
    job: str = typer.Argument(..., help="Job to run: nightly or hourly (or any job of the code location)."),
    partition: str | None = typer.Option(None, help="Partition key; default: the newest (live edge)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run a job now, in this process, against the instance in $DAGSTER_HOME; print a summary."""
    t0 = time.monotonic()
    summary = summarize(run_job(job, partition))
    summary["seconds"] = round(time.monotonic() - t0, 1)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_summary(summary)
    raise typer.Exit(0 if summary["success"] else 1)


def _print_summary(summary: dict) -> None:
    table = Table(title=f"Run {summary['run_id']} ({summary['job']})")
    for column in ("asset", "partition", "rows"):
        table.add_column(column, justify="right" if column == "rows" else "left")
    for m in summary["materializations"]:
        table.add_row(m["asset"], m["partition"] or "", "" if m["rows"] is None else str(m["rows"]))
    console.print(table)
    for step, info in summary["steps"].items():
        if info["status"] == "failure":
            console.print(f"[red]step failed:[/] {step}: {info['error']}")
    for c in summary["failed_checks"]:
        console.print(f"[yellow]check failed ({c['severity']}):[/] {c['asset']} {c['check']}")
    status = "[green]succeeded" if summary["success"] else "[red]failed"
    console.print(f"{status}[/] in {summary['seconds']}s; open it with `make dev` → Runs.")


# ---- hub backfill -------------------------------------------------------------------------


def raw_assets(asset_graph, system: str) -> list:
    """Partitioned raw assets of one system (`["raw", system, …]`)."""
    return sorted(
        (k for k in asset_graph.get_all_asset_keys() if list(k.path[:2]) == ["raw", system]),
        key=lambda k: k.path,
    )


def plan_backfill(defs, system: str, start: str, end: str, downstream: bool = True):
    """(asset keys, partition keys) a backfill of `system` over [start, end] (inclusive days) targets."""
    import dagster as dg

    graph = defs.resolve_asset_graph()
    raw = raw_assets(graph, system)
    if not raw:
        systems = sorted(
            {k.path[1] for k in graph.get_all_asset_keys() if k.path[0] == "raw" and len(k.path) > 2}
        )
        raise typer.BadParameter(f"no raw assets for system {system!r}; systems: {', '.join(systems)}")
    partitioned = [k for k in raw if graph.get(k).partitions_def is not None]
    if not partitioned:
        raise typer.BadParameter(
            f"the raw assets of {system!r} are not partitioned: rerun them with `hub run`"
        )
    partitions_def = graph.get(partitioned[0]).partitions_def
    for label, value in (("--from", start), ("--to", end)):
        try:
            dt.date.fromisoformat(value)
        except ValueError:
            raise typer.BadParameter(f"{label} {value!r} is not a date (YYYY-MM-DD)") from None
    if start > end:
        raise typer.BadParameter(f"--from {start} is after --to {end}")
    all_keys = partitions_def.get_partition_keys()
    keys = [k for k in all_keys if start <= k <= end]
    if not keys:
        raise typer.BadParameter(
            f"no partition of {system!r} lies in {start}..{end}; partitions run {all_keys[0]}..{all_keys[-1]}"
        )
    selection = list(partitioned)
    if downstream:
        below = dg.AssetSelection.assets(*partitioned).downstream().resolve(graph)
        selection += sorted(set(below) - set(partitioned), key=lambda k: k.path)
    return selection, keys


def launch_backfill(instance, defs, system: str, start: str, end: str, downstream: bool = True) -> str:
    """Register a Dagster asset backfill; the daemon (`dagster dev` runs one) executes it."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    selection, keys = plan_backfill(defs, system, start, end, downstream)
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=defs.resolve_asset_graph(),
        partition_names=keys,
        asset_selection=selection,
        backfill_timestamp=time.time(),
        tags={"hub/backfill_system": system, "hub/trigger": "cli"},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=f"{system} {start}..{end}",
        description=f"hub backfill --system {system} --from {start} --to {end}",
        run_config=None,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def wait_for_backfill(instance, backfill_id: str, timeout: float) -> str:
    """Poll until the backfill finishes; returns its final status name."""
    deadline = time.monotonic() + timeout
    while True:
        status = instance.get_backfill(backfill_id).status.value
        if status in FINISHED_BACKFILL:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"backfill {backfill_id} still {status} after {timeout:.0f}s: is the daemon running "
                "(`make dev`, or `dagster-daemon run`)?"
            )
        time.sleep(1)


def backfill_command(
    system: str = typer.Option(..., help="The system whose raw partitions are reloaded, e.g. shop."),
    start: str = typer.Option(..., "--from", help="First day (YYYY-MM-DD), inclusive."),
    end: str = typer.Option(..., "--to", help="Last day (YYYY-MM-DD), inclusive."),
    downstream: bool = typer.Option(True, help="Also rebuild staging, canonical, recon and sync after it."),
    wait: bool = typer.Option(False, help="Wait until the daemon has finished the backfill."),
    timeout: float = typer.Option(1800, help="Seconds to wait with --wait."),
) -> None:
    """Reload a system's days after an outage: a real Dagster backfill, run by the daemon."""
    from integration_hub.definitions.instance import get_instance

    defs = _defs()
    selection, keys = plan_backfill(defs, system, start, end, downstream)
    with get_instance() as instance:
        backfill_id = launch_backfill(instance, defs, system, start, end, downstream)
        console.print(
            f"backfill [bold]{backfill_id}[/]: {len(keys)} partition(s) {keys[0]}..{keys[-1]} of "
            f"{len(selection)} asset(s); the daemon runs it. UI: /runs/b/{backfill_id}"
        )
        if wait:
            status = wait_for_backfill(instance, backfill_id, timeout)
            console.print(f"backfill {backfill_id}: {status}")
            raise typer.Exit(0 if status in ("COMPLETED", "COMPLETED_SUCCESS") else 1)
