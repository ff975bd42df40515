"""When things run: the 15-minute `changes` path, the nightly, the hourly loads, a sensor per
system that can tell of changes or drops files, and the daily retention.

How a change travels: every 15 minutes the `changes` job loads what the frequently loaded
systems changed since their cursors and takes it through every layer below raw to the
destinations. Each layer does work that follows the change: SQL models and the identity maps
rebuild only the keys their inputs' change logs name (`engine.incremental`), each sync plans
only the keys that may have changed (`sync_engine.scope`), and reconciliation reads the
current tables. The sensors load a system's changes into raw as soon as it reports some; the
next `changes` run carries them on. So a shop order reaches the support desk within one cycle
(15 minutes plus the run), against a target of 20 (`Sync.latency_target`).

The nightly job is the whole graph but housekeeping: the ERP's nightly export (the one source
loaded only then), a catch-up of every other source and pending dropped file, and every
layer below them, incrementally as in any run. What stays worth doing in full once a night is
the syncs' whole plans (tag `hub/full_sync_plan`): they resend what a destination refused and
was replayed, and repair anything the change logs cannot see (an order moved to another
customer changes the old customer's totals too). Reconciliation always compares whole tables.

All of them write one embedded warehouse, which has one writer: every step that writes it
takes the single slot of the `warehouse` pool, so a run that finds it busy waits (queued, its
wait reported by `run_guard`), whichever launched it: schedule, sensor, UI or `hub run`.

Every job, sensor and selection here is derived from the system registry: a system declares
`schedule="hourly"` to join the hourly job, a `changes` probe to get a change sensor
(`<system>_change_sensor`, job `<system>_changes`), and `location="folder"` to get a landing
sensor (`<system>_landing`, job `<system>_files`).

Incremental sources are daily-partitioned; scheduled and sensor runs target the partition
that contains now (the live edge, read from the stored cursor: see `assets/ingestion.py`).
"""

import datetime as dt
import json
from pathlib import Path

import dagster as dg

from assets.retention import GROUP as HOUSEKEEPING_GROUP
from assets.retention import retention
from assets.reverse_sync import FULL_PLAN_TAG
from integration_hub import settings, systems
from integration_hub.systems import System
from integration_hub.systems.kit import files
from integration_hub.warehouse import Warehouse, WarehouseLockedError, quote
from resources.systems import SystemClient, resource_key

# A sensor tick must answer within Dagster's evaluation timeout: it waits this long for the
# embedded warehouse's file lock, then leaves the look-up to the next tick.
LOOKUP_LOCK_WAIT = 5.0


def hourly_systems() -> list[str]:
    return [name for name, s in systems.sources().items() if s.schedule == "hourly"]


def _raw(*names: str) -> dg.AssetSelection:
    return dg.AssetSelection.key_prefixes(*(["raw", s] for s in names))


def live_partition(at: dt.datetime | None = None) -> str:
    """The daily partition that contains `at` (default now, UTC): the live edge."""
    return (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).strftime("%Y-%m-%d")


hourly_job = dg.define_asset_job(
    "hourly_sources",
    selection=_raw(*hourly_systems()),
    description=f"Changes since their cursors of the hourly systems ({', '.join(hourly_systems())}), into raw.",
)


def nightly_systems() -> list[str]:
    return [name for name, s in systems.sources().items() if s.schedule == "nightly"]


_EVERYTHING = dg.AssetSelection.all() - dg.AssetSelection.groups(HOUSEKEEPING_GROUP)
nightly_job = dg.define_asset_job(
    "nightly",
    selection=_EVERYTHING,
    description="Every source's changes, then every layer below them (staging, canonical, recon, sync); "
    "the syncs plan every key.",
    tags={FULL_PLAN_TAG: "true"},
)
changes_job = dg.define_asset_job(
    "changes",
    # Seeds are files of the repository: they change with a deployment, and the nightly reloads them.
    selection=_EVERYTHING - _raw(*nightly_systems()) - dg.AssetSelection.key_prefixes(["seeds"]),
    description="Every 15 minutes: the changes of every source but the nightly ones "
    f"({', '.join(nightly_systems())}), through every layer to the destinations, by changed keys.",
)
retention_job = dg.define_asset_job(
    "retention", selection=[retention], description="Deletes rows past their retention rule and audits it."
)


