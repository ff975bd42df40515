"""Kill drills (issue "No silent loss"): a `hub run` SIGKILLed in the middle of a canonical build
and of a push, two runs started at once on the embedded warehouse, a Postgres warehouse that is
down at start. Each drill ends with the warehouse and the destinations equal to a fault-free
run's, compared in the stores themselves (the warehouse's tables, the desk's own database), not
in the hub's counters.

One settled hub serves the module: a full build, then one fault-free `hub run nightly`, which
reads back what the build pushed (billing's new invoices, the CRM's new accounts). From there a
correct run changes nothing but the reconciliation history, so that state's fingerprint is the
reference; recon tables keep every run's findings and are compared by their latest run. Runs
are real `hub run` processes on the embedded DuckDB warehouse and the instance in
`$DAGSTER_HOME`, killed with SIGKILL as the OOM killer would kill them: no handler runs, and
only the next `hub run` (its run guard) can free what they held. The drill that ticks the
sandbox comes after the drills that compare with the reference.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from assets.syncs import get_sync
from integration_hub import settings
from integration_hub.definitions import run_guard
from integration_hub.definitions.instance import get_instance
from integration_hub.warehouse import Warehouse, quote
from tests.test_drills_world import RAW, _table_digest, build_everything, fingerprint, start_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).parents[1]
HUB = [sys.executable, "-c", "from integration_hub.cli import main; main()"]
CANONICAL_STEP = "canonical__order_line"  # the largest canonical model: built, vetted, then swapped
SWAPPED = '"canonical"."order_line"'
# `hub run nightly` that pauses inside the swap of one model, after the old table was dropped and
# before the new one is renamed into its place, and says so in a marker file. A swap is over too
# soon for a kill timed from outside (the step's start in the event log) to land in it: such a
# kill lands anywhere in the step, mostly before the scratch table exists. This one lands in the
# swap every time; the process is otherwise `hub run nightly` itself.
PAUSE_IN_SWAP = """
import sys, time
from integration_hub.cli import main
from integration_hub.warehouse import Connection

marker, table = sys.argv[1], sys.argv[2]
execute = Connection.execute

def execute_then_pause(self, sql, params=None):
    execute(self, sql, params)
    if sql.startswith("DROP TABLE IF EXISTS " + table):
        open(marker, "w").close()
        time.sleep(3600)

