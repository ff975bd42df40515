"""Fault drills: each fault is injected into a fully built hub, then recovered from the way the
runbook says, and the warehouse and destinations must end equal to the clean build's.

One build serves the module (a full build is minutes on two cores); each drill restores
what it broke, and the fingerprint comparison at its end proves it did. Past-day
partitions (explicit windows) let a drill push rows through a load again without
changing the sandbox's data, so the clean fingerprint stays the reference.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from assets.syncs import SYNCS, get_sync
from integration_hub import settings
from integration_hub.definitions import alerts
from integration_hub.definitions.instance import get_instance
from integration_hub.engine import sync_engine as reverse_sync
from integration_hub.warehouse import Warehouse
from resources.alerts import AlertSink
from tests.test_alerts_webhook import Receiver
from tests.test_drills_world import build_everything, fingerprint, live_partition, start_sandbox

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
BIN = Path(sys.executable).parent
ROOT = Path(__file__).parents[1]
SHOP_TO_CANONICAL = ("staging/shop__sales_order", "staging/shop__order_line", "canonical/sales_order")


def yesterday() -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def drilled(tmp_path_factory, sandbox_template):
    """A private sandbox, a clean full build of the hub against it, and that build's fingerprint."""
    box = start_sandbox(sandbox_template, tmp_path_factory.mktemp("drills"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in box.env().items():
            mp.setenv(key, value)
        mp.setenv("DAGSTER_HOME", str(box.home / "dagster"))
        mp.setenv("HUB_LOAD_MAX_RETRIES", "0")  # a drill's fault outlasts any step retry: fail fast
        for var in ("HUB_WAREHOUSE_URL", "HUB_DAGSTER_STORAGE_URL", "HUB_ALERT_WEBHOOK_URL"):
            mp.delenv(var, raising=False)
        assert all(r.success for r in build_everything())
        # A drill's daemon runs sensors too. The landing and CRM-change sensors would load the
        # settlement files and the accounts the build pushed to the CRM: real work, but not the
        # drill's, and it would move the reference. Stopped as an operator would in the UI.
        stops = [
            subprocess.Popen([str(BIN / "dagster"), "sensor", "stop", name, "-w", str(ROOT / "workspace.yaml")],
                             cwd=ROOT, stdout=subprocess.DEVNULL)
            for name in ("payments_landing", "crm_change_sensor")
        ]  # fmt: skip
        assert [p.wait(120) for p in stops] == [0, 0]
        yield box, fingerprint(box)
    from hub_sandbox import runner

    runner.stop(box.home)


def _materialize(keys_prefix: list[str], partition: str, downstream: tuple[str, ...] = ()):
    """Run the given raw assets (and named downstream assets) for one partition, with their checks."""
    from integration_hub.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.materializable_asset_keys if list(k.path[: len(keys_prefix)]) == keys_prefix]
    keys += [dg.AssetKey(k.split("/")) for k in downstream]
    with get_instance() as instance:
        return defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=keys, partition_key=partition, raise_on_error=False
        )


def _warehouse() -> Warehouse:
    return Warehouse(url=settings.warehouse_url())


def _check_results(result) -> dict[str, tuple[bool, str]]:
    out = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            ev = event.asset_check_evaluation_data
            out[f"{ev.asset_key.to_user_string()}:{ev.check_name}"] = (ev.passed, ev.severity.value)
    return out


