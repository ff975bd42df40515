"""Fault scenarios against the sandbox: outage then backfill, rate limits and slow pages,
token expiry mid-run, malformed rows. Real servers, real dlt, real Dagster runs."""

import datetime as dt

import dagster as dg
import pyarrow.compute as pc
import pytest

from integration_hub.warehouse import Warehouse


@pytest.fixture
def fast_retries(monkeypatch):
    """Short dlt and Dagster retry budgets, so fault tests take seconds."""
    monkeypatch.setenv("RUNTIME__REQUEST_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("RUNTIME__REQUEST_BACKOFF_FACTOR", "0.1")
    monkeypatch.setenv("HUB_LOAD_MAX_RETRIES", "1")
    monkeypatch.setenv("HUB_LOAD_RETRY_DELAY", "0.1")


def system_assets(system: str) -> tuple[list, dict]:
    from assets import ingestion

    return [
        a for a in ingestion.build_assets() if a.node_def.name == f"raw_{system}"
    ], ingestion.build_resources()


def today() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")


def run_log(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(entry.user_message or "" for entry in instance.all_logs(run_id))


def failure_text(data) -> str:
    """The failure's description and every message along its error's cause chain."""
    parts = [data.user_failure_data.description] if data.user_failure_data else []
    error = data.error
    while error is not None:
        parts.append(error.message)
        error = error.cause
    return "\n".join(p for p in parts if p)


def test_shop_outage_fails_two_days_clearly_and_their_backfill_matches_the_truth(
    make_sandbox, sandbox_world, fast_retries
):
    box = make_sandbox(export=True)
    assets, resources = system_assets("shop")
    instance = dg.DagsterInstance.ephemeral()
    anchor = dt.date.fromisoformat(box.truth["anchor"])
    days = [str(anchor - dt.timedelta(days=3)), str(anchor - dt.timedelta(days=2))]

    box.set_fault("shop", "outage")
    for day in days:
        result = dg.materialize(
            assets, resources=resources, partition_key=day, instance=instance, raise_on_error=False
        )
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        message = failure_text(failure.step_failure_data)
        assert "shop answered HTTP 503 Service Unavailable to GET /admin/api/2025-01/" in message
        assert f"partition {day}" in message and "backfill" in message
        log = run_log(instance, result.run_id)
        assert "answered HTTP 503 (Retry-After: 5)" in log, "dlt's retries are in the run log"
        assert any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events), (
            "Dagster retried the step"
        )

    box.clear_faults("shop")
    job = (
        dg.Definitions(assets=assets, resources=resources, jobs=[dg.define_asset_job("shop_backfill")])
        .resolve_job_def("shop_backfill")
    )  # fmt: skip
    backfill = job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]},
    )
    assert backfill.success

    start, end = f"{days[0]}T00:00:00Z", f"{dt.date.fromisoformat(days[1]) + dt.timedelta(days=1)}T00:00:00Z"
    orders = sandbox_world.tables["shop"]["orders"]
    window = orders.filter(
        pc.and_(pc.greater_equal(orders["updated_at"], start), pc.less(orders["updated_at"], end))
    )
    customers = sandbox_world.tables["shop"]["customers"]
    expected_customers = pc.and_(
        pc.greater_equal(customers["updated_at"], start), pc.less(customers["updated_at"], end)
    )
    with Warehouse().connect() as con:
        ids = [r[0] for r in con.rows("SELECT id FROM raw_shop.orders ORDER BY id")]
        lines = con.scalar("SELECT count(*) FROM raw_shop.orders__line_items")
        n_customers = con.scalar("SELECT count(*) FROM raw_shop.customers")
        live_state = con.scalar(
            "SELECT count(*) FROM raw_shop._dlt_pipeline_state WHERE pipeline_name = 'hub_shop'"
        )
    assert window.num_rows > 0
    assert ids == sorted(window["id"].to_pylist()), "exactly the window's orders, once each"
    assert lines == sum(len(items) for items in window["line_items"].to_pylist())
    assert n_customers == pc.sum(expected_customers.cast("int64")).as_py()
    assert live_state == 0, "a backfill never writes the live pipeline's cursor"

    # Backfilling the same days again changes nothing: merged by primary key.
    assert job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[1]},
    ).success
    with Warehouse().connect() as con:
        assert con.scalar("SELECT count(*) FROM raw_shop.orders") == len(ids)
        assert con.scalar("SELECT count(*) FROM raw_shop.orders__line_items") == lines


def test_rate_limits_and_slow_pages_complete_with_retries_in_the_run_log(make_sandbox):
    box = make_sandbox(export=True)
    box.set_fault("billing", "rate_limit", every=3, retry_after=1)
    box.set_fault("billing", "slow", delay=0.2)
    assets, resources = system_assets("billing")
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(assets, resources=resources, partition_key=today(), instance=instance)

    assert result.success
    with Warehouse().connect() as con:
        assert (
            con.scalar("SELECT count(DISTINCT id) FROM raw_billing.invoices")
            == box.truth["counts"]["billing.invoices"]
        )
        assert (
            con.scalar("SELECT count(*) FROM raw_billing.payments") == box.truth["counts"]["billing.payments"]
        )
    assert "answered HTTP 429 (Retry-After: 1); retrying" in run_log(instance, result.run_id)


