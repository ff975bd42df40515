"""Integration Hub: the engine and the Dagster code location."""
