"""The operations layer: alerting sensors, retention, load-contract checks, the alert sink,
and the scale-out jobs.

Load contracts: every raw asset gets a blocking `load_contract` check that reads the
counts its load recorded in this run. Rows refused by the adapter's row contract are
quarantined, not lost; a few (up to `HUB_CONTRACT_MAX_REJECT_SHARE`, default 10%) make a
WARN, more make an ERROR, which stops the layers below from rebuilding on a source whose
schema changed (a renamed field refuses every row), and fires the check alert. The checks
of one load step (one system) run as one step, so an ERROR on one resource also holds
back the layers below its sibling resources in that run.

Scale-out: for each job named in `SCALE_OUT_JOBS` (from `integration_hub.automation`),
a `<job>_celery` twin selects the same assets but runs each step on a Celery worker
(dagster-celery; broker `HUB_CELERY_BROKER_URL`, default RabbitMQ on localhost; queue
`HUB_CELERY_QUEUE`, default `dagster`). It needs
the scale-out instance (`HUB_DAGSTER_STORAGE_URL`) and the Postgres warehouse
(`HUB_WAREHOUSE_URL`), since its steps run in other processes, possibly on other
machines; see docs/operations.md.
"""

import os

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster_celery import celery_executor

from assets import ingestion
from integration_hub import alerts, automation, retention
from resources.alerts import alert_sink_from_env
from resources.warehouse import Warehouse, warehouse_from_env

SCALE_OUT_JOBS = ("nightly", "hourly_sources")
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"


def _source(var: str, default: str):
    """Config naming the variable when it is set, so a broker password never lands in run config."""
    return {"env": var} if os.environ.get(var) else default


def celery_job(job: UnresolvedAssetJobDefinition) -> UnresolvedAssetJobDefinition:
    """The same asset selection as `job`, each step executed by a Celery worker."""
    executor = celery_executor.configured(
        {
            "broker": _source("HUB_CELERY_BROKER_URL", DEFAULT_BROKER),
            "backend": _source("HUB_CELERY_BACKEND_URL", "rpc://"),
            # Workers started with `-q <queue>` take only this hub's steps.
            "config_source": {"task_default_queue": os.environ.get("HUB_CELERY_QUEUE", "dagster")},
        },
        name="hub_celery_executor",
    )
    return dg.define_asset_job(
        name=f"{job.name}_celery",
        selection=job.selection,
        config=job.config,
        description=f"{job.name} on Celery workers (scale-out profile).",
        tags=job.tags,
        partitions_def=job.partitions_def,
        op_retry_policy=job.op_retry_policy,
        executor_def=executor,
    )


def _loaded(context: dg.AssetCheckExecutionContext) -> dict[dg.AssetKey, tuple[int, int]]:
    """Asset → (rows in, rows rejected) of this run's loads, from the run's own materializations.

    The load step records both counts on each materialization (and in `audit.data_movement`);
    reading them from the instance costs the same at any data size and does not open the
    warehouse, which in a multiprocess run another step may hold (DuckDB: one process at a time).
    """
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    counts: dict[dg.AssetKey, tuple[int, int]] = {}
    for mat in (r.asset_materialization for r in records):
        if mat is None:
            continue
        loaded, refused = (
            int(getattr(mat.metadata.get(k), "value", 0) or 0) for k in ("rows_loaded", "rows_rejected")
        )
        rows_in, rejected = counts.get(mat.asset_key, (0, 0))
        counts[mat.asset_key] = (rows_in + loaded + refused, rejected + refused)
    return counts


def _contract(warehouse: Warehouse, run_id: str, key: dg.AssetKey, rows_in: int, rejected: int):
    system, resource = key.path[1], key.path[-1]
    share = rejected / rows_in if rows_in else 0.0
    metadata = {"rows_in": rows_in, "rows_rejected": rejected, "reject_share": round(share, 4)}
    if not rejected:
        return dg.AssetCheckResult(asset_key=key, check_name="load_contract", passed=True, metadata=metadata)
    reasons = _top_reasons(warehouse, f"{system}__{resource}", run_id)
    severe = share > float(os.environ.get("HUB_CONTRACT_MAX_REJECT_SHARE", "0.1"))
    return dg.AssetCheckResult(
        asset_key=key,
        check_name="load_contract",
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR if severe else dg.AssetCheckSeverity.WARN,
        description=(
            f"{'Contract violation: ' if severe else ''}{rejected} of {rows_in} rows of {system}.{resource} "
            f"broke the row contract ({share:.1%}) and are in quarantine.{system}__{resource}: {reasons}"
        ),
        metadata=metadata,
    )


def _load_contract_checks(step: str, keys: list[dg.AssetKey]) -> dg.AssetChecksDefinition:
    """The `load_contract` checks of the raw assets one load `step` writes, in one step: one step
    process per load rather than one per resource (each costs seconds with the multiprocess executor)."""
    specs = [
        dg.AssetCheckSpec("load_contract", asset=k, blocking=True, description=_CONTRACT_DOC) for k in keys
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{step}_load_contract",
        can_subset=True,
        required_resource_keys={"warehouse"},
    )
    def load_contracts(context: dg.AssetCheckExecutionContext):
        counts = _loaded(context)
        for check in sorted(context.selected_asset_check_keys, key=lambda c: c.asset_key.path):
            yield _contract(
                context.resources.warehouse,
                context.run.run_id,
                check.asset_key,
                *counts.get(check.asset_key, (0, 0)),
            )

    return load_contracts


_CONTRACT_DOC = (
    "Share of rows the adapter refused in this run's load (quarantined): WARN if any, ERROR if many."
)


def _top_reasons(warehouse: Warehouse, table: str, run_id: str) -> str:
    with warehouse.connect() as con:
        rows = con.rows(
            f'SELECT reason, count(*) FROM quarantine."{table}" WHERE run_id = ? GROUP BY 1 ORDER BY 2 DESC LIMIT 3',
            [run_id],
        )
    return "; ".join(f"{reason} ({n})" for reason, n in rows)


# One load step (a system's multi-asset) → its raw asset keys.
RAW_LOADS = {
    a.node_def.name: keys
    for a in ingestion.ASSETS
    if (keys := sorted((k for k in a.keys if k.path[0] == "raw"), key=lambda k: k.path))
}

ASSETS: list = [retention.retention]
CHECKS: list = [_load_contract_checks(step, keys) for step, keys in sorted(RAW_LOADS.items())]
JOBS: list = [retention.retention_job] + [
    celery_job(job)
    for job in getattr(automation, "JOBS", [])
    if isinstance(job, UnresolvedAssetJobDefinition) and job.name in SCALE_OUT_JOBS
]
SCHEDULES: list = [retention.retention_schedule]
SENSORS: list = alerts.SENSORS
RESOURCES: dict = {"alerts": alert_sink_from_env(), "warehouse": warehouse_from_env()}
