"""Where the hub keeps its state, and the environment it reads: the one module that reads it.

Everything is read at call time (not import time), so a test can point `HUB_HOME` at a
temporary folder before it builds anything. Which variables a system needs (its URL and
credentials) is declared with the system (`integration_hub.systems`); this module reads them.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT_BASE = 8760  # the sandbox stand-ins answer on 127.0.0.1 at this base + their offset


def env(name: str, default: str | None = None) -> str | None:
    """An environment variable, `default` when it is unset or empty."""
    return os.environ.get(name) or default


def hub_home() -> Path:
    return Path(env("HUB_HOME", "./.hub")).resolve()


def sandbox_dir() -> Path:
    return hub_home() / "sandbox"


def landing_dir(feed: str = "payments") -> Path:
    return hub_home() / "landing" / feed


def dagster_home() -> Path:
    return Path(env("DAGSTER_HOME") or hub_home() / "dagster").resolve()


def warehouse_url() -> str | None:
    """`None` means the embedded DuckDB at `$HUB_HOME/warehouse.duckdb`."""
    return env("HUB_WAREHOUSE_URL")


def secret(name: str, sandbox_default: str | None = None) -> str:
    """A credential from the environment, else the sandbox's documented public default.

    Never log the value. A credential with no default must be set.
    """
    value = env(name, sandbox_default)
    if value is None:
        raise ValueError(f"set {name}: it has no default")
    return value


def port_base() -> int:
    return int(env("HUB_SANDBOX_PORT_BASE", str(DEFAULT_PORT_BASE)))


def partition_start() -> str:
    """First day (UTC, `YYYY-MM-DD`) of the daily partitions of incremental sources."""
    return env("HUB_PARTITION_START", "2026-10-01")


def wait_report_seconds() -> float:
    """How often a run waiting for a pool slot says so in its log (`HUB_WAIT_REPORT_SECONDS`)."""
    return float(env("HUB_WAIT_REPORT_SECONDS", "30"))
