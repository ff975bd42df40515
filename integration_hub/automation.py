"""When things run: the hourly and nightly jobs, the payments landing sensor, the CRM change sensor.

Downstream layers follow their inputs through the jobs, not declarative automation. The
nightly job is the whole graph but housekeeping: every source (the ERP's nightly export,
plus a catch-up of the hourly systems and any pending settlement file, so the night's
canonical build sees one consistent cut) and every layer below it. A later layer joins
the nightly run by existing, with no edit here. One run per night (instead of one per
upstream change) keeps the DuckDB single writer free and makes "what ran last night" one
run to look at. Between nights, the hourly job and the sensors keep the raw layer fresh.

Incremental sources are daily-partitioned; scheduled and sensor runs target the partition
that contains now (the live edge, read from the stored cursor: see `assets/ingestion.py`).
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from integration_hub.adapters import crm, payments
from resources.systems import CrmClient, LandingFolder

HOURLY_SYSTEMS = ("crm", "shop", "billing")
HOUSEKEEPING_GROUP = "operations"  # retention runs on its own schedule, not in the nightly


def _raw(*systems: str) -> dg.AssetSelection:
    return dg.AssetSelection.key_prefixes(*(["raw", s] for s in systems))


def live_partition(at: dt.datetime | None = None) -> str:
    """The daily partition that contains `at` (default now, UTC): the live edge."""
    return (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%d")


hourly_job = dg.define_asset_job(
    "hourly_sources",
    selection=_raw(*HOURLY_SYSTEMS),
    description="CRM, shop and billing changes since their cursors, into raw_<system>.",
)
nightly_job = dg.define_asset_job(
    "nightly",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(HOUSEKEEPING_GROUP),
    description="Every source's changes, then every layer below them (staging, canonical, recon, sync).",
)
crm_job = dg.define_asset_job(
    "crm_changes", selection=_raw("crm"), description="The CRM's changes, as soon as it reports some."
)
payments_job = dg.define_asset_job(
    "payments_files", selection=_raw("payments"), description="Settlement files from the landing folder."
)


@dg.schedule(job=hourly_job, cron_schedule="5 * * * *", execution_timezone="UTC")
def hourly_sources_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=live_partition(context.scheduled_execution_time))


@dg.schedule(job=nightly_job, cron_schedule="0 2 * * *", execution_timezone="UTC")
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=live_partition(context.scheduled_execution_time))


@dg.sensor(job=payments_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def payments_landing(context: dg.SensorEvaluationContext, payments_client: LandingFolder):
    """One run per new or changed file in the landing folder.

    The cursor maps file name → SHA-256 of the content last requested, so an identical
    re-drop asks for nothing and a changed file asks for one run (which reports it).
    """
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for path in payments.pending(Path(payments_client.folder)):
        digest = payments.sha256(path)
        if seen.get(path.name) == digest:
            continue
        seen[path.name] = digest
        requests.append(
            dg.RunRequest(
                run_key=f"{path.name}@{digest[:16]}",
                run_config={"ops": {"raw_payments": {"config": {"files": [path.name]}}}},
                tags={"hub/file": path.name},
            )
        )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))


@dg.sensor(job=crm_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def crm_change_sensor(context: dg.SensorEvaluationContext, crm_client: CrmClient):
    """Asks the CRM cheaply whether anything changed since the cursor; if so, loads it now.

    The cursor is one second past the newest change seen (timestamps are whole seconds and
    `since` is inclusive), so a change triggers exactly one run.
    """
    answer = crm.changed_since(**crm_client.source_kwargs(), since=context.cursor or None)
    if not answer.get("changed") or not answer.get("latest"):
        return dg.SkipReason(f"no CRM change since {context.cursor or 'the beginning'}")
    latest = dt.datetime.strptime(answer["latest"], "%Y-%m-%dT%H:%M:%SZ")
    cursor = (latest + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"crm-changes-{answer['latest']}", partition_key=live_partition())
        ],
        cursor=cursor,
    )


JOBS: list = [hourly_job, nightly_job, crm_job, payments_job]
SCHEDULES: list = [hourly_sources_schedule, nightly_schedule]
SENSORS: list = [payments_landing, crm_change_sensor]
