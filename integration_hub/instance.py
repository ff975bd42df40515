"""The Dagster instance under `$HUB_HOME/dagster`: config the hub relies on, written once."""

from __future__ import annotations

from pathlib import Path

from integration_hub import settings

# Run retries and run monitoring let a crashed run be retried; the warehouse pool
# serialises steps that write the embedded DuckDB file (one writer at a time).
DAGSTER_YAML = """\
telemetry:
  enabled: false
run_retries:
  enabled: true
  max_retries: 2
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 30
concurrency:
  pools:
    default_limit: 1
"""


def ensure_dagster_home() -> Path:
    home = settings.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(DAGSTER_YAML)
    return home