def test_schema_drift_is_a_contract_violation_that_alerts_and_leaves_canonical_intact(drilled):
    box, clean = drilled
    receiver = Receiver()
    try:
        box.set_fault("shop", "schema_drift")  # total_price → total_price_set in every row
        drifted = _materialize(["raw", "shop"], yesterday(), downstream=SHOP_TO_CANONICAL)
        checks = _check_results(drifted)
        assert checks["raw/shop/orders:load_contract"] == (False, "ERROR")
        assert checks["raw/shop/customers:load_contract"][0]  # customers carry no total_price
        assert not drifted.success  # the blocking check stopped canonical from rebuilding on it
        assert dg.AssetKey(["canonical", "sales_order"]) not in {
            e.asset_key for e in drifted.get_asset_materialization_events()
        }
        with _warehouse().connect() as con:
            quarantined = con.scalar(
                "SELECT count(*) FROM quarantine.shop__orders WHERE run_id = ? AND reason = ?",
                [drifted.run_id, "missing field 'total_price'"],
            )
        assert quarantined > 0
        assert fingerprint(box) == clean  # nothing corrupted: raw merged nothing, canonical untouched

        with get_instance() as instance:
            sink = AlertSink(webhook_url=receiver.url)
            ctx = dg.build_sensor_context(instance=instance, resources={"alerts": sink})
            alerts.alert_on_check_failure.evaluate_tick(ctx)
        texts = [m["text"] for m in receiver.received if drifted.run_id in m["text"]]
        assert any("Contract violation" in t and "raw/shop/orders" in t and "missing field 'total_price'" in t
                   for t in texts)  # fmt: skip

        box.clear_faults("shop")
        recovered = _materialize(["raw", "shop"], yesterday(), downstream=SHOP_TO_CANONICAL)
        assert recovered.success
        assert fingerprint(box) == clean
    finally:
        box.clear_faults("shop")
        receiver.close()


def test_malformed_rows_are_quarantined_then_reloaded_to_the_clean_state(drilled):
    box, clean = drilled
    box.set_fault("billing", "malformed", share=0.05)
    try:
        bad = _materialize(["raw", "billing"], yesterday())
        assert bad.success  # a few bad rows are a WARN, not a stop
        checks = _check_results(bad)
        assert (False, "WARN") in {
            checks["raw/billing/invoices:load_contract"],
            checks["raw/billing/payments:load_contract"],
        }
        assert fingerprint(box) == clean  # good rows merged unchanged; bad ones never reached raw
    finally:
        box.clear_faults("billing")
    again = _materialize(["raw", "billing"], yesterday())
    assert again.success and all(passed for passed, _ in _check_results(again).values())
    assert fingerprint(box) == clean


def test_duplicate_delivery_of_a_settlement_file_changes_nothing(drilled):
    box, clean = drilled
    folder = settings.landing_dir("payments")
    first = sorted(folder.glob("settlement_*.csv"))[0]
    content = first.read_bytes()
    first.unlink()
    first.write_bytes(content)  # the processor delivers the same file again
    result = _materialize(["raw", "payments"], None)
    assert result.success
    skipped = [
        e.materialization.metadata["files_skipped"].value for e in result.get_asset_materialization_events()
    ]
    assert skipped and all(first.name in names for names in skipped)  # recognised by content, not reloaded
    assert fingerprint(box) == clean  # raw settlement holds each line once, recon is unchanged


def test_destination_rejecting_writes_dead_letters_then_replay_restores_it(drilled):
    box, clean = drilled
    warehouse = _warehouse()
    sync = get_sync("support_orders")
    with warehouse.connect() as con:
        # Forget 300 confirmations, so the next push re-sends them (as after a lost response).
        first_300 = f"SELECT key FROM {sync.state_table} ORDER BY key LIMIT 300"
        con.execute(f"DELETE FROM {sync.state_table} WHERE key IN ({first_300})")
    receiver = Receiver()
    try:
        box.set_fault("support", "reject_writes", share=0.2)
        with get_instance() as instance:
            sink = AlertSink(webhook_url=receiver.url)
            ctx = dg.build_sensor_context(
                instance=instance, resources={"alerts": sink, "warehouse": warehouse}
            )
            alerts.alert_on_dead_letter_growth.evaluate_tick(ctx)
            rejected = reverse_sync.apply(sync, warehouse)
            assert rejected.rejected > 0 and rejected.delivered + rejected.rejected == 300
            ctx = dg.build_sensor_context(
                instance=instance, cursor=ctx.cursor, resources={"alerts": sink, "warehouse": warehouse}
            )
            alerts.alert_on_dead_letter_growth.evaluate_tick(ctx)
        assert len(receiver.received) == 1 and f"→ {rejected.rejected}" in receiver.received[0]["text"]
        assert "support_orders" in receiver.received[0]["text"]
    finally:
        box.clear_faults("support")
        receiver.close()
    (replayed,) = reverse_sync.replay(warehouse, SYNCS, sync.name)
    assert replayed.delivered == rejected.rejected and replayed.rejected == 0
    assert reverse_sync.dead_letters(warehouse, sync.name) == []
    assert fingerprint(box) == clean


