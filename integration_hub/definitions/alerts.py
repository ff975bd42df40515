"""Alerting: failed runs, failed asset checks and a growing dead-letter queue, sent once each.

Each sensor keeps a cursor in the instance, so a failure alerts exactly once. Every
sensor watches the whole instance (all code locations, and runs the `hub` CLI executes
in-process), not only this code location's jobs. Messages carry the run, the asset, the error and a link to the
Dagster UI; `resources.alerts.AlertSink` scrubs secrets from every text.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg

from integration_hub.warehouse import Warehouse
from resources.alerts import AlertSink, alert_sink_from_env
from resources.warehouse import warehouse_from_env

ERROR_CHARS = 1500  # enough to recognise the error; the UI link has the full trace
DEAD_LETTER = ("sync", "dead_letter")


def _asset_label(key: dg.AssetKey) -> str:
    return "/".join(key.path)


def failed_assets(instance: dg.DagsterInstance, run_id: str) -> tuple[list[str], str | None]:
    """The assets whose steps failed in a run, and the first step error (type and message)."""
    logs = instance.all_logs(
        run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
    )
    assets_by_step: dict[str, list[str]] = {}
    failed_steps: list[str] = []
    error = None
    for entry in logs:
        event = entry.dagster_event
        if event is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED and event.asset_key:
            assets_by_step.setdefault(event.step_key or "", []).append(_asset_label(event.asset_key))
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            failed_steps.append(event.step_key or "")
            if error is None and event.step_failure_data.error:
                error = root_cause(event.step_failure_data.error)
    assets = [a for step in failed_steps for a in assets_by_step.get(step, [step])]
    return sorted(set(assets)), error


def root_cause(err) -> str:
    """The user's own exception, not Dagster's "Error occurred while executing op" wrapper."""
    while err.cause is not None:
        err = err.cause
    return err.message.strip()


@dg.run_failure_sensor(
    monitor_all_code_locations=True,
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="One webhook alert per failed run: run id, failing assets, error, UI link.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, alerts: AlertSink) -> None:
    run = context.dagster_run
    assets, step_error = failed_assets(context.instance, run.run_id)
    error = step_error or context.failure_event.message or "run failed before any step ran"
    fields = {"Run": run.run_id, "Job": run.job_name, "Assets": ", ".join(assets) or "(none)"}
    if run.tags.get("dagster/partition"):
        fields["Partition"] = run.tags["dagster/partition"]
    if run.tags.get("dagster/retry_number"):
        fields["Retry"] = run.tags["dagster/retry_number"]
    fields["Error"] = error[:ERROR_CHARS]
    alerts.send(f"Run failed: {run.job_name}", fields, alerts.link(f"/runs/{run.run_id}"))


FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
SEEN_RUNS_KEPT = 500  # runs remembered in the cursor, so a run whose tags change later is not re-alerted


@dg.sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="One webhook alert per failed asset check evaluation (severity ERROR or WARN).",
)
def alert_on_check_failure(context: dg.SensorEvaluationContext, alerts: AlertSink) -> dg.SkipReason:
    """Reads the check evaluations of each run once it has finished.

    Runs, not the event log, carry the cursor: the embedded instance shards its event log
    per run, so a global event cursor is not available there, while finished runs are.
    """
    cursor = json.loads(context.cursor) if context.cursor else {"after": None, "seen": []}
    after = dt.datetime.fromisoformat(cursor["after"]) if cursor["after"] else None
    seen = list(cursor["seen"])
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=FINISHED, updated_after=after),
        order_by="update_timestamp",
        ascending=True,
        limit=100,
    )
    sent = 0
    for record in records:
        run_id = record.dagster_run.run_id
        if run_id not in seen:
            sent += _alert_failed_checks(context.instance, run_id, alerts)
            seen.append(run_id)
        # Advance per run: if a later send fails, the alerts already sent are not repeated.
        context.update_cursor(
            json.dumps({"after": record.update_timestamp.isoformat(), "seen": seen[-SEEN_RUNS_KEPT:]})
        )
    return dg.SkipReason(f"{sent} failed check evaluation(s) alerted from {len(records)} finished run(s)")


def _alert_failed_checks(instance: dg.DagsterInstance, run_id: str, alerts: AlertSink) -> int:
    sent = 0
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data
        if evaluation.passed:
            continue
        asset = _asset_label(evaluation.asset_key)
        fields = {
            "Run": run_id,
            "Asset": asset,
            "Check": evaluation.check_name,
            "Severity": evaluation.severity.value,
            "Error": (evaluation.description or _metadata_text(evaluation.metadata))[:ERROR_CHARS],
        }
        alerts.send(f"Check failed: {asset} {evaluation.check_name}", fields, alerts.link(f"/runs/{run_id}"))
        sent += 1
    return sent


def _metadata_text(metadata: dict) -> str:
    return json.dumps({k: getattr(v, "value", v) for k, v in metadata.items()}, default=str)


def open_dead_letters(warehouse: Warehouse) -> int:
    """Open entries of `sync.dead_letter` (0 when the table does not exist yet).

    An entry is open until it is replayed or resolved: the reverse-sync layer marks that
    in a `status` column (`open`) or a `resolved_at`/`replayed_at` timestamp.
    """
    if not warehouse.table_exists(*DEAD_LETTER):
        return 0
    columns = {name for name, _ in warehouse.columns(*DEAD_LETTER)}
    where = "TRUE"
    if "status" in columns:
        where = "status = 'open'"
    elif "resolved_at" in columns:
        where = "resolved_at IS NULL"
    elif "replayed_at" in columns:
        where = "replayed_at IS NULL"
    with warehouse.connect() as con:
        return int(con.scalar(f'SELECT count(*) FROM "{DEAD_LETTER[0]}"."{DEAD_LETTER[1]}" WHERE {where}'))


def _dead_letter_by_sync(warehouse: Warehouse) -> str:
    columns = {name for name, _ in warehouse.columns(*DEAD_LETTER)}
    group = next((c for c in ("sync", "sync_name", "destination", "system") if c in columns), None)
    if group is None:
        return ""
    with warehouse.connect() as con:
        rows = con.rows(
            f'SELECT "{group}", count(*) FROM "{DEAD_LETTER[0]}"."{DEAD_LETTER[1]}" GROUP BY 1 ORDER BY 1'
        )
    return ", ".join(f"{name}: {n}" for name, n in rows)


@dg.sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Alerts when the number of open sync.dead_letter entries grows.",
)
def alert_on_dead_letter_growth(
    context: dg.SensorEvaluationContext, alerts: AlertSink, warehouse: dg.ResourceParam[Warehouse]
) -> dg.SkipReason:
    before = int(context.cursor) if context.cursor else 0
    now_open = open_dead_letters(warehouse)
    if now_open > before:
        fields = {"Open entries": f"{before} → {now_open}", "Table": "sync.dead_letter"}
        by_sync = _dead_letter_by_sync(warehouse)
        if by_sync:
            fields["By sync"] = by_sync
        fields["Replay"] = "hub dlq list; hub dlq replay"
        alerts.send("Dead-letter queue grew", fields, alerts.link("/assets/sync/dead_letter"))
    context.update_cursor(str(now_open))
    return dg.SkipReason(f"{now_open} open dead-letter entries (was {before})")


SENSORS = [alert_on_run_failure, alert_on_check_failure, alert_on_dead_letter_growth]
RESOURCES: dict = {"alerts": alert_sink_from_env(), "warehouse": warehouse_from_env()}