Connection.execute = execute_then_pause
sys.argv = ["hub", "run", "nightly", "--full-refresh"]  # a full build swaps its table in
main()
"""
PUSH_STEP = "sync__support_orders"
DESK_VOLATILE = ("id", "url", "created_at", "updated_at")  # the desk's own numbering and clock
# Raw tables of the hourly systems and the sandbox truth's count of the records they mirror.
HOURLY_RAW = {
    "raw_shop.orders": "shop.orders",
    "raw_shop.orders__line_items": "shop.order_line_items",
    "raw_shop.customers": "shop.customers",
    "raw_crm.accounts": "crm.accounts",
    "raw_crm.contacts": "crm.contacts",
    "raw_billing.invoices": "billing.invoices",
    "raw_billing.payments": "billing.payments",
}


@pytest.fixture(scope="module")
def settled(tmp_path_factory, sandbox_template):
    """A private sandbox, a hub built against it and settled by one nightly run, and its fingerprint."""
    box = start_sandbox(sandbox_template, tmp_path_factory.mktemp("kills"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in box.env().items():
            mp.setenv(key, value)
        mp.setenv("DAGSTER_HOME", str(box.home / "dagster"))
        for var in ("HUB_WAREHOUSE_URL", "HUB_DAGSTER_STORAGE_URL", "HUB_ALERT_WEBHOOK_URL"):
            mp.delenv(var, raising=False)
        assert all(r.success for r in build_everything())
        nightly = _hub("run", "nightly")
        assert nightly.returncode == 0, nightly.stdout[-3000:]
        yield box, _fingerprint(box)
    from hub_sandbox import runner

    runner.stop(box.home)


def test_sigkill_inside_a_canonical_swap_keeps_the_old_table_and_the_next_nightly_ends_clean(settled):
    box, clean = settled
    paused = box.home / "paused_in_swap"
    killed = _start(box, "killed_nightly", str(paused), SWAPPED, script=PAUSE_IN_SWAP)
    try:
        _wait(lambda: paused.exists() or killed.poll() is not None, 300, f"the nightly run to swap {SWAPPED}")
        assert killed.poll() is None, "the run ended without swapping " + SWAPPED
        _sigkill(killed)
        with get_instance() as instance:
            run_id = _run_of(instance, killed)
            assert CANONICAL_STEP not in _steps(instance, run_id, dg.DagsterEventType.STEP_SUCCESS)
            # Nobody is left to end the run: its record still says STARTED and it holds its slot.
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    finally:
        _sigkill(killed)

    with _warehouse().connect() as con:
        # The swap's transaction had dropped the old table; uncommitted, the drop is undone, and
        # readers see the table as before the build (and every other canonical table whole).
        for table in [t for t in clean if t.startswith("canonical.")]:
            assert _table_digest(con, table) == clean[table], table
        left = _scratch_tables(con)
    # The scratch table was committed before the swap began, so it outlives the kill.
    assert len(left) == 1 and left[0].startswith("canonical._build_order_line_"), left

    recovered = _hub("run", "nightly")
    assert recovered.returncode == 0, recovered.stdout[-3000:]
    assert f"run {run_id} (nightly): its process {killed.pid} is gone, marked failed" in recovered.stdout
    with get_instance() as instance:
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    with _warehouse().connect() as con:
        assert _scratch_tables(con) == [], "the next build of the model drops what the killed one left"
    assert _fingerprint(box) == clean


def test_sigkill_during_a_push_then_a_rerun_leaves_every_order_in_the_desk_exactly_once(settled):
    box, clean = settled
    sync = get_sync("support_orders")
    with _warehouse().connect() as con:
        orders = {str(o) for (o,) in con.rows("SELECT order_id FROM canonical.sales_order")}
        # The hub forgets every confirmation and the desk starts empty (a new desk account): the
        # next push must deliver every order again, so a kill leaves the desk half filled.
        con.execute(f"DELETE FROM {sync.state_table}")
    with contextlib.closing(sqlite3.connect(_desk_path(box), timeout=30)) as desk:
        desk.execute("DELETE FROM records WHERE resource = 'tickets'")
        desk.commit()
    box.set_fault("support", "slow", delay=1.0)  # every desk request waits: the push lasts long enough
    killed = _start(box, "killed_push", "run", "nightly")
    try:
        with get_instance() as instance:
            run_id = _run_of(instance, killed)
            _wait(
                lambda: _desk_count(box) >= 2000 or killed.poll() is not None,
                300,
                "the nightly run to deliver 2000 orders to the desk",
            )
            _sigkill(killed)
            assert PUSH_STEP in _steps(instance, run_id, dg.DagsterEventType.STEP_START)
            assert PUSH_STEP not in _steps(instance, run_id, dg.DagsterEventType.STEP_SUCCESS)
    finally:
        _sigkill(killed)
        box.clear_faults("support")
    delivered_before = _desk_count(box)
    assert 0 < delivered_before < len(orders), "the kill did not land mid-push"
    with _warehouse().connect() as con:
        confirmed = con.scalar(f"SELECT count(*) FROM {sync.state_table}")
    assert 0 < confirmed <= delivered_before, "a confirmation the desk holds no order for"

    recovered = _hub("run", "nightly", "--json")
    assert recovered.returncode == 0, recovered.stdout[-3000:]
    rerun = json.loads(recovered.stdout[recovered.stdout.index("{") :])["run_id"]
    with _warehouse().connect() as con:
        resent = con.scalar(
            "SELECT count(*) FROM sync.changelog WHERE run_id = ? AND sync = ? AND status = 'delivered'",
            [rerun, sync.name],
        )
    assert resent == len(orders) - confirmed, "the re-run sends exactly what was not confirmed"

    held = [str(o["external_id"]) for o in _desk_orders(box)]
    assert len(held) == len(set(held)), "an order is in the desk twice"
    assert set(held) == orders
    assert _fingerprint(box) == clean  # the desk's content too, not only its count


def test_two_hourly_runs_at_once_on_the_embedded_warehouse_both_succeed_one_after_the_other(settled):
    box, clean = settled
    report = box.tick()
    # A slow shop keeps each run going long enough that the other one surely starts meanwhile.
    box.set_fault("shop", "slow", delay=1.0)
    runs = [_start(box, f"hourly_{i}", "run", "hourly", "--json") for i in (1, 2)]
    try:
        for run in runs:
            run.wait(600)
    finally:
        for run in runs:
            _sigkill(run)
        box.clear_faults("shop")
    errors = [(box.home / f"hourly_{i}.stderr").read_text()[-2000:] for i in (1, 2)]
    assert [r.returncode for r in runs] == [0, 0], errors
    outputs = [(box.home / f"hourly_{i}.stdout").read_text() for i in (1, 2)]
    run_ids = [json.loads(out[out.index("{") :])["run_id"] for out in outputs]

    with get_instance() as instance:
        records = [instance.get_run_record_by_id(r) for r in run_ids]
        assert max(r.start_time for r in records) < min(r.end_time for r in records), "the runs overlapped"
        first, second = (_step_spans(instance, r) for r in run_ids)
    # The warehouse's one pool slot made them take turns: no step of one ran during a step of the other.
    clashes = [(a, b) for a in first for b in second if a[1] < b[2] and b[1] < a[2]]
    assert first and second and not clashes, clashes

    truth = box.truth["counts"]
    with _warehouse().connect() as con:
        raw = {table: _table_digest(con, table) for table in RAW}
        for table, counted in HOURLY_RAW.items():
            assert raw[table][0] == truth[counted], table
            if "id" in _columns(con, table):
                distinct = con.scalar(f"SELECT count(DISTINCT id) FROM {quote(*table.split('.'))}")
                assert distinct == raw[table][0], f"{table} holds a record twice"
    new_orders = report["records"]["shop.orders"]["new"]
    assert new_orders > 0 and raw["raw_shop.orders"][0] == clean["raw_shop.orders"][0] + new_orders

    single = _hub("run", "hourly")
    assert single.returncode == 0, single.stdout[-3000:]
    with _warehouse().connect() as con:
        assert {table: _table_digest(con, table) for table in RAW} == raw, "a single run finds nothing left"


def test_a_postgres_warehouse_that_is_down_at_start_is_one_line_and_no_run(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "DAGSTER_"))}
    env |= {
        "HUB_HOME": str(tmp_path),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "HUB_WAREHOUSE_URL": "postgresql://postgres:not-this-one@127.0.0.1:1/test",  # nothing listens on 1
    }
    out = subprocess.run(
        [*HUB, "run", "hourly"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    line = out.stderr.strip()
    assert line.startswith(
        "hub: cannot connect to the Postgres warehouse postgresql://postgres:***@127.0.0.1:1/"
    )
    assert "Connection refused" in line and "start it, or fix HUB_WAREHOUSE_URL" in line
    assert "not-this-one" not in out.stdout + out.stderr
    assert out.stdout == ""
    assert not (tmp_path / "dagster").exists(), "no run was started"
    assert not (tmp_path / "warehouse.duckdb").exists(), "nothing fell back to the embedded warehouse"


# ---- helpers --------------------------------------------------------------------------------


def _warehouse() -> Warehouse:
    return Warehouse(url=settings.warehouse_url())


def _hub(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*HUB, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def _start(box, name: str, *args: str, script: str | None = None) -> subprocess.Popen:
    """`hub …` (or `script` with `args`) in its own process group; its output goes to files, as a
    pipe nobody reads would fill up with the run's log and stall it."""
    command = [sys.executable, "-c", script, *args] if script else [*HUB, *args]
    return subprocess.Popen(
        command, cwd=ROOT, stdout=(box.home / f"{name}.stdout").open("w"),
        stderr=(box.home / f"{name}.stderr").open("w"), start_new_session=True,
    )  # fmt: skip


