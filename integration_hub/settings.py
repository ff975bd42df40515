"""Where the hub keeps its state, and the names other tools rely on.

Everything is derived from the environment at call time (not import time), so a
test can point `HUB_HOME` at a temporary folder before it builds anything.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Sandbox credentials are public, documented defaults: real deployments set the
# same variables to real secrets. Never log their values.
SANDBOX_CREDENTIALS = {
    "HUB_CRM_CLIENT_ID": "hub-sandbox",
    "HUB_CRM_CLIENT_SECRET": "crm-sandbox-secret",
    "HUB_SHOP_API_KEY": "shpat_sandbox_key",
    "HUB_BILLING_API_KEY": "sk_test_sandbox",
    "HUB_SUPPORT_API_TOKEN": "zd_sandbox_token",
    "HUB_MARKETING_API_KEY": "hs_sandbox_key",
}

# Default ports of the sandbox systems (127.0.0.1); HUB_SANDBOX_PORT_BASE shifts them all.
SANDBOX_PORT_OFFSETS = {"crm": 1, "shop": 2, "billing": 3, "support": 4, "marketing": 5}
DEFAULT_PORT_BASE = 8760


def hub_home() -> Path:
    return Path(os.environ.get("HUB_HOME", "./.hub")).resolve()


def sandbox_dir() -> Path:
    return hub_home() / "sandbox"


def landing_dir(feed: str = "payments") -> Path:
    return hub_home() / "landing" / feed


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME", hub_home() / "dagster")).resolve()


def warehouse_url() -> str | None:
    """`None` means the embedded DuckDB at `$HUB_HOME/warehouse.duckdb`."""
    return os.environ.get("HUB_WAREHOUSE_URL") or None


def secret(name: str) -> str:
    """A credential from the environment, falling back to the documented sandbox default."""
    return os.environ.get(name) or SANDBOX_CREDENTIALS[name]


def port_base() -> int:
    return int(os.environ.get("HUB_SANDBOX_PORT_BASE", DEFAULT_PORT_BASE))


def system_url(system: str) -> str:
    """Base URL of a connected system: `HUB_<SYSTEM>_URL`, else the local sandbox."""
    explicit = os.environ.get(f"HUB_{system.upper()}_URL")
    if explicit:
        return explicit.rstrip("/")
    return f"http://127.0.0.1:{port_base() + SANDBOX_PORT_OFFSETS[system]}"


def erp_url() -> str:
    """SQLAlchemy-style URL of the ERP database: `HUB_ERP_URL`, else the URL `hub sandbox up
    --erp-url` recorded in `world.json`, else the sandbox's SQLite file."""
    explicit = os.environ.get("HUB_ERP_URL")
    if explicit:
        return explicit
    world = sandbox_dir() / "world.json"
    recorded = json.loads(world.read_text()).get("erp_url") if world.exists() else None
    return recorded or f"sqlite:///{sandbox_dir() / 'erp.sqlite'}"


def partition_start() -> str:
    """First day (UTC, `YYYY-MM-DD`) of the daily partitions of incremental sources."""
    return os.environ.get("HUB_PARTITION_START", "2026-10-01")
