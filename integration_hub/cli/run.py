"""`hub run` and `hub backfill`: the operator's commands for runs.

They act on the Dagster instance in `$DAGSTER_HOME` (see `integration_hub.definitions.instance`), so
what they start shows in the UI like anything started there. `hub run` executes jobs in
process, recorded with the code location's origin so the UI lists the run under its job
(`dagster_internals.execute_as_code_location`; `execute_job` with a job rebuilt by
`build_reconstructable_job` for the Celery jobs), `hub backfill` registers and follows the backfill through Dagster's
GraphQL API (`integration_hub.cli.graphql`), as the UI's "Launch backfill" does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time

import typer
from rich.console import Console
from rich.table import Table

from integration_hub import settings
from integration_hub.cli import graphql
from integration_hub.cli.graphql import CodeLocation

console = Console()

# `hub run hourly` is the hourly job of integration_hub.definitions.automation.
JOB_ALIASES = {"hourly": "hourly_sources"}
CELERY_EXECUTOR = "hub_celery_executor"  # integration_hub.definitions.scale_out.celery_job
FINISHED_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
# `--wait` asks for the backfill's status only while none of its runs is unfinished, and at most this
# often: each ask starts a `dagster-graphql` process, and the daemon advances a backfill only once per
# loop. Its runs, read from the instance, are cheap to watch meanwhile.
STATUS_SECONDS = 10
BACKFILL_TAG = "dagster/backfill"  # the tag Dagster gives every run a backfill launches


def _defs():
    from integration_hub.definitions import defs

    return defs


# ---- hub run ------------------------------------------------------------------------------


def run_job(name: str, partition: str | None = None, defs=None, full_refresh: bool = False):
    """Execute a job in this process against the hub's instance; returns Dagster's result.

    A partitioned job without `partition` runs its live edge (the newest partition). A
    `<job>_celery` job runs with its own executor instead: steps on the Celery workers.
    """
    import dagster as dg

    from assets.transforms import FULL_REFRESH_TAG
    from integration_hub.definitions import run_guard
    from integration_hub.definitions.instance import get_instance
    from integration_hub.definitions.scale_out import resolve_job

    own = defs is None  # the code location's own definitions (tests pass others)
    defs = defs or _defs()
    name = JOB_ALIASES.get(name, name)
    try:
        job = defs.resolve_job_def(name)
    except dg.DagsterInvariantViolationError:
        names = sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__"))
        raise typer.BadParameter(f"no job named {name!r}; jobs: {', '.join(names)}") from None
    partition = _partition(job, partition)
    _check_config(job)
    _check_warehouse()
    tags = {"hub/trigger": "cli", **({FULL_REFRESH_TAG: "true"} if full_refresh else {})}
    with get_instance() as instance:
        if job.executor_def.name != CELERY_EXECUTOR:
            return run_guard.guarded_execute(
                job, instance, partition_key=partition, raise_on_error=False, tags=tags, code_location=own
            )
        # Celery workers rebuild the job from its module, so it runs from there, not from `defs`.
        recon = dg.build_reconstructable_job(
            resolve_job.__module__,
            resolve_job.__name__,
            reconstructable_args=(name,),
            reconstructor_working_directory=os.getcwd(),
        )
        if partition:
            tags["dagster/partition"] = partition
        return dg.execute_job(recon, instance=instance, tags=tags)


def _partition(job, partition: str | None) -> str | None:
    """The partition to run: the live edge when none is given; an unknown one is a one-line error."""
    if job.partitions_def is None:
        if partition:
            raise typer.BadParameter(f"job {job.name!r} is not partitioned: drop --partition")
        return None
    keys = job.partitions_def.get_partition_keys()
    if partition is None:
        return keys[-1] if keys else None
    if partition not in keys:
        span = f"{keys[0]}..{keys[-1]}" if keys else "none yet"
        raise typer.BadParameter(
            f"--partition {partition!r} is not a partition of {job.name!r} (daily, {span})"
        )
    return partition


def _check_config(job) -> None:
    """Every system the job reads or writes is configured, or the run does not start (one line each)."""
    from assets.syncs import SYNCS
    from integration_hub import systems
    from integration_hub.settings import ConfigError

    touched = set()
    for key in job.asset_layer.executable_asset_keys:
        if key.path[0] == "raw":
            touched.add(key.path[1])
        elif key.path[0] == "sync" and key.path[-1] in SYNCS:
            touched.add(SYNCS[key.path[-1]].destination)
    problems = [line for name in sorted(touched) for line in systems.get(name).check()]
    if problems:
        raise ConfigError("; ".join(problems))


def _check_warehouse() -> None:
    """A Postgres warehouse that cannot be reached stops the run before it starts, in one line.

    Not the embedded DuckDB: it is a local file, and opening it here would wait for the
    file lock of another run, which a run must wait for at its pool slot instead.
    """
    from integration_hub.warehouse import warehouse_from_env

    warehouse = warehouse_from_env()
    if warehouse.dialect == "postgres":
        with warehouse.connect():
            pass


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
    full_refresh: bool = typer.Option(
        False, "--full-refresh", help="Build every model and identity map in full, not by changed keys."
    ),
) -> None:
    """Run a job now, in this process, against the instance in $DAGSTER_HOME; print a summary."""
    t0 = time.monotonic()
    summary = summarize(run_job(job, partition, full_refresh=full_refresh))
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
    link = settings.ui_link(f"runs/{summary['run_id']}")
    console.print(f"{status}[/] in {summary['seconds']}s; open it with `make dev`: {link}")


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


LAUNCH_BACKFILL = """
mutation HubBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
BACKFILL_STATUS = """
query HubBackfillStatus($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
    ... on Error { message }
  }
}
"""


