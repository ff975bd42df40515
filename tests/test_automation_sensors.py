"""Automation: the payments landing sensor, the CRM change sensor, schedules and job selections."""

import datetime as dt
import json
import subprocess
import sys
import time

import dagster as dg

from integration_hub.warehouse import Warehouse
from resources.systems import SystemClient

HEADER = (  # Stripe's itemized payout reconciliation report, the columns the hub needs
    "automatic_payout_id,automatic_payout_effective_at,balance_transaction_id,currency,gross,fee,net,"
    "reporting_category,payment_metadata[payment_id]\n"
)


def settlement(day: str, first: int, n: int) -> str:
    return HEADER + "".join(
        f"po_{day.replace('-', '')},{day} 00:00:00,txn_{i:010d},usd,{i}.00,0.30,{i - 1}.70,charge,py_{i:010d}\n"
        for i in range(first, first + n)
    )


def named(items: list, name: str):
    """A job or sensor the registry made, by its name."""
    return next(item for item in items if item.name == name)


def payments_definitions():
    from assets import ingestion
    from integration_hub.definitions import automation

    return dg.Definitions(
        assets=[a for a in ingestion.build_assets() if a.node_def.name == "raw_payments"],
        jobs=[named(automation.JOBS, "payments_files")],
        resources=ingestion.build_resources(),
    )


def test_landing_sensor_runs_once_per_new_file_and_ignores_identical_redrops(tmp_path, monkeypatch):
    from integration_hub.definitions import automation

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    landing = tmp_path / "landing" / "payments"
    landing.mkdir(parents=True)
    defs = payments_definitions()
    job = defs.resolve_job_def("payments_files")
    instance = dg.DagsterInstance.ephemeral()
    folder = SystemClient(system="payments")
    cursor = None

    def evaluate() -> list[dg.RunRequest]:
        nonlocal cursor
        context = dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"payments_client": folder, "warehouse": Warehouse()}
        )
        result = named(automation.SENSORS, "payments_landing")(context)
        cursor = result.cursor
        return result.run_requests

    def run(requests: list[dg.RunRequest]) -> None:
        for request in requests:
            assert job.execute_in_process(
                run_config=request.run_config, instance=instance, tags=request.tags
            ).success

    (landing / "settlement_2026-11-01.csv").write_text(settlement("2026-11-01", 1, 5))
    (landing / "settlement_2026-11-02.csv").write_text(settlement("2026-11-02", 100, 7))
    first = evaluate()
    assert [r.run_config["ops"]["raw_payments"]["config"]["files"] for r in first] == [
        ["settlement_2026-11-01.csv"], ["settlement_2026-11-02.csv"]
    ]  # fmt: skip
    run(first)

    # The first file dropped again, byte for byte, and a third file.
    (landing / "settlement_2026-11-01.csv").write_text(settlement("2026-11-01", 1, 5))
    (landing / "settlement_2026-11-03.csv").write_text(settlement("2026-11-03", 200, 4))
    second = evaluate()
    assert [r.tags["hub/file"] for r in second] == ["settlement_2026-11-03.csv"]
    run(second)
    assert evaluate() == []

    with Warehouse().connect() as con:
        per_file = dict(con.rows("SELECT file_name, count(*) FROM raw_payments.settlement GROUP BY 1"))
        files = con.rows("SELECT file_name, status, rows FROM raw_payments.settlement_files ORDER BY 1")
        audit = con.scalar("SELECT sum(rows_out) FROM audit.data_movement WHERE system = 'payments'")
    assert per_file == {
        "settlement_2026-11-01.csv": 5,
        "settlement_2026-11-02.csv": 7,
        "settlement_2026-11-03.csv": 4,
    }
    assert [f[1] for f in files] == ["loaded"] * 3 and audit == 16

    # A loaded name comes back with other content (a correction): one run, whose lines replace the file's.
    (landing / "settlement_2026-11-02.csv").write_text(settlement("2026-11-02", 100, 8))
    [changed] = evaluate()
    result = job.execute_in_process(run_config=changed.run_config, instance=instance)
    [event] = result.get_asset_materialization_events()
    assert event.materialization.metadata["files_replaced"].value == ["settlement_2026-11-02.csv"]
    assert event.materialization.metadata["rows_loaded"].value == 8
    with Warehouse().connect() as con:
        per_file = dict(con.rows("SELECT file_name, count(*) FROM raw_payments.settlement GROUP BY 1"))
        assert per_file["settlement_2026-11-02.csv"] == 8 and sum(per_file.values()) == 17
        assert con.rows("SELECT status FROM raw_payments.settlement_files WHERE status <> 'loaded'") == [
            ("replaced",)
        ]


