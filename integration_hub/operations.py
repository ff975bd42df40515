"""The operations layer: alerting sensors, retention, load-contract checks, the alert sink,
and the scale-out jobs.

Load contracts: every raw asset gets a blocking `load_contract` check that reads the
counts its load recorded in this run. Rows refused by the adapter's row contract are quarantined, not lost;
a few (up to `HUB_CONTRACT_MAX_REJECT_SHARE`, default 10%) make a WARN, more make an
ERROR, which stops the layers below from rebuilding on a source whose schema changed
(a renamed field refuses every row), and fires the check alert.

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


def _loaded(context: dg.AssetCheckExecutionContext, key: dg.AssetKey) -> tuple[int, int]:
    """(rows in, rows rejected) of this run's loads of `key`, from the run's own materializations.

    The load step records both counts on each materialization (and in `audit.data_movement`);
    reading them from the instance costs the same at any data size and does not open the
    warehouse, which in a multiprocess run another step may hold (DuckDB: one process at a time).
    """
    records = context.instance.get_records_for_run(
        context.run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    rows_in = rejected = 0
    for record in records:
        mat = record.asset_materialization
        if mat is None or mat.asset_key != key:
            continue
        loaded, refused = (
            int(getattr(mat.metadata.get(k), "value", 0) or 0) for k in ("rows_loaded", "rows_rejected")
        )
        rows_in, rejected = rows_in + loaded + refused, rejected + refused
    return rows_in, rejected


def _load_contract_check(key: dg.AssetKey) -> dg.AssetChecksDefinition:
    system, resource = key.path[1], key.path[-1]

    @dg.asset_check(asset=key, name="load_contract", blocking=True, description=_CONTRACT_DOC)
    def load_contract(context: dg.AssetCheckExecutionContext, warehouse: Warehouse) -> dg.AssetCheckResult:
        rows_in, rejected = _loaded(context, key)
        share = rejected / rows_in if rows_in else 0.0
        metadata = {"rows_in": rows_in, "rows_rejected": rejected, "reject_share": round(share, 4)}
        if not rejected:
            return dg.AssetCheckResult(passed=True, metadata=metadata)
        reasons = _top_reasons(warehouse, f"{system}__{resource}", context.run.run_id)
        severe = share > float(os.environ.get("HUB_CONTRACT_MAX_REJECT_SHARE", "0.1"))
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR if severe else dg.AssetCheckSeverity.WARN,
            description=(
                f"{'Contract violation: ' if severe else ''}{rejected} of {rows_in} rows of {system}.{resource} "
                f"broke the row contract ({share:.1%}) and are in quarantine.{system}__{resource}: {reasons}"
            ),
            metadata=metadata,
        )

    return load_contract


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


RAW_KEYS = sorted(
    (key for a in ingestion.ASSETS for key in a.keys if key.path[0] == "raw"), key=lambda k: k.path
)

ASSETS: list = [retention.retention]
CHECKS: list = [_load_contract_check(key) for key in RAW_KEYS]
JOBS: list = [retention.retention_job] + [
    celery_job(job)
    for job in getattr(automation, "JOBS", [])
    if isinstance(job, UnresolvedAssetJobDefinition) and job.name in SCALE_OUT_JOBS
]
SCHEDULES: list = [retention.retention_schedule]
SENSORS: list = alerts.SENSORS
RESOURCES: dict = {"alerts": alert_sink_from_env(), "warehouse": warehouse_from_env()}
