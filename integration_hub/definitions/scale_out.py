"""The scale-out jobs: for each job named in `SCALE_OUT_JOBS` (from `integration_hub.definitions.automation`),
a `<job>_celery` twin selects the same assets but runs each step on a Celery worker
(dagster-celery; broker `HUB_CELERY_BROKER_URL`, default RabbitMQ on localhost; queue
`HUB_CELERY_QUEUE`, default `dagster`). It needs
the scale-out instance (`HUB_DAGSTER_STORAGE_URL`) and the Postgres warehouse
(`HUB_WAREHOUSE_URL`), since its steps run in other processes, possibly on other
machines; see docs/operations.md.
"""

import dagster as dg
from dagster_celery import celery_executor

from integration_hub import settings
from integration_hub.definitions import automation

SCALE_OUT_JOBS = ("nightly", "hourly_sources")
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"


def _source(var: str, default: str):
    """Config naming the variable when it is set, so a broker password never lands in run config."""
    return {"env": var} if settings.env(var) else default


def celery_job(job):
    """The same asset selection as `job`, each step executed by a Celery worker."""
    executor = celery_executor.configured(
        {
            "broker": _source("HUB_CELERY_BROKER_URL", DEFAULT_BROKER),
            "backend": _source("HUB_CELERY_BACKEND_URL", "rpc://"),
            # Workers started with `-q <queue>` take only this hub's steps.
            "config_source": {"task_default_queue": settings.celery_queue()},
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


JOBS: list = [celery_job(job) for job in automation.JOBS if job.name in SCALE_OUT_JOBS]


def resolve_job(name: str) -> dg.JobDefinition:
    """The code location's job `name`, resolved: how a Celery worker rebuilds the job of a scale-out
    run started by `hub run` (`dg.build_reconstructable_job` names this function and `name`)."""
    from integration_hub.definitions import defs  # this module is one of the layers `defs` assembles

    return defs.resolve_job_def(name)