def test_landing_sensor_asks_for_nothing_a_run_it_did_not_ask_for_loaded(tmp_path, monkeypatch):
    """`hub demo` loads the dropped files itself: the sensor's first tick afterwards must not ask
    for them again (each such run would load 0 rows), yet still ask for a file no run took."""
    from integration_hub.definitions import automation

    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    landing = tmp_path / "landing" / "payments"
    landing.mkdir(parents=True)
    (landing / "settlement_2026-11-01.csv").write_text(settlement("2026-11-01", 1, 5))
    (landing / "settlement_2026-11-02.csv").write_text(settlement("2026-11-02", 100, 7))
    instance = dg.DagsterInstance.ephemeral()
    job = payments_definitions().resolve_job_def("payments_files")
    assert job.execute_in_process(instance=instance).success  # every pending file, as the nightly loads them
    # A correction of one loaded file and a new file, dropped after that run.
    (landing / "settlement_2026-11-02.csv").write_text(settlement("2026-11-02", 100, 8))
    (landing / "settlement_2026-11-03.csv").write_text(settlement("2026-11-03", 200, 4))

    sensor = named(automation.SENSORS, "payments_landing")
    resources = {"payments_client": SystemClient(system="payments"), "warehouse": Warehouse()}
    first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert sorted(r.tags["hub/file"] for r in first.run_requests) == [
        "settlement_2026-11-02.csv", "settlement_2026-11-03.csv"
    ]  # fmt: skip
    assert set(json.loads(first.cursor)) == {f"settlement_2026-11-0{d}.csv" for d in (1, 2, 3)}
    again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
    assert again.run_requests == []

    # While a run holds the embedded warehouse the record cannot be read: the tick waits, asks nothing.
    (landing / "settlement_2026-11-04.csv").write_text(settlement("2026-11-04", 300, 2))
    monkeypatch.setattr(automation, "LOOKUP_LOCK_WAIT", 0.2)
    holder = subprocess.Popen(  # DuckDB's file lock is per process: another one holds it
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', "
         "flush=True); time.sleep(60)", str(Warehouse().duckdb_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
    finally:
        holder.kill()
        holder.wait()
    assert isinstance(busy, dg.SkipReason)
    assert busy.skip_message.startswith(
        "payments landing: 1 file(s) to look up, but a run holds the warehouse"
    )
    later = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
    assert [r.tags["hub/file"] for r in later.run_requests] == ["settlement_2026-11-04.csv"]


def test_crm_change_sensor_asks_cheaply_and_triggers_once_per_change(sandbox, sandbox_world, tmp_path):
    from integration_hub.definitions import automation

    instance = dg.DagsterInstance.ephemeral()
    client = SystemClient(system="crm", url=sandbox.url("crm"))
    resources = {
        "crm_client": client,
        "warehouse": Warehouse(path=tmp_path / "w.duckdb"),
    }  # nothing loaded yet
    context = dg.build_sensor_context(instance=instance, resources=resources)
    before = sandbox.stats("crm")["by_path"]

    sensor = named(automation.SENSORS, "crm_change_sensor")
    first = sensor(context)

    [request] = first.run_requests
    assert request.partition_key == dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    crm = sandbox_world.tables["crm"]
    latest = max(max(crm[r]["LastModifiedDate"].to_pylist()) for r in ("accounts", "contacts"))
    assert request.run_key == f"crm-changes-{latest}"
    assert first.cursor == (dt.datetime.fromisoformat(latest) + dt.timedelta(seconds=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
    assert isinstance(again, dg.SkipReason)
    calls = {path: n - before.get(path, 0) for path, n in sandbox.stats("crm")["by_path"].items()}
    calls = {path: n for path, n in calls.items() if n}
    # Cheap: per object and probe, one `SELECT COUNT()` and one `LIMIT 1` query, no listing.
    assert calls == {"/services/oauth2/token": 2, "/services/data/v62.0/queryAll": 8}, calls


def test_crm_change_sensor_ignores_the_hubs_own_writes(make_sandbox, tmp_path):
    """Issue #21: a push to the CRM stamped by the hub's integration user is no change to load;
    the business's change (an edit, a deletion) after it is. A new sensor (no cursor) starts where
    the last load into raw began: what another run loaded launches nothing."""
    import httpx

    from integration_hub.definitions import automation
    from tests.test_sandbox_api import crm_upsert

    box = make_sandbox()
    client = SystemClient(system="crm", url=box.url("crm"))
    sensor = named(automation.SENSORS, "crm_change_sensor")
    instance = dg.DagsterInstance.ephemeral()

    warehouse = Warehouse(path=tmp_path / "w.duckdb")

    def probe(cursor):
        resources = {"crm_client": client, "warehouse": warehouse}
        return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))

    first = probe(None)
    assert first.run_requests, "nothing loaded yet: everything is a change"
    warehouse.ensure_schema("raw_crm")
    with warehouse.connect() as con:  # as a load that began now leaves it
        con.execute("CREATE TABLE raw_crm._dlt_loads (load_id VARCHAR, status BIGINT)")
        con.execute("INSERT INTO raw_crm._dlt_loads VALUES (?, 0)", [f"{time.time():.6f}"])
    assert isinstance(probe(None), dg.SkipReason), "a new sensor asked for what another run loaded"
    results = crm_upsert(box, [{"AccountNumber": "C000000001", "Lifetime_Value__c": 10.0},
                               {"AccountNumber": "C777777777", "Name": "Pushed By The Hub"}]).json()  # fmt: skip
    assert all(r["success"] for r in results), results
    assert isinstance(probe(first.cursor), dg.SkipReason), "the hub's own writes came back as a change"

    victim = results[0]["id"]
    httpx.post(f"{box.url('crm')}/_admin/records/accounts/{victim}/delete").raise_for_status()
    after_delete = probe(first.cursor)
    [request] = after_delete.run_requests
    assert after_delete.cursor > first.cursor


def test_schedules_target_the_live_partition_and_nightly_runs_every_layer_but_housekeeping():
    from integration_hub.definitions import automation

    at = dt.datetime(2026, 11, 25, 2, 0, tzinfo=dt.UTC)
    for schedule in (automation.hourly_sources_schedule, automation.nightly_schedule):
        request = schedule(dg.build_schedule_context(scheduled_execution_time=at))
        assert request.partition_key == "2026-11-25"

    @dg.asset(deps=[dg.AssetKey(["raw", "erp", "sales_orders"])])
    def downstream_of_erp() -> None: ...

    @dg.asset(deps=[dg.AssetKey(["raw", "crm", "accounts"])])
    def downstream_of_crm() -> None: ...

    @dg.asset(group_name=automation.HOUSEKEEPING_GROUP)
    def housekeeping() -> None: ...

    from assets import ingestion
    from assets.retention import retention

    defs = dg.Definitions(
        assets=[*ingestion.build_assets(), downstream_of_erp, downstream_of_crm, housekeeping, retention],
        jobs=automation.JOBS,
        resources=ingestion.build_resources(),
    )
    keys = {
        job.name: {
            k.to_user_string() for k in defs.resolve_job_def(job.name).asset_layer.executable_asset_keys
        }
        for job in automation.JOBS
    }
    assert keys["nightly"] >= {
        f"raw/erp/{t}" for t in ("customers", "products", "sales_orders", "sales_order_lines")
    } | {"raw/crm/accounts", "raw/shop/orders", "raw/billing/invoices", "raw/payments/settlement"}
    assert {"downstream_of_erp", "downstream_of_crm"} <= keys["nightly"]
    assert "housekeeping" not in keys["nightly"]
    assert keys["hourly_sources"] == {
        f"raw/{s}/{r}"
        for s, rs in {
            "crm": ("accounts", "contacts"),
            "shop": ("orders", "customers"),
            "billing": ("invoices", "payments"),
        }.items()
        for r in rs
    }
    assert json.dumps(sorted(keys["payments_files"])) == '["raw/payments/settlement"]'
