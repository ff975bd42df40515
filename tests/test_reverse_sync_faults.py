"""Reverse sync under the sandbox's faults: rate limits, outages, expiring tokens, wrong credentials."""

from __future__ import annotations

import dataclasses
import time

import pytest
from typer.testing import CliRunner

from assets.syncs import SYNCS
from integration_hub.cli import app
from integration_hub.engine import sync_engine as rs
from integration_hub.engine.sync_engine import delivery
from integration_hub.systems.kit.writer import DestinationUnusable
from integration_hub.warehouse import Warehouse
from tests.test_reverse_sync_e2e import copy_canonical, marketing_contacts


@pytest.fixture
def hub(make_sandbox, canonical_world, monkeypatch):
    monkeypatch.delenv("HUB_WAREHOUSE_URL", raising=False)
    box = make_sandbox(export=True)
    warehouse = Warehouse()
    copy_canonical(canonical_world, warehouse)
    return box, warehouse


def changelog(warehouse: Warehouse, sync: str) -> dict[str, int]:
    with warehouse.connect() as con:
        return dict(con.rows("SELECT status, count(*) FROM sync.changelog WHERE sync = ? GROUP BY 1", [sync]))


def test_rate_limits_and_outages_are_retried_honouring_retry_after(hub):
    box, warehouse = hub
    sync = SYNCS["marketing_contacts"]
    planned = rs.plan(sync, warehouse).counts["insert"]
    box.set_fault("marketing", "outage", seconds=2)
    box.set_fault("marketing", "rate_limit", every=3, retry_after=1)
    started = time.monotonic()
    result = rs.apply(sync, warehouse)
    assert (result.delivered, result.rejected, result.failed) == (planned, 0, 0), result.errors
    assert time.monotonic() - started >= 2  # the outage's Retry-After was waited out, not hammered
    batches = -(-planned // sync.batch_size)
    assert result.requests > batches  # the 503s and 429s were sent again
    box.clear_faults("marketing")
    assert len(marketing_contacts(box)) == planned
    assert changelog(warehouse, sync.name) == {"delivered": planned}


def test_an_expired_crm_token_is_renewed_mid_push(hub):
    box, warehouse = hub
    sync = dataclasses.replace(SYNCS["crm_accounts"], concurrency=1)
    box.set_fault("crm", "token_expiry", ttl=0.3)
    box.set_fault("crm", "slow", delay=0.2)
    result = rs.apply(sync, warehouse)
    assert result.rejected == result.failed == 0 and result.delivered == result.counts["insert"]
    assert box.stats("crm")["by_path"]["/services/oauth2/token"] >= 2


def test_a_destination_that_stays_down_fails_the_run_and_keeps_everything_for_the_next(hub, monkeypatch):
    box, warehouse = hub
    monkeypatch.setattr(delivery, "MAX_ATTEMPTS", 2)
    monkeypatch.setattr(delivery, "BACKOFF_BASE", 0.01)
    sync = SYNCS["marketing_contacts"]
    planned = rs.plan(sync, warehouse).counts["insert"]
    box.set_fault("marketing", "outage")
    result = rs.apply(sync, warehouse)
    assert (result.delivered, result.rejected, result.failed) == (0, 0, planned)
    # The last transient error is the outage's 503, or a pooled connection the server dropped.
    assert "gave up after 2 attempts" in result.errors[0]
    assert any(sign in result.errors[0] for sign in ("503", "ReadError", "RemoteProtocolError")), (
        result.errors[0]
    )
    assert rs.dead_letters(warehouse, sync.name) == []  # not the destination's verdict: no dead letter
    assert changelog(warehouse, sync.name) == {"failed": planned}
    assert rs.plan(sync, warehouse).counts["insert"] == planned
    box.clear_faults("marketing")
    assert rs.apply(sync, warehouse).delivered == planned


def test_wrong_credentials_stop_the_push_without_dead_letters_or_the_secret(hub, monkeypatch):
    box, warehouse = hub
    secret = "zd-not-the-token-7f3a9c"
    monkeypatch.setenv("HUB_SUPPORT_API_TOKEN", secret)
    sync = SYNCS["support_orders"]
    with pytest.raises(DestinationUnusable, match="HTTP 401") as caught:
        rs.apply(sync, warehouse)
    assert secret not in str(caught.value)
    assert rs.dead_letters(warehouse, sync.name) == [] and changelog(warehouse, sync.name) == {}
    cli = CliRunner().invoke(app, ["sync", "apply", sync.name])
    assert cli.exit_code == 2 and "check HUB_SUPPORT_URL and the system's credentials" in cli.output
    assert secret not in cli.output
    assert box.stats("support")["records_written"] == 0
