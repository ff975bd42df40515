"""Integration Hub: the engine and the Dagster code location."""

import os

# dlt reports anonymous usage to dlthub by default. The hub runs inside a company's network
# and sends nothing to third parties unless the operator opts in (`RUNTIME__DLTHUB_TELEMETRY=true`).
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
