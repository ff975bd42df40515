"""`hub backfill` registers a real Dagster backfill that the real daemon executes.

The code location here is a stand-in with the hub's key layout (a daily-partitioned
`raw/shop/*` multi-asset, another system, downstream canonical and sync assets), so this
test stays fast and independent of the sandbox; the outage drill runs the real one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pytest
import typer

from integration_hub.cli.graphql import CodeLocation
from integration_hub.cli.run import backfill_status, launch_backfill, plan_backfill, wait_for_backfill
from integration_hub.definitions import instance as hub_instance

DEFS = textwrap.dedent(
    """
    import json, os
    import dagster as dg

    days = dg.DailyPartitionsDefinition(start_date="2026-10-25", end_date="2026-11-10")

    def note(name, partition=None):
        with open(os.path.join(os.environ["HUB_HOME"], "executed.jsonl"), "a") as f:
            f.write(json.dumps({"asset": name, "partition": partition}) + "\\n")

    @dg.multi_asset(specs=[dg.AssetSpec(["raw", "shop", "orders"]), dg.AssetSpec(["raw", "shop", "customers"])],
                    partitions_def=days, group_name="sources")
    def shop(context):
        note("raw/shop", context.partition_key)
        yield dg.MaterializeResult(asset_key=["raw", "shop", "orders"])
        yield dg.MaterializeResult(asset_key=["raw", "shop", "customers"])

    @dg.asset(key=["raw", "crm", "accounts"], partitions_def=days)
    def crm(context):
        note("raw/crm/accounts", context.partition_key)

    @dg.asset(key=["canonical", "sales_order"], deps=[["raw", "shop", "orders"], ["raw", "crm", "accounts"]])
    def sales_order():
        note("canonical/sales_order")

    @dg.asset(key=["sync", "support_orders"], deps=[sales_order])
    def support_orders():
        note("sync/support_orders")

    defs = dg.Definitions(assets=[shop, crm, sales_order, support_orders])
    """
)


@pytest.fixture
def location(tmp_path, monkeypatch):
    (tmp_path / "backfill_world.py").write_text(DEFS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    hub_instance.ensure_dagster_home()
    import backfill_world

    yield tmp_path, backfill_world.defs
    sys.modules.pop("backfill_world", None)


def test_plan_rejects_bad_input_clearly(location):
    _, defs = location
    with pytest.raises(typer.BadParameter, match="no raw assets for system 'shpo'; systems: crm, shop"):
        plan_backfill(defs, "shpo", "2026-11-01", "2026-11-03")
    with pytest.raises(typer.BadParameter, match="--from 2026-11-03 is after --to 2026-11-01"):
        plan_backfill(defs, "shop", "2026-11-03", "2026-11-01")
    with pytest.raises(typer.BadParameter, match="not a date"):
        plan_backfill(defs, "shop", "yesterday", "2026-11-01")
    with pytest.raises(typer.BadParameter, match="partitions run 2026-10-25..2026-11-09"):
        plan_backfill(defs, "shop", "2025-01-01", "2025-01-03")
    selection, keys = plan_backfill(defs, "shop", "2026-11-01", "2026-11-03")
    assert keys == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert [k.to_user_string() for k in selection] == [
        "raw/shop/customers", "raw/shop/orders", "canonical/sales_order", "sync/support_orders",
    ]  # fmt: skip


def test_backfill_runs_through_the_daemon_then_downstream_rebuilds(location, monkeypatch):
    home, defs = location
    monkeypatch.setenv("HUB_PROGRESS_SECONDS", "1")
    backfill_id = launch_backfill(
        defs, "shop", "2026-11-01", "2026-11-03", location=CodeLocation("backfill_world", "defs", str(home))
    )
    assert backfill_status(backfill_id) == "REQUESTED"
    with dg.DagsterInstance.get() as instance:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).with_name("dagster-daemon")), "run", "-m", "backfill_world",
             "--working-directory", str(home)],
            env={**os.environ, "PYTHONPATH": str(home)}, cwd=home,
            stdout=subprocess.DEVNULL, stderr=(home / "daemon.log").open("w"), start_new_session=True,
        )  # fmt: skip
        try:
            progress: list[str] = []
            status = wait_for_backfill(backfill_id, timeout=240, progress=progress.append)
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(30)
        assert status in ("COMPLETED", "COMPLETED_SUCCESS"), (home / "daemon.log").read_text()[-3000:]
        # `hub backfill --wait` prints these: the backfill's runs by status as they go
        assert progress and all(line.startswith(f"backfill {backfill_id}: ") for line in progress)
        assert any(" success" in line or " started" in line for line in progress), progress
        records = instance.get_run_records(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        runs = [record.dagster_run for record in records]
        assert runs and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert all(r.tags["hub/backfill_system"] == "shop" for r in runs)

    executed = [json.loads(line) for line in (home / "executed.jsonl").read_text().splitlines()]
    shop = sorted(e["partition"] for e in executed if e["asset"] == "raw/shop")
    assert shop == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert not [e for e in executed if e["asset"] == "raw/crm/accounts"]
    # downstream rebuilt once, after every partition had landed
    names = [e["asset"] for e in executed]
    assert names.count("canonical/sales_order") == 1 and names.count("sync/support_orders") == 1
    assert names.index("canonical/sales_order") > max(i for i, n in enumerate(names) if n == "raw/shop")
    assert names.index("sync/support_orders") > names.index("canonical/sales_order")
