"""`hub sandbox …` end to end: up/status/down, idempotent up, clear errors, truth, tick and faults."""

from __future__ import annotations

import json
import time

import certifi
import httpx
import pytest
from hub_sandbox import runner
from typer.testing import CliRunner

from integration_hub.cli import app
from tests.conftest import free_port_base

cli = CliRunner()


def hub(*args: str, env: dict | None = None):
    return cli.invoke(app, ["sandbox", *args], env=env, catch_exceptions=False)


@pytest.fixture
def home_env(tmp_path):
    """A fresh HUB_HOME and port base; whatever the test starts is stopped afterwards."""
    env = {"HUB_HOME": str(tmp_path), "HUB_SANDBOX_PORT_BASE": str(free_port_base())}
    yield env
    runner.stop(tmp_path)


def test_up_status_truth_down_and_up_again_without_reseeding(home_env, sandbox):
    result = hub("up", "--scale", "0.01", "--seed", "42", env=home_env)
    assert result.exit_code == 0, result.output
    status = json.loads(hub("status", "--json", env=home_env).stdout)
    assert status["running"] and {s["status"] for s in status["systems"].values()} == {"ok"}
    assert (
        status["systems"]["billing"]["url"]
        == f"https://127.0.0.1:{int(home_env['HUB_SANDBOX_PORT_BASE']) + 3}"
    )
    bundle = status["ca_bundle"]  # the home's own CA verifies the stand-ins; the public CAs do not
    assert bundle.startswith(home_env["HUB_HOME"]) and bundle.endswith("ca-bundle.pem")
    health = f"{status['systems']['billing']['url']}/_admin/health"
    assert httpx.get(health, verify=bundle).json()["status"] == "ok"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(health, verify=certifi.where())  # the public CAs alone
    generated = status["world"]["generated_at"]

    truth = hub("truth", "--json", env=home_env).stdout
    assert json.loads(truth) == sandbox.truth  # the same seed generates the same truth

    assert "stopped" in hub("down", env=home_env).output
    assert not json.loads(hub("status", "--json", env=home_env).stdout)["running"]
    result = hub("up", "--scale", "0.01", "--seed", "42", "--json", env=home_env)
    assert result.exit_code == 0 and "not re-seeding" in result.stderr
    assert json.loads(result.stdout)["world"]["generated_at"] == generated, "stdout is the status alone"
    assert json.loads(hub("status", "--json", env=home_env).stdout)["world"]["generated_at"] == generated

    faults = hub("faults", "shop", "outage", "--param", "seconds=30", env=home_env)
    assert json.loads(faults.stdout) == {"outage": {"seconds": 30.0}}
    shop = f"{status['systems']['shop']['url']}/admin/api/2025-01/orders.json"
    assert httpx.get(shop, verify=bundle).status_code == 503
    assert json.loads(hub("faults", "shop", "--clear", env=home_env).stdout) == {}

    ticked = json.loads(hub("tick", "--fraction", "0.001", "--json", env=home_env).stdout)
    assert ticked["tick"] == 1 and ticked["records"]["erp.sales_orders"]["new"] == 15

    # Plain HTTP only when asked for, and not while the HTTPS servers run.
    assert hub("up", "--scale", "0.01", "--seed", "42", "--http", env=home_env).exit_code == 1
    hub("down", env=home_env)
    assert hub("up", "--scale", "0.01", "--seed", "42", "--http", env=home_env).exit_code == 0
    plain = json.loads(hub("status", "--json", env=home_env).stdout)["systems"]["billing"]["url"]
    assert plain.startswith("http://") and httpx.get(f"{plain}/_admin/health").json()["status"] == "ok"


def test_another_seed_plants_other_keys(home_env, sandbox):
    assert hub("seed", "--scale", "0.01", "--seed", "7", env=home_env).exit_code == 0
    truth = json.loads(hub("truth", "--json", env=home_env).stdout)
    assert (
        truth["seed"] == 7
        and truth["counts"]["erp.sales_orders"] == sandbox.truth["counts"]["erp.sales_orders"]
    )
    assert truth["discrepancies"]["invoice_missing"] != sandbox.truth["discrepancies"]["invoice_missing"]


def test_a_port_in_use_is_named_with_the_variable_to_change(home_env):
    base = int(home_env["HUB_SANDBOX_PORT_BASE"])
    holder = runner.bind(base + 3)
    holder.listen()
    try:
        result = hub("up", env=home_env)
    finally:
        holder.close()
    assert result.exit_code == 1
    assert f"port {base + 3}" in result.output and "HUB_SANDBOX_PORT_BASE" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--scale", "-1"], "--scale must be a positive"),
        (["seed", "--scale", "0"], "--scale must be a positive"),
        (["up", "--erp-url", "mysql://x"], "--erp-url must be a postgresql:// URL"),
        (["tick", "--fraction", "2"], "--fraction must be in (0, 1]"),
        (["faults", "ftp", "outage"], "unknown system 'ftp'"),
        (["faults", "shop", "outage", "--param", "seconds"], "--param takes k=v"),
        (["truth"], "run `hub sandbox up`"),
        (["tick"], "run `hub sandbox up` first"),
    ],
)
def test_bad_arguments_get_clear_errors(home_env, args, message):
    result = hub(*args, env=home_env)
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_faults_on_a_stopped_sandbox_says_so(home_env):
    result = hub("faults", "shop", "outage", env=home_env)
    assert result.exit_code == 1 and "is the sandbox up" in " ".join(result.output.split())


def test_a_runner_whose_home_is_gone_shuts_itself_down(make_sandbox):
    box = make_sandbox()
    pid = runner.running_pid(box.home)
    runner.pid_file(box.home).unlink()  # what deleting the tmp home does
    deadline = time.monotonic() + runner.ORPHAN_GRACE + 20
    while runner._alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not runner._alive(pid)