def _sigkill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait(60)


def _wait(condition, timeout: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def _run_of(instance: dg.DagsterInstance, process: subprocess.Popen) -> str:
    """The run that `hub run` in `process` executes (the run guard tags it with the process id)."""
    runs: list = []

    def found() -> bool:
        runs[:] = instance.get_runs(dg.RunsFilter(tags={run_guard.PID_TAG: str(process.pid)}))
        return bool(runs) or process.poll() is not None

    _wait(found, 240, "the run to start", every=0.2)
    assert runs, f"hub run ended (exit {process.returncode}) before its run started"
    return runs[0].run_id


def _steps(instance: dg.DagsterInstance, run_id: str, event_type: dg.DagsterEventType) -> set[str]:
    return {e.step_key for e in instance.all_logs(run_id, of_type=event_type)}


def _step_spans(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, float, float]]:
    """(step, start, end) of every step the run executed."""
    starts, spans = {}, []
    for event in instance.all_logs(run_id):
        if event.dagster_event is None or event.step_key is None:
            continue
        if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
            starts[event.step_key] = event.timestamp
        elif event.dagster_event.event_type in (
            dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE
        ):  # fmt: skip
            spans.append((event.step_key, starts[event.step_key], event.timestamp))
    return spans


def _scratch_tables(con) -> list[str]:
    """Tables a model build fills before it swaps them in (`model_build.SCRATCH`)."""
    return [
        f"{schema}.{name}"
        for schema, name in con.rows("SELECT table_schema, table_name FROM information_schema.tables")
        if name.startswith("_build_")
    ]


