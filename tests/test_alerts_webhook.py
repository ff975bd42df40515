"""Alerts reach a real local webhook receiver: once per failure, with run, asset, error, link, no secret."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pyarrow as pa
import pytest

from integration_hub.definitions import alerts, instance
from integration_hub.warehouse import Warehouse
from resources.alerts import AlertSink

PG_PASSWORD = "pg-hunter2-secret"


class Receiver:
    """A real HTTP server on a free port that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/B000/XXXX"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hub(tmp_path, monkeypatch, receiver):
    monkeypatch.setenv("HUB_HOME", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("HUB_ALERT_WEBHOOK_URL", receiver.url)
    monkeypatch.setenv("HUB_BILLING_CLIENT_SECRET", "sk_live_real_billing_key")
    monkeypatch.setenv("HUB_WAREHOUSE_URL", f"postgresql://hub:{PG_PASSWORD}@db.internal:5432/hub")
    instance.ensure_dagster_home()
    with dg.DagsterInstance.get() as inst:
        yield inst


def _sink(receiver: Receiver) -> AlertSink:
    return AlertSink(webhook_url=receiver.url, ui_url="http://dagster.example:3000")


def _tick(sensor, inst, cursor, **resources):
    ctx = dg.build_sensor_context(instance=inst, cursor=cursor, resources=resources)
    return sensor.evaluate_tick(ctx).cursor


SECRETS = ("sk_live_real_billing_key", PG_PASSWORD, "crm-sandbox-secret", "/hooks/T000/B000/XXXX")


@dg.asset(key=["canonical", "sales_order"])
def broken_order() -> None:
    raise RuntimeError(
        "billing refused key sk_live_real_billing_key; warehouse postgresql://hub:"
        f"{PG_PASSWORD}@db.internal:5432/hub; crm secret crm-sandbox-secret"
    )


@dg.asset(key=["raw", "shop", "orders"])
def fine_order() -> int:
    return 1


def test_failed_run_sends_exactly_one_alert_without_secrets(hub, receiver):
    sink = _sink(receiver)
    cursor = _tick(alerts.alert_on_run_failure, hub, None, alerts=sink)  # first tick starts the cursor
    ok = dg.materialize([fine_order], instance=hub)
    failed = dg.materialize([fine_order, broken_order], instance=hub, raise_on_error=False)
    assert ok.success and not failed.success

    cursor = _tick(alerts.alert_on_run_failure, hub, cursor, alerts=sink)
    cursor = _tick(alerts.alert_on_run_failure, hub, cursor, alerts=sink)

    assert len(receiver.received) == 1
    message = receiver.received[0]
    text = message["text"]
    assert failed.run_id in text
    assert "Assets:* canonical/sales_order" in text
    assert "raw/shop/orders" not in text  # it succeeded in the same run
    assert "RuntimeError: billing refused key" in text
    assert f"http://dagster.example:3000/runs/{failed.run_id}" in text
    assert message["blocks"][0]["text"]["text"] == "Run failed: __ephemeral_asset_job__"
    assert message["blocks"][2]["elements"][0]["url"] == f"http://dagster.example:3000/runs/{failed.run_id}"
    dumped = json.dumps(message)
    for secret in SECRETS:
        assert secret not in dumped
    assert "postgresql://hub:***@db.internal" in text

    second = dg.materialize([broken_order], instance=hub, raise_on_error=False)
    _tick(alerts.alert_on_run_failure, hub, cursor, alerts=sink)
    assert [second.run_id in m["text"] for m in receiver.received] == [False, True]


@dg.asset(key=["canonical", "invoice"])
def invoices() -> int:
    return 3


@dg.asset_check(asset=invoices, name="amount_usd_not_null")
def invoice_amounts_present() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False, severity=dg.AssetCheckSeverity.WARN, description="2 invoices have no amount_usd"
    )


