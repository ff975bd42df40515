"""A check's verdict in plain data, so the engine can judge without Dagster.

The assets layer turns a `CheckOutcome` into Dagster's `AssetCheckResult` (`assets/metadata.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("WARN", "ERROR")


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    severity: str = "WARN"  # how a failure counts: WARN, or ERROR (which a blocking check stops on)
    name: str | None = None  # the check's name when the asset has several
    description: str | None = None
    metadata: dict = field(default_factory=dict)  # plain values; dicts and lists become JSON