def test_outage_then_backfill_through_the_daemon_ends_clean(drilled):
    box, clean = drilled
    from integration_hub.cli.run import launch_backfill, wait_for_backfill
    from integration_hub.definitions import defs

    box.set_fault("shop", "outage")
    try:
        down = _materialize(["raw", "shop"], live_partition())
        assert not down.success
    finally:
        box.clear_faults("shop")
    with _daemon(box):
        backfill_id = launch_backfill(defs, "shop", yesterday(), live_partition(), downstream=False)
        status = wait_for_backfill(backfill_id, timeout=420)
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (box.home / "daemon.log").read_text()[-3000:]
    assert fingerprint(box) == clean


def test_sigkill_of_a_run_during_its_load_is_retried_by_the_instance_and_ends_clean(drilled):
    """A run process killed mid-load (OOM killer, node loss) is failed by its code server, the
    instance's run retries launch it again, and the retry leaves no duplicate and no gap."""
    box, clean = drilled
    run_id = str(uuid.uuid4())
    box.set_fault("shop", "slow", delay=1.0)  # keep the shop load running long enough to kill it in
    try:
        with get_instance() as instance, _daemon(box) as daemon:
            box.reset_stats("shop")
            subprocess.run(
                [str(BIN / "dagster"), "job", "launch", "-w", str(ROOT / "workspace.yaml"), "-j", "hourly_sources",
                 "--run-id", run_id, "--tags", json.dumps({"dagster/partition": yesterday()})],
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
            _wait(lambda: box.stats("shop")["requests"] >= 2, 240, "the shop load to be under way")
            worker = _run_worker(daemon.pid)
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
            for pid in [worker, *_descendants(worker)]:
                os.kill(pid, signal.SIGKILL)
            box.clear_faults("shop")

            _wait(lambda: instance.get_run_by_id(run_id).is_finished, 120, "the code server to fail the run")
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
            crash = [e.message for e in instance.all_logs(run_id) if e.is_dagster_event and e.message]
            assert any("terminated by signal 9 (SIGKILL)" in m for m in crash), crash[-5:]

            retries = lambda: instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))  # noqa: E731
            _wait(lambda: any(r.is_finished for r in retries()), 420, "the retried run to finish")
            (retry,) = retries()
        assert retry.status == dg.DagsterRunStatus.SUCCESS, (box.home / "daemon.log").read_text()[-3000:]
        assert retry.tags["dagster/retry_number"] == "1"
    finally:
        box.clear_faults("shop")
    assert fingerprint(box) == clean  # the killed load's partial package neither duplicated nor lost rows


@contextlib.contextmanager
def _daemon(box):
    """A real `dagster-daemon` on the hub's instance: queued runs, backfills, run retries, monitoring."""
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env={**os.environ}, stdout=subprocess.DEVNULL,
        stderr=(box.home / "daemon.log").open("a"), start_new_session=True,
    )  # fmt: skip
    try:
        yield daemon
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(60)


def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def _processes() -> dict[int, tuple[int, str]]:
    """pid → (parent pid, command line) of every process, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                out[int(entry.name)] = (ppid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):
                continue
    return out


def _descendants(pid: int) -> list[int]:
    procs, found, frontier = _processes(), [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (pp, _) in procs.items() if pp == parent]
        found += children
        frontier += children
    return found


def _run_worker(daemon_pid: int) -> int:
    """The run's process: the code server's spawned child (`dagster api grpc` → spawn_main)."""
    procs = _processes()
    workers = [
        pid for pid in _descendants(daemon_pid)
        if "spawn_main" in procs[pid][1] and "grpc" in procs.get(procs[pid][0], (0, ""))[1]
    ]  # fmt: skip
    assert len(workers) == 1, {p: procs[p][1][:120] for p in _descendants(daemon_pid) if p in procs}
    return workers[0]