def test_crm_token_expiring_mid_run_is_renewed(make_sandbox, monkeypatch):
    from integration_hub.systems import crm
    from integration_hub.systems.kit import rest as _rest

    monkeypatch.setattr(crm, "BATCH_SIZE", 200)  # Salesforce's smallest query batch: many requests
    box = make_sandbox(export=True)
    box.set_fault("crm", "token_expiry", ttl=1)
    box.set_fault("crm", "slow", delay=0.4)
    # The client believes tokens live an hour, as with a server that revokes them early:
    # only the 401 itself can tell it to re-authenticate.
    monkeypatch.setattr(
        _rest.ReauthenticatingClientCredentials, "parse_expiration_in_seconds", lambda self, r: 3600
    )
    assets, resources = system_assets("crm")
    instance = dg.DagsterInstance.ephemeral()

    result = dg.materialize(assets, resources=resources, partition_key=today(), instance=instance)

    assert result.success
    with Warehouse().connect() as con:
        assert con.scalar("SELECT count(*) FROM raw_crm.accounts") == box.truth["counts"]["crm.accounts"]
        assert con.scalar("SELECT count(*) FROM raw_crm.contacts") == box.truth["counts"]["crm.contacts"]
    assert "the access token was refused (INVALID_SESSION_ID); re-authenticating" in run_log(
        instance, result.run_id
    )


def test_crm_request_limit_403_is_retried_like_a_429(make_sandbox, caplog):
    """Salesforce answers its request limits with 403 REQUEST_LIMIT_EXCEEDED, not 429: the hub
    waits and retries it (a source's read), and a writer reports it as transient (the sync engine
    retries those), where another 403 would stop either."""
    import httpx

    from integration_hub import systems
    from integration_hub.systems import crm
    from integration_hub.systems.kit.writer import Record, TransientError

    box = make_sandbox()
    client = systems.get("crm").client_kwargs(box.url("crm"))
    box.set_fault("crm", "rate_limit", every=2, retry_after=1)
    assert crm.count(**client) == {
        "accounts": box.truth["counts"]["crm.accounts"],
        "contacts": box.truth["counts"]["crm.contacts"],
    }
    assert "answered HTTP 403 (Retry-After: 1); retrying" in caplog.text

    box.set_fault("crm", "rate_limit", every=2, retry_after=1)  # counting afresh: every 2nd is refused
    writer = crm.CrmAccounts(**client)
    with httpx.Client(verify=box.ca_bundle) as http:
        writer.auth_headers(http)  # the 1st request
        with pytest.raises(TransientError, match="REQUEST_LIMIT_EXCEEDED") as refused:
            writer.write(http, [Record("C999999990", {"AccountNumber": "C999999990"}, "")])
        assert refused.value.retry_after == 1
        [written] = writer.write(http, [Record("C999999990", {"AccountNumber": "C999999990"}, "")])
    assert written.ok and written.remote_id.startswith("001W")


def test_malformed_rows_are_quarantined_counted_and_audited(make_sandbox):
    box = make_sandbox(export=True)
    box.set_fault("shop", "malformed", share=0.05)
    assets, resources = system_assets("shop")

    result = dg.materialize(assets, resources=resources, partition_key=today())

    assert result.success
    metadata = {
        e.asset_key.path[-1]: e.materialization.metadata for e in result.get_asset_materialization_events()
    }
    with Warehouse().connect() as con:
        raw = {r: con.scalar(f"SELECT count(*) FROM raw_shop.{r}") for r in ("orders", "customers")}
        reasons = dict(
            con.rows("SELECT reason, count(*) FROM quarantine.shop__orders GROUP BY 1")
            + con.rows("SELECT 'customers: ' || reason, count(*) FROM quarantine.shop__customers GROUP BY 1")
        )
        audit = dict(
            con.rows("SELECT resource, rows_rejected FROM audit.data_movement WHERE system = 'shop'")
        )
    for resource in ("orders", "customers"):
        rejected = metadata[resource]["rows_rejected"].value
        assert rejected > 0 and audit[resource] == rejected
        assert raw[resource] + rejected == box.truth["counts"][f"shop.{resource}"], "nothing lost"
    assert set(reasons) == {
        "field 'total_price': expected decimal text, got 'n/a'",  # the fault's wrong type
        "missing field 'id'",  # the fault's lost key
        "customers: missing field 'id'",
    }


@pytest.mark.postgres
def test_unreachable_erp_database_fails_with_the_database_s_own_reason(
    tmp_path, monkeypatch, postgres_url, fast_retries
):
    """dlt wraps a source's error twice; the step's failure says the root cause, not dlt's wrapper."""
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("HUB_LOAD_MAX_RETRIES", "0")
    missing = postgres_url.rsplit("/", 1)[0] + "/hub_no_such_erp_database"
    monkeypatch.setenv("HUB_ERP_URL", missing)
    assets, resources = system_assets("erp")
    result = dg.materialize(
        assets, resources=resources, partition_key=today(), instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )  # fmt: skip
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    description = failure.step_failure_data.user_failure_data.description
    assert description.startswith("the erp load failed: OperationalError: ")
    assert 'database "hub_no_such_erp_database" does not exist' in description
    assert f"partition {today()} was not loaded" in description