@dg.schedule(
    job=hourly_job,
    cron_schedule="5 * * * *",
    execution_timezone="UTC",
    description="Five past every hour: the hourly systems' changes since their cursors.",
)
def hourly_sources_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=live_partition(context.scheduled_execution_time))


@dg.schedule(
    job=nightly_job,
    cron_schedule="0 2 * * *",
    execution_timezone="UTC",
    description="02:00 UTC: every source, then every layer below it.",
)
def nightly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=live_partition(context.scheduled_execution_time))


@dg.schedule(
    job=changes_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 15 minutes: each changed source through every layer to its destinations.",
)
def changes_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    return dg.RunRequest(partition_key=live_partition(context.scheduled_execution_time))


retention_schedule = dg.ScheduleDefinition(
    job=retention_job,
    cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="03:30 (the instance's time zone): retention after the nightly run.",
)


def landing_sensor(system: System) -> tuple:
    """One run per new or changed file in a folder system's landing folder, once it settled.

    The cursor maps file name → SHA-256 of the content last requested, so an identical
    re-drop asks for nothing and a changed file asks for one run (which replaces its lines).
    A file the cursor does not know yet is first looked up in the loads' own record of the
    files they took (`System.files_table`): a run the sensor did not ask for (`hub demo`,
    `hub run`, a UI materialization) may have loaded it already, and then nothing is asked
    for. While the embedded warehouse is busy with a run, that record cannot be read: the
    tick skips and the next one asks again.
    A file modified within `HUB_LANDING_SETTLE_SECONDS` may still be being written: it is
    neither hashed nor remembered, so a later tick asks for it once it settled (a run asked
    for earlier would only find it waiting). An entry that is no regular file (a directory, a
    symbolic link: never followed) is not asked for; it is remembered so its warning shows
    once, and the next full load records it as rejected.
    """
    name = system.name
    job = dg.define_asset_job(
        f"{name}_files",
        selection=_raw(name),
        description=f"{system.description} Files from the landing folder.",
    )

    @dg.sensor(
        name=f"{name}_landing",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={resource_key(name), "warehouse"},
        description=landing_sensor.__doc__.splitlines()[0],
    )
    def _landing(context: dg.SensorEvaluationContext, **_invoked_with):
        # Dagster hands required resources as keywords when a sensor is invoked directly (tests).
        client: SystemClient = getattr(context.resources, resource_key(name))
        warehouse: Warehouse = context.resources.warehouse
        seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
        settle = settings.landing_settle_seconds()
        requests = []
        for entry in files.entries(Path(client.source_kwargs()["folder"]), system.file_pattern):
            if entry.problem is not None:
                if seen.get(entry.name) != entry.marker:
                    context.log.warning(f"{name} landing: {entry.name} is {entry.problem}; not loaded")
                    seen[entry.name] = entry.marker
                continue
            if not entry.settled(settle):
                continue
            try:
                digest = files.sha256(entry.path)
            except (OSError, files.NotLoadable) as exc:  # removed, unreadable or swapped since listed
                context.log.warning(
                    f"{name} landing: {entry.name} cannot be read now ({exc}); tried next tick"
                )
                continue
            if seen.get(entry.name) == digest:
                continue
            seen[entry.name] = digest
            requests.append(
                dg.RunRequest(
                    run_key=f"{entry.name}@{digest[:16]}",
                    run_config={"ops": {f"raw_{name}": {"config": {"files": [entry.name]}}}},
                    tags={"hub/file": entry.name},
                )
            )
        if requests:
            try:
                recorded = loaded_files(warehouse, system)
            except WarehouseLockedError:
                return dg.SkipReason(
                    f"{name} landing: {len(requests)} file(s) to look up, but a run holds the warehouse; "
                    "the next tick asks again"
                )
            taken = [r for r in requests if recorded.get(r.tags["hub/file"]) == seen[r.tags["hub/file"]]]
            if taken:
                context.log.info(
                    f"{name} landing: {len(taken)} file(s) already loaded by another run, not asked for: "
                    + ", ".join(r.tags["hub/file"] for r in taken[:5])
                    + (" …" if len(taken) > 5 else "")
                )
            requests = [r for r in requests if r not in taken]
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True))

    return job, _landing