def launch_backfill(
    defs, system: str, start: str, end: str, downstream: bool = True, location: CodeLocation = graphql.HUB
) -> str:
    """Register a Dagster asset backfill in the instance (`$DAGSTER_HOME`); the daemon (`dagster dev`
    runs one) executes it. `location` is the code location `defs` come from. Returns its id."""
    selection, keys = plan_backfill(defs, system, start, end, downstream)
    tags = {"hub/backfill_system": system, "hub/trigger": "cli"}
    params = {
        "assetSelection": [{"path": list(key.path)} for key in selection],
        "partitionNames": keys,
        "tags": [{"key": k, "value": v} for k, v in tags.items()],
        "title": f"{system} {start}..{end}",
        "description": f"hub backfill --system {system} --from {start} --to {end}",
    }
    data = graphql.execute(LAUNCH_BACKFILL, {"params": params}, location)
    return graphql.result(data, "launchPartitionBackfill", "LaunchBackfillSuccess")["backfillId"]


def backfill_status(backfill_id: str) -> str:
    """The backfill's status name (`REQUESTED`, `COMPLETED_SUCCESS`, ...), read from the instance."""
    data = graphql.execute(BACKFILL_STATUS, {"id": backfill_id})
    return graphql.result(data, "partitionBackfillOrError", "PartitionBackfill")["status"]


def backfill_progress(instance, backfill_id: str, status: str, seconds: float) -> str:
    """One line: the backfill's status and its runs by status so far."""
    records = instance.get_run_records(filters=_backfill_runs(backfill_id))
    counts: dict[str, int] = {}
    for record in records:
        name = record.dagster_run.status.value.lower()
        counts[name] = counts.get(name, 0) + 1
    runs = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "none launched yet"
    return f"backfill {backfill_id}: {status} after {seconds:.0f} s; runs: {runs}"


def _backfill_runs(backfill_id: str, statuses=None):
    import dagster as dg

    return dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}, statuses=statuses or [])


def wait_for_backfill(backfill_id: str, timeout: float, progress=None) -> str:
    """Poll until the backfill finishes; returns its final status name. `progress` (a callable) gets
    a line with the backfill's runs by status at most every `HUB_PROGRESS_SECONDS`."""
    import dagster as dg

    from integration_hub.definitions.instance import get_instance

    finished = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    unfinished = [s for s in dg.DagsterRunStatus if s not in finished]
    runs = _backfill_runs(backfill_id, unfinished)
    started = time.monotonic()
    deadline = started + timeout
    status, asked, told = "REQUESTED", -STATUS_SECONDS, started
    with get_instance() as instance:
        while True:
            now = time.monotonic()
            if progress is not None and now - told >= settings.progress_seconds():
                progress(backfill_progress(instance, backfill_id, status, now - started))
                told = now
            if now - asked >= STATUS_SECONDS and not instance.get_run_records(filters=runs, limit=1):
                status, asked = backfill_status(backfill_id), now
                if status in FINISHED_BACKFILL:
                    return status
            if now > deadline:
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
    as_json: bool = typer.Option(
        False, "--json", help="Print the backfill (and its outcome with --wait) as JSON."
    ),
) -> None:
    """Reload a system's days after an outage: a real Dagster backfill, run by the daemon."""
    defs = _defs()
    selection, keys = plan_backfill(defs, system, start, end, downstream)
    try:
        backfill_id = launch_backfill(defs, system, start, end, downstream)
    except graphql.GraphQLError as exc:
        console.print(f"[red]the backfill was not registered:[/] {exc}")
        raise typer.Exit(1) from None
    # With --json, stdout is the JSON alone: what is said on the way goes to stderr.
    say = Console(stderr=True).print if as_json else console.print
    say(
        f"backfill [bold]{backfill_id}[/]: {len(keys)} partition(s) {keys[0]}..{keys[-1]} of "
        f"{len(selection)} asset(s); the daemon runs it. UI: {settings.ui_link(f'runs/b/{backfill_id}')}"
    )
    status = wait_for_backfill(backfill_id, timeout, progress=say) if wait else None
    if as_json:
        typer.echo(json.dumps({
            "backfill_id": backfill_id, "partitions": keys, "assets": [k.to_user_string() for k in selection],
            "url": settings.ui_link(f"runs/b/{backfill_id}"), "status": status,
        }, indent=2))  # fmt: skip
    elif wait:
        console.print(f"backfill {backfill_id}: {status}")
    if wait:
        raise typer.Exit(0 if status in ("COMPLETED", "COMPLETED_SUCCESS") else 1)
