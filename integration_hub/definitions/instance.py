"""The Dagster instance under `$DAGSTER_HOME` (default `$HUB_HOME/dagster`): its `dagster.yaml`.

Two profiles, chosen by the environment:

- embedded (default): SQLite storage in `$DAGSTER_HOME`, the queued run coordinator, and
  one slot in the `warehouse` pool, because DuckDB lets one process write at a time.
- scale-out (`HUB_DAGSTER_STORAGE_URL=postgresql+psycopg2://…`): runs, event log and schedules
  on Postgres via dagster-postgres, so the webserver, the daemon and Celery workers on
  other machines share one instance; the warehouse pool is widened to
  `HUB_WAREHOUSE_POOL_LIMIT` (default 4), since Postgres takes concurrent writers.

Both retry crashed runs (run retries) and watch running ones (run monitoring). Asset
failures are not retried as whole runs: assets carry their own retry policies, and a
contract violation would only fail again. A run whose process was killed (OOM, SIGKILL)
never releases its `warehouse` pool slot itself; run monitoring frees a finished run's
slots after `free_slots_after_run_end_seconds`, or the one slot of the embedded profile
would block every later run.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from integration_hub import settings

STORAGE_URL_VAR = "HUB_DAGSTER_STORAGE_URL"

_COMMON = """\
telemetry:
  enabled: false
freshness:
  enabled: true
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  max_runtime_seconds: 21600
  poll_interval_seconds: 15
  free_slots_after_run_end_seconds: 10
concurrency:
  runs:
    max_concurrent_runs: {max_runs}
  pools:
    default_limit: {pool_limit}
"""

# The URL stays in the environment: dagster.yaml names the variable, never the password.
_POSTGRES = """\
storage:
  postgres:
    postgres_url:
      env: {var}
"""


def profile() -> str:
    """`scale-out` when the instance storage URL is set, else `embedded`."""
    return "scale-out" if settings.dagster_storage_url() else "embedded"


def dagster_yaml() -> str:
    if profile() == "embedded":
        return _COMMON.format(max_runs=4, pool_limit=1)
    if not settings.dagster_storage_url().startswith("postgresql+psycopg2://"):
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3, whose server-side binding rejects
        # the `NOTIFY run_events, :id` that dagster-postgres sends with every event.
        raise ValueError(
            f"{STORAGE_URL_VAR} must name the psycopg2 driver: postgresql+psycopg2://user:password@host:5432/db "
            "(dagster-postgres needs it; SQLAlchemy 2.1 reads postgresql:// as psycopg 3)."
        )
    pool_limit = settings.warehouse_pool_limit()
    return _COMMON.format(max_runs=8, pool_limit=pool_limit) + _POSTGRES.format(var=STORAGE_URL_VAR)


def ensure_dagster_home() -> Path:
    """Write `dagster.yaml` for the current profile (rewritten when the profile changes)."""
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    wanted = dagster_yaml()
    if not cfg.exists() or cfg.read_text() != wanted:
        cfg.write_text(wanted)
    return home


def get_instance() -> dg.DagsterInstance:
    """The hub's instance (config written first), for the CLI: close it when done."""
    home = ensure_dagster_home()
    os.environ.setdefault("DAGSTER_HOME", str(home))
    return dg.DagsterInstance.from_config(str(home))
