"""How long a sync's changes took to reach their destination, per record, against its target.

A record's latency is its changelog row's `confirmed_at` (the destination confirmed it) minus
its `source_changed_at` (when the source last changed it, `Sync.changed_at`), so it covers
the whole path: ingestion, canonical build, plan and push.

The window is the deliveries of the latest run that delivered any measurable record. A run
is the unit that promises something: a time window (the last hour, say) would mix a run
after the destination recovered with the slow one before it, and keep the verdict red for
an hour after the cause is gone, and between runs it would hold nothing and pass by default.
A run that delivers nothing has no new latency to judge, so the last verdict stands until
one does. A Dagster step's retries keep their run's id, so a record delivered by a retry
counts with its whole wait. Records without a change time (dead-letter replays, deletes)
cannot be measured and are left out.

A breach fails the check as a WARN: the records are already delivered when it is judged, so
stopping anything downstream would fix nothing (ERROR is what this hub's blocking checks
stop on); the failure is for the operator, and `alert_on_check_failure` sends it either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from integration_hub.engine.checks import CheckOutcome
from integration_hub.engine.sync_engine.declaration import CHANGELOG, Sync, ensure_tables
from integration_hub.warehouse import Warehouse

CHECK = "latency_p95"
_SECONDS = "CAST(EXTRACT(EPOCH FROM (confirmed_at - source_changed_at)) AS DOUBLE PRECISION)"
_MEASURABLE = (
    "sync = ? AND status = 'delivered' AND source_changed_at IS NOT NULL AND confirmed_at IS NOT NULL"
)


@dataclass(frozen=True)
class Latency:
    """A sync's latency figures over its window, in seconds (None while nothing was measured)."""

    sync: str
    target_seconds: float
    run_id: str | None = None
    records: int = 0
    p50_seconds: float | None = None
    p95_seconds: float | None = None
    max_seconds: float | None = None

    @property
    def passed(self) -> bool:
        return self.p95_seconds is None or self.p95_seconds <= self.target_seconds

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def measure_latency(warehouse: Warehouse, sync: Sync) -> Latency:
    """p50, p95 and max of (confirmed_at − source_changed_at) over the window (see the module)."""
    ensure_tables(warehouse)
    target = sync.latency_target.total_seconds()
    with warehouse.connect() as con:
        latest = con.rows(
            f"SELECT run_id FROM {CHANGELOG} WHERE {_MEASURABLE} ORDER BY confirmed_at DESC LIMIT 1",
            [sync.name],
        )
        if not latest:
            return Latency(sync.name, target)
        run_id = latest[0][0]
        records, p50, p95, most = con.rows(
            f"SELECT count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY s), "
            f"percentile_cont(0.95) WITHIN GROUP (ORDER BY s), max(s) "
            f"FROM (SELECT {_SECONDS} AS s FROM {CHANGELOG} WHERE {_MEASURABLE} AND run_id = ?) w",
            [sync.name, run_id],
        )[0]
    return Latency(sync.name, target, run_id, int(records), *(round(float(v), 3) for v in (p50, p95, most)))


def latency_check(warehouse: Warehouse, sync: Sync) -> CheckOutcome:
    """The `latency_p95` verdict: fails (WARN) when the window's p95 exceeds the sync's target."""
    figures = measure_latency(warehouse, sync)
    if figures.records == 0:
        description = "no delivered record with a change time yet: nothing to measure"
    else:
        verdict = "within" if figures.passed else "over"
        description = (
            f"p95 {figures.p95_seconds:.1f} s {verdict} the target {figures.target_seconds:.0f} s "
            f"over the {figures.records} records run {figures.run_id} delivered"
        )
    return CheckOutcome(
        passed=figures.passed,
        severity="WARN",
        name=CHECK,
        description=description,
        metadata={
            "p50_seconds": figures.p50_seconds,
            "p95_seconds": figures.p95_seconds,
            "max_seconds": figures.max_seconds,
            "records": figures.records,
            "target_seconds": figures.target_seconds,
            "run_id": figures.run_id,
        },
    )