@dg.asset_check(asset=invoices, name="unique_invoice_id")
def invoice_ids_unique() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def test_failed_check_sends_one_alert_per_evaluation(hub, receiver):
    sink = _sink(receiver)
    result = dg.materialize([invoices, invoice_amounts_present, invoice_ids_unique], instance=hub)
    assert result.success  # a WARN check does not fail the run: only the check sensor sees it

    cursor = _tick(alerts.alert_on_check_failure, hub, None, alerts=sink)
    _tick(alerts.alert_on_check_failure, hub, cursor, alerts=sink)

    assert len(receiver.received) == 1
    text = receiver.received[0]["text"]
    assert "canonical/invoice" in text and "amount_usd_not_null" in text and "WARN" in text
    assert "2 invoices have no amount_usd" in text and result.run_id in text
    assert "unique_invoice_id" not in text


def test_dead_letter_growth_alerts_only_when_it_grows(hub, receiver):
    sink = _sink(receiver)
    warehouse = Warehouse()

    def dead_letters(n: int, status: str = "open") -> None:
        rows = {
            "sync": ["support_orders"] * n,
            "record_key": [f"SO-{i}" for i in range(n)],
            "status": [status] * n,
        }
        warehouse.write_arrow("sync", "dead_letter", pa.table(rows))

    cursor = _tick(alerts.alert_on_dead_letter_growth, hub, None, alerts=sink, warehouse=warehouse)
    assert receiver.received == []  # no table yet, nothing open

    dead_letters(3)
    dead_letters(5, status="replayed")
    cursor = _tick(alerts.alert_on_dead_letter_growth, hub, cursor, alerts=sink, warehouse=warehouse)
    cursor = _tick(alerts.alert_on_dead_letter_growth, hub, cursor, alerts=sink, warehouse=warehouse)
    assert len(receiver.received) == 1
    assert "0 → 3" in receiver.received[0]["text"]
    assert "http://dagster.example:3000/assets/sync/dead_letter" in receiver.received[0]["text"]

    dead_letters(2)
    _tick(alerts.alert_on_dead_letter_growth, hub, cursor, alerts=sink, warehouse=warehouse)
    assert len(receiver.received) == 2 and "3 → 5" in receiver.received[1]["text"]


def test_unreachable_webhook_is_reported_without_leaking_its_url(hub, receiver):
    dead = AlertSink(webhook_url="http://127.0.0.1:9/hook-secret-path")
    cursor = _tick(alerts.alert_on_run_failure, hub, None, alerts=dead)
    dg.materialize([broken_order], instance=hub, raise_on_error=False)
    ctx = dg.build_sensor_context(instance=hub, cursor=cursor, resources={"alerts": dead})
    reactions = alerts.alert_on_run_failure.evaluate_tick(ctx).dagster_run_reactions
    # Dagster records the sensor error against the failed run (shown on its page in the UI).
    assert len(reactions) == 1 and "could not be reached" in reactions[0].error.to_string()
    assert "hook-secret-path" not in reactions[0].error.to_string()

    # The check and dead-letter sensors keep their cursor: the alert goes out on a later tick.
    dg.materialize([invoices, invoice_amounts_present], instance=hub)
    with pytest.raises(Exception, match="could not be reached"):
        _tick(alerts.alert_on_check_failure, hub, None, alerts=dead)
    _tick(alerts.alert_on_check_failure, hub, None, alerts=_sink(receiver))
    assert len(receiver.received) == 1 and "amount_usd_not_null" in receiver.received[0]["text"]


def test_alert_links_follow_hub_ui_url(monkeypatch):
    """The UI may be served anywhere (another port, behind a proxy path): links follow HUB_UI_URL."""
    from resources.alerts import alert_sink_from_env

    monkeypatch.delenv("HUB_UI_URL", raising=False)
    assert alert_sink_from_env().link("/runs/abc") == "http://127.0.0.1:3000/runs/abc"
    monkeypatch.setenv("HUB_UI_URL", "https://hub.example.com/dagster/")
    assert alert_sink_from_env().link("/runs/abc") == "https://hub.example.com/dagster/runs/abc"
