"""`make demo`: the sandbox up, the nightly job on the embedded warehouse, a summary, the sandbox down.

The run goes through the Dagster instance in `$DAGSTER_HOME`, so `make dev` shows it
afterwards in the UI with its assets, checks and metadata.
"""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.table import Table

from hub_sandbox import PORT_OFFSETS, url
from integration_hub import settings
from integration_hub.definitions.instance import ensure_dagster_home

MAIN_JOB = "nightly"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # the event log keeps everything
LAYER_SCHEMAS = ("raw_", "staging", "canonical", "quarantine", "recon", "sync", "audit")


def run_demo(scale: float, seed: int, keep_running: bool = False, as_json: bool = False) -> int:
    """`as_json`: stdout is the run's summary as JSON alone, everything else goes to stderr."""
    from hub_sandbox import runner

    console = Console(stderr=as_json)
    home = settings.hub_home()
    console.rule("[bold]Integration Hub demo")
    console.print(f"HUB_HOME={home}")
    t0 = time.monotonic()
    with console.status(f"Starting the sandbox world (TPC-H scale {scale:g}, seed {seed})…"):
        runner.start(home, settings.port_base(), scale=scale, seed=seed)
    console.print(f"[green]sandbox up[/] in {time.monotonic() - t0:.1f}s: " + ", ".join(
        f"{s} {url(s)}" for s in PORT_OFFSETS))  # fmt: skip
    try:
        ok, run_id, elapsed = _run_main_job(console)
        data = summary(run_id)
        if as_json:
            print(
                json.dumps({"run_id": run_id, "success": ok, "seconds": round(elapsed, 1), **data}, indent=2)
            )
        else:
            _print_summary(console, data)
        status = "[green]succeeded" if ok else "[red]failed"
        console.print(f"Run {run_id} {status}[/] in {elapsed:.1f}s. `make dev` opens it in the Dagster UI.")
        return 0 if ok else 1
    finally:
        if not keep_running:
            runner.stop(home)
            console.print("sandbox stopped (use `hub demo --keep-running` to leave it up)")


def _run_main_job(console: Console) -> tuple[bool, str, float]:
    import dagster as dg

    from integration_hub.definitions import defs, run_guard

    ensure_dagster_home()
    job = defs.resolve_job_def(MAIN_JOB)
    partition_key = None
    if job.partitions_def is not None:
        keys = job.partitions_def.get_partition_keys()
        partition_key = keys[-1] if keys else None
    t0 = time.monotonic()
    label = f"Running job '{MAIN_JOB}'" + (f" for partition {partition_key}" if partition_key else "")
    with console.status(label + "…"), dg.DagsterInstance.get() as instance:
        # Recorded with the code location's origin: `make dev` lists it under Jobs → nightly.
        result = run_guard.guarded_execute(
            job, instance, partition_key=partition_key, run_config=QUIET, tags={"hub/trigger": "demo"},
            code_location=True,
        )  # fmt: skip
    elapsed = time.monotonic() - t0
    for event in result.all_events:
        if event.is_step_failure:
            console.print(
                f"[red]step failed:[/] {event.step_key}: {event.event_specific_data.error.message.strip()}"
            )
    return result.success, result.run_id, elapsed


def summary(run_id: str) -> dict:
    """Rows per warehouse table, the run's reconciliation and its pushes."""
    from integration_hub.warehouse import warehouse_from_env

    warehouse = warehouse_from_env()
    data: dict = {"warehouse": warehouse.display_name, "tables": {}, "reconciliation": [], "pushes": []}
    with warehouse.connect() as con:
        tables = con.rows(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_name NOT LIKE '\\_dlt%' ESCAPE '\\' ORDER BY 1, 2"
        )
        for schema, name in tables:
            if schema.startswith(LAYER_SCHEMAS) and not schema.endswith("_staging"):  # dlt's merge scratch
                data["tables"][f"{schema}.{name}"] = con.scalar(f'SELECT count(*) FROM "{schema}"."{name}"')
        if ("recon", "summary") in tables:
            flows = con.rows("SELECT flow, matched, findings, match_rate FROM recon.summary WHERE run_id = ? "
                             "ORDER BY flow", [run_id])  # fmt: skip
            data["reconciliation"] = [
                {"flow": flow, "matched": matched, "findings": json.loads(by_kind), "match_rate": rate}
                for flow, matched, by_kind, rate in flows
            ]
        if ("sync", "changelog") in tables:
            pushes = con.rows("SELECT sync, operation, status, count(*) FROM sync.changelog WHERE run_id = ? "
                              "GROUP BY ALL ORDER BY ALL", [run_id])  # fmt: skip
            data["pushes"] = [
                {"sync": name, "operation": operation, "status": status, "records": n}
                for name, operation, status, n in pushes
            ]
    return data


def _print_summary(console: Console, data: dict) -> None:
    table = Table(title=f"Warehouse {data['warehouse']}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in data["tables"].items():
        table.add_row(name, f"{rows:,}")
    console.print(table)
    if data["reconciliation"]:
        recon = Table(title="Reconciliation findings of this run")
        for col in ("flow", "matched", "findings by kind", "match rate"):
            recon.add_column(col)
        for f in data["reconciliation"]:
            found = ", ".join(f"{k} {n}" for k, n in f["findings"].items() if n) or "none"
            recon.add_row(f["flow"], f"{f['matched']:,}", found, f"{f['match_rate']:.2%}")
        console.print(recon)
    if data["pushes"]:
        sync = Table(title="Reverse sync: records pushed by this run")
        for col in ("sync", "operation", "status", "records"):
            sync.add_column(col)
        for p in data["pushes"]:
            sync.add_row(p["sync"], p["operation"], p["status"], f"{p['records']:,}")
        console.print(sync)