def _columns(con, table: str) -> set[str]:
    schema, name = table.split(".")
    sql = "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ?"
    return {c for (c,) in con.rows(sql, [schema, name])}


def _latest_run(con, table: str) -> str:
    """The condition that keeps a recon table's rows of its latest run (it keeps every run's)."""
    schema, name = table.split(".")
    columns = _columns(con, table)
    if "run_id" in columns:
        return f"run_id = (SELECT run_id FROM {quote(schema, name)} ORDER BY run_at DESC LIMIT 1)"
    if "counted_at" in columns:
        return f"counted_at = (SELECT max(counted_at) FROM {quote(schema, name)})"
    return ""


def _fingerprint(box) -> dict:
    """`fingerprint` (raw, canonical, recon, destinations' counts) with every recon table
    reduced to its latest run, plus the content of the desk's orders."""
    out = fingerprint(box)
    with _warehouse().connect() as con:
        for table in [t for t in out if t.startswith("recon.")]:
            out[table] = _table_digest(con, table, _latest_run(con, table))
    lines = sorted(
        json.dumps({k: v for k, v in order.items() if k not in DESK_VOLATILE}, sort_keys=True)
        for order in _desk_orders(box)
    )
    out["support.orders content"] = (len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16])
    return out


def _desk_path(box) -> Path:
    return box.home / "sandbox" / "support.sqlite"


def _desk_orders(box) -> list[dict]:
    """Every order record in the support desk's own store, read beside its server (WAL mode)."""
    with contextlib.closing(sqlite3.connect(_desk_path(box), timeout=30)) as desk:
        rows = desk.execute("SELECT body FROM records WHERE resource = 'tickets'").fetchall()
    return [json.loads(body) for (body,) in rows]


def _desk_count(box) -> int:
    with contextlib.closing(sqlite3.connect(_desk_path(box), timeout=30)) as desk:
        return desk.execute("SELECT count(*) FROM records WHERE resource = 'tickets'").fetchone()[0]