def loaded_since(warehouse: Warehouse, system: str) -> str | None:
    """When `system`'s last completed load into raw began (its dlt load id), as the probes'
    `since`; None when nothing was loaded."""
    with warehouse.connect(lock_wait=LOOKUP_LOCK_WAIT) as con:
        if not con.rows(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = '_dlt_loads'",
            [f"raw_{system}"],
        ):
            return None
        newest = con.scalar(f"SELECT max(load_id) FROM {quote('raw_' + system, '_dlt_loads')} WHERE status = 0")
    if not newest:
        return None
    return dt.datetime.fromtimestamp(float(newest), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def loaded_files(warehouse: Warehouse, system: System) -> dict[str, str]:
    """File name → SHA-256 of the version a load last took (loaded, replaced or rejected), read
    from the system's `files_table`; empty when it declares none or nothing was loaded yet."""
    if system.files_table is None:
        return {}
    schema, table = f"raw_{system.name}", system.files_table
    with warehouse.connect(lock_wait=LOOKUP_LOCK_WAIT) as con:
        exists = con.scalar(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        )
        if not exists:
            return {}
        rows = con.rows(
            "SELECT file_name, sha256 FROM (SELECT file_name, sha256, row_number() OVER "
            f"(PARTITION BY file_name ORDER BY seen_at DESC) AS newest FROM {quote(schema, table)}) AS f "
            "WHERE newest = 1 AND sha256 IS NOT NULL"
        )
    return dict(rows)


def change_sensor(system: System) -> tuple:
    """Asks the system cheaply whether anything changed since the cursor; if so, loads it now.

    The cursor is one second past the newest change seen (timestamps are whole seconds and
    `since` is inclusive), so a change triggers exactly one run. A new sensor starts where the
    system's last completed load began, so what another run loaded launches nothing.
    """
    name = system.name
    job = dg.define_asset_job(
        f"{name}_changes", selection=_raw(name), description=f"{name}'s changes, as soon as it reports some."
    )

    @dg.sensor(
        name=f"{name}_change_sensor",
        job=job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={resource_key(name), "warehouse"},
        description=change_sensor.__doc__.splitlines()[0],
    )
    def _changes(context: dg.SensorEvaluationContext, **_invoked_with):
        client: SystemClient = getattr(context.resources, resource_key(name))
        since = context.cursor or None
        if since is None:  # a new sensor: what raw holds was loaded by another run (the demo, `hub run`)
            try:
                since = loaded_since(context.resources.warehouse, name)
            except WarehouseLockedError:
                return dg.SkipReason(f"{name}: a run holds the warehouse; the next tick asks again")
        answer = system.changes(**client.source_kwargs(), since=since)
        if not answer.get("changed") or not answer.get("latest"):
            return dg.SkipReason(f"no {name} change since {context.cursor or 'the beginning'}")
        latest = dt.datetime.strptime(answer["latest"], "%Y-%m-%dT%H:%M:%SZ")
        cursor = (latest + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"{name}-changes-{answer['latest']}", partition_key=live_partition())
            ],
            cursor=cursor,
        )

    return job, _changes


_triggered = [
    *(landing_sensor(s) for s in systems.sources().values() if s.location == "folder"),
    *(change_sensor(s) for s in systems.sources().values() if s.changes is not None),
]
JOBS: list = [changes_job, hourly_job, nightly_job, retention_job, *(job for job, _ in _triggered)]
SCHEDULES: list = [changes_schedule, hourly_sources_schedule, nightly_schedule, retention_schedule]
SENSORS: list = [sensor for _, sensor in _triggered]
