"""A killed run never blocks the hub, and a waiting run says what it waits for (issue "No silent loss").

Drill on the hub's own embedded instance (`dagster.yaml` as `hub dagster-home` writes it: one
slot in the `warehouse` pool): a `hub run`-style run in another process takes the slot and is
SIGKILLed while holding it. A second run started meanwhile logs at INFO which run holds the
pool and since when, reaps the dead one (marked failed, slot freed) and completes; nothing
else is needed, no daemon, no manual step.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import dagster as dg
import pytest

from integration_hub.definitions import instance as hub_instance
from integration_hub.definitions import run_guard

LOCATION = textwrap.dedent(
    """
    import time
    import dagster as dg

    @dg.asset(pool="warehouse")
    def holds_the_writer():
        time.sleep(120)

    @dg.asset(pool="warehouse")
    def quick():
        return 1

    defs = dg.Definitions(assets=[holds_the_writer, quick])
    """
)
HOLDER = textwrap.dedent(
    """
    import sys, dagster as dg
    sys.path.insert(0, sys.argv[1])
    from location import defs
    from integration_hub.definitions import run_guard
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.get() as instance:
        run_guard.guarded_execute(job, instance, asset_selection=[dg.AssetKey("holds_the_writer")])
    """
)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("HUB_WAIT_REPORT_SECONDS", "1")
    monkeypatch.delenv("HUB_DAGSTER_STORAGE_URL", raising=False)
    hub_instance.ensure_dagster_home()
    (tmp_path / "location.py").write_text(LOCATION)
    return tmp_path


def _holder_of(instance: dg.DagsterInstance, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        claimed = instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots
        if claimed:
            return claimed[0].run_id
        time.sleep(0.2)
    raise AssertionError("the holder never claimed the warehouse slot")


def test_a_killed_run_gives_its_slot_back_and_the_waiting_run_says_who_held_it(home):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home)], env=os.environ.copy())
    try:
        with dg.DagsterInstance.get() as instance:
            held_by = _holder_of(instance)
            sys.path.insert(0, str(home))
            try:
                from location import defs  # the tmp location written by the fixture
            finally:
                sys.path.remove(str(home))
            job = defs.resolve_implicit_global_asset_job_def()
            outcome: dict = {}
            waiting = threading.Thread(
                target=lambda: outcome.setdefault(
                    "result", run_guard.guarded_execute(job, instance, asset_selection=[dg.AssetKey("quick")])
                )
            )
            waiting.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not [
                w for w in run_guard.waits(instance) if w.step_key == "quick"
            ]:
                time.sleep(0.2)
            time.sleep(2.5)  # two reports of the wait
            [wait] = [w for w in run_guard.waits(instance) if w.step_key == "quick"]
            assert f"held by run {held_by}" in wait.message()
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(10)
            waiting.join(90)
            assert not waiting.is_alive(), "the waiting run is still blocked by the dead one"
            result = outcome["result"]
            assert result.success
            logs = [
                e.message
                for e in instance.all_logs(result.run_id)
                if e.dagster_event and e.dagster_event.is_engine_event
            ]
            told = [m for m in logs if "waits for pool 'warehouse'" in m]
            assert told and f"held by run {held_by} (__ASSET_JOB, step holds_the_writer" in told[0], logs
            assert any(f"run {held_by}" in m and "is gone, marked failed" in m for m in logs), logs
            dead = instance.get_run_by_id(held_by)
            assert dead.status == dg.DagsterRunStatus.FAILURE
            assert instance.event_log_storage.get_concurrency_info("warehouse").claimed_slots == []
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_finished_runs_leftover_slot_is_freed_and_live_holders_are_left_alone(home):
    with dg.DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        run = instance.create_run_for_job(
            dg.GraphDefinition("g", node_defs=[]).to_job(), tags={**run_guard.owner_tags()}
        )
        storage.claim_concurrency_slot("warehouse", run.run_id, "step")
        assert run_guard.reap_dead_runs(instance) == [], "its process (this one) is alive: left alone"
        instance.report_run_failed(run)
        assert run_guard.reap_dead_runs(instance) == [f"freed the pool slots of run {run.run_id}"]
        assert storage.get_concurrency_info("warehouse").claimed_slots == []


def test_a_cli_run_is_recorded_under_its_job_in_the_code_location(tmp_path, monkeypatch):
    """`hub run` / `hub demo` runs carry the code location's origin: the UI's Jobs → job → Runs
    lists runs by the `.dagster/repository` tag that origin gives, and re-executes from it."""
    from integration_hub.definitions import defs

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(hub_instance.dagster_yaml())
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = run_guard.guarded_execute(
            defs.resolve_job_def("retention"), instance, tags={"hub/trigger": "cli"}, code_location=True
        )
        assert result.success
        [record] = instance.get_run_records(
            dg.RunsFilter(
                job_name="retention",
                tags={".dagster/repository": "__repository__@integration_hub.definitions"},
            )
        )
        run = record.dagster_run
        assert run.run_id == result.run_id and run.tags["hub/trigger"] == "cli"
        assert run.remote_job_origin.location_name == "integration_hub.definitions"
        steps = [e for e in result.all_events if e.event_type_value == "ENGINE_EVENT"]
        assert any(f"in process (pid: {os.getpid()})" in e.message for e in steps), (
            "steps ran in this process"
        )
