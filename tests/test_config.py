"""Configuration that cannot work fails at start, in one line naming the variable (issue "No silent loss").

- a `HUB_WAREHOUSE_URL` that is not a Postgres URL (another scheme, not a URL, stray spaces)
  never falls back to the local DuckDB;
- a system's sandbox credential applies only while the system is the local sandbox: a real
  URL without its credential is an error naming the variable, for sources and destinations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from integration_hub import settings, systems

ROOT = Path(__file__).resolve().parents[1]


def _hub(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    return subprocess.run(
        [sys.executable, "-c", "from integration_hub.cli import main; main()", *args],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    "url", ["mysql://hub:pw@db.example/hub", "notaurl", " postgresql://postgres@127.0.0.1:5432/test"]
)
def test_a_warehouse_url_that_is_not_postgres_fails_in_one_line(url, tmp_path):
    out = _hub("run", "hourly", HUB_WAREHOUSE_URL=url, HUB_HOME=str(tmp_path))
    assert out.returncode == 2, out.stderr[-2000:]
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("hub: configuration error: HUB_WAREHOUSE_URL must be a postgresql:// URL")
    assert "pw" not in line
    assert not (tmp_path / "warehouse.duckdb").exists(), "nothing ran against the local DuckDB"


def test_sandbox_credentials_apply_only_to_the_local_sandbox(monkeypatch):
    for var in (
        "HUB_CRM_URL",
        "HUB_CRM_CLIENT_ID",
        "HUB_CRM_CLIENT_SECRET",
        "HUB_SUPPORT_URL",
        "HUB_SUPPORT_API_TOKEN",
    ):
        monkeypatch.delenv(var, raising=False)
    crm = systems.get("crm")
    assert crm.client_kwargs()["client_secret"] == "crm-sandbox-secret", "no URL: the local sandbox"
    monkeypatch.setenv("HUB_CRM_URL", "http://127.0.0.1:9999")
    assert crm.client_kwargs()["client_id"] == "hub-sandbox", "a sandbox on another port is still local"

    monkeypatch.setenv("HUB_CRM_URL", "https://acme.my.salesforce.com")
    with pytest.raises(settings.ConfigError) as err:
        crm.client_kwargs()
    assert str(err.value) == (
        "HUB_CRM_CLIENT_ID is not set: crm is at https://acme.my.salesforce.com, not the local sandbox, "
        "so set HUB_CRM_CLIENT_ID to its credential"
    )
    assert systems.config_problems() == [str(err.value)]
    monkeypatch.setenv("HUB_CRM_CLIENT_ID", "id-from-the-secret-store")
    monkeypatch.setenv("HUB_CRM_CLIENT_SECRET", "secret-from-the-secret-store")
    assert crm.client_kwargs()["client_secret"] == "secret-from-the-secret-store"

    # A destination: a real desk without its token must not receive the sandbox's.
    monkeypatch.setenv("HUB_SUPPORT_URL", "https://acme.zendesk.com")
    with pytest.raises(
        settings.ConfigError,
        match=r"^HUB_SUPPORT_API_TOKEN is not set: support is at https://acme\.zendesk\.com",
    ):
        systems.writer("support", "orders")
    assert "zd_sandbox_token" not in " ".join(systems.config_problems())


def test_a_partition_that_does_not_exist_is_one_line_not_a_traceback(tmp_path):
    out = _hub("run", "hourly", "--partition", "garbage", HUB_HOME=str(tmp_path))
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "--partition 'garbage' is not a partition of 'hourly_sources'" in " ".join(out.stderr.split())
