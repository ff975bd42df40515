"""No dead run blocks the hub, and a waiting run says what it waits for.

The embedded warehouse has one writer, so its steps share one slot of the `warehouse` pool.
A run whose process was killed (SIGKILL, OOM) never gives its slot back, and every later run
would wait for it forever, saying so only at DEBUG. Two guards:

- `reap_dead_runs`: a run started by `hub run` carries the host and pid of its process
  (`owner_tags`); when that process is gone while the run still holds or waits for slots,
  the run is marked failed and its slots are freed. A run whose record is already finished
  has its leftover slots freed too. Runs launched by the daemon (UI, schedules, sensors) are
  watched by Dagster's run monitoring (`dagster.yaml`), which does the same for them.
- `waits`: for every step waiting for a pool slot, which run holds the slot and since when.
  `guarded_execute` (used by `hub run`) reaps before it starts and, while its run waits,
  reaps again and writes the wait at INFO into the run's own log every
  `HUB_WAIT_REPORT_SECONDS` (default 30); the
  `pool_waits` sensor does the same for runs the daemon launched.

Dagster keeps pool slots in its event-log storage and offers no public call to list or free
them (the UI's "free slots" button goes through the same storage methods), so this module
is the one place that reaches `instance.event_log_storage` for them.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from dataclasses import dataclass

import dagster as dg

from integration_hub import settings
from integration_hub.definitions import dagster_internals

HOST_TAG, PID_TAG = "hub/host", "hub/pid"


def owner_tags() -> dict[str, str]:
    """Tags that tie a run to the process executing it in place (`hub run`)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner_gone(run: dg.DagsterRun) -> bool:
    tags = run.tags
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False  # not ours to judge: the daemon's run monitoring watches it
    return not _alive(int(tags[PID_TAG]))


def reap_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Free the pool slots of runs that can no longer release them; returns what was done."""
    storage = instance.event_log_storage
    done = []
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            if not _owner_gone(run):
                continue
            instance.report_run_failed(
                run,
                message=f"the process that ran it (pid {run.tags[PID_TAG]}) is gone; its pool slots are freed",
            )
            done.append(
                f"run {run_id} ({run.job_name}): its process {run.tags[PID_TAG]} is gone, marked failed"
            )
        storage.free_concurrency_slots_for_run(run_id)
        done.append(f"freed the pool slots of run {run_id}")
    return done


@dataclass(frozen=True)
class Wait:
    run_id: str
    step_key: str
    pool: str
    since: dt.datetime
    holders: tuple[str, ...]  # "run <id> (<job>, step <key>, since <time>)"

    def message(self, now: dt.datetime | None = None) -> str:
        now = now or dt.datetime.now(dt.UTC)
        minutes = max(0.0, (now - self.since).total_seconds()) / 60
        held = "; ".join(self.holders) or "no run (the slot should come free within seconds)"
        return (
            f"step {self.step_key} waits for pool '{self.pool}' since {self.since:%H:%M:%S} UTC "
            f"({minutes:.1f} min); held by {held}"
        )


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def waits(instance: dg.DagsterInstance, run_id: str | None = None) -> list[Wait]:
    """Every step (of `run_id`, or of any run) waiting for a pool slot, with who holds the pool."""
    storage = instance.event_log_storage
    found = []
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        assigned = {(p.run_id, p.step_key): _utc(p.assigned_timestamp) for p in info.pending_steps}
        holders = []
        for slot in info.claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            since = assigned.get((slot.run_id, slot.step_key))
            holders.append(
                f"run {slot.run_id} ({run.job_name if run else 'unknown job'}, step {slot.step_key}"
                + (f", since {since:%H:%M:%S} UTC)" if since else ")")
            )
        for step in info.pending_steps:
            if step.assigned_timestamp is None and (run_id is None or step.run_id == run_id):
                found.append(
                    Wait(step.run_id, step.step_key, pool, _utc(step.enqueued_timestamp), tuple(holders))
                )
    return found


class _WaitReporter(threading.Thread):
    """Writes the run's waits into its log at INFO until stopped."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, every: float):
        super().__init__(name="hub-wait-reporter", daemon=True)
        self.instance, self.run_id, self.every = instance, run_id, every
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            run = self.instance.get_run_by_id(self.run_id)
            mine = waits(self.instance, self.run_id) if run is not None else []
            if mine:  # a holder that died meanwhile must not keep this run waiting
                for line in reap_dead_runs(self.instance):
                    self.instance.report_engine_event(line, run)
            for wait in mine:
                self.instance.report_engine_event(wait.message(), run)


def guarded_execute(job, instance: dg.DagsterInstance, tags: dict | None = None, code_location: bool = False,
                    **kwargs):  # fmt: skip
    """`job.execute_in_process` that first frees what dead runs hold, and reports its own waits.

    `code_location=True`: `job` is one of the hub's code location (`integration_hub.definitions`),
    and the run is recorded with its origin, so the UI lists it under the job
    (`dagster_internals.execute_as_code_location`); `partition_key` and `run_config` are passed on.
    """
    for line in reap_dead_runs(instance):
        print(f"hub: {line}", flush=True)
    run_id = kwargs.pop("run_id", None) or str(uuid.uuid4())
    reporter = _WaitReporter(instance, run_id, settings.wait_report_seconds())
    reporter.start()
    tags = {**(tags or {}), **owner_tags()}
    try:
        if code_location:
            if unknown := set(kwargs) - {"partition_key", "run_config", "raise_on_error"}:
                raise TypeError(f"a run recorded with the code location's origin takes no {sorted(unknown)}")
            return dagster_internals.execute_as_code_location(
                job.name, instance, run_id=run_id, tags=tags,
                partition_key=kwargs.get("partition_key"), run_config=kwargs.get("run_config"),
            )  # fmt: skip
        return job.execute_in_process(instance=instance, run_id=run_id, tags=tags, **kwargs)
    finally:
        reporter.stopped.set()


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Frees pool slots of runs whose process is gone, and writes into each waiting run's log "
    "which run holds the pool it waits for.",
)
def pool_waits(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    instance = context.instance
    done = reap_dead_runs(instance)
    reported = 0
    for wait in waits(instance):
        run = instance.get_run_by_id(wait.run_id)
        if run is not None and not run.is_finished:
            instance.report_engine_event(wait.message(), run)
            reported += 1
    return dg.SkipReason(f"{reported} waiting step(s) reported; " + ("; ".join(done) or "no dead run"))


SENSORS: list = [pool_waits]
