"""Reverse-sync layer: one asset per declared sync (`assets.syncs.SYNCS`).

Materializing `["sync", name]` plans the sync (the diff against what the destination last
confirmed), shows that plan in the metadata and pushes it. Records the destination
refused wait in `sync.dead_letter` (the `no_open_dead_letters` check warns while any do);
`latency_p95` warns when the run's deliveries took longer than the sync's `latency_target`
from their change at the source (`sync_engine.latency`). Records that could not be
delivered for now fail the step, which the retry policy runs again with backoff,
re-sending only what was not confirmed.
"""

import dagster as dg

from assets.metadata import check_result
from assets.syncs import SYNCS
from integration_hub.engine import sync_engine
from integration_hub.engine.sync_engine import Sync
from integration_hub.systems.kit.writer import DestinationUnusable
from integration_hub.warehouse import Warehouse
from resources.warehouse import WAREHOUSE_POOL, warehouse_from_env

GROUP = "sync"
OWNERS = ["team:data-platform"]
DEAD_LETTERS = (
    "Warns while records the destination refused wait in sync.dead_letter "
    "(`hub dlq list`, `hub dlq replay`, `hub dlq discard`)."
)
FULL_PLAN_TAG = "hub/full_sync_plan"  # "true": plan every key, not only the changed ones (the nightly)
LATENCY = (
    "Warns when the p95 of (destination confirmed − source changed) over the latest run that "
    "delivered records exceeds the sync's latency_target (`hub sync latency`)."
)
RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def _key(sync: Sync) -> dg.AssetKey:
    return dg.AssetKey(["sync", sync.name])


def sync_asset(sync: Sync) -> dg.AssetsDefinition:
    @dg.asset(
        key=_key(sync),
        deps=[dg.AssetKey(list(k)) for k in sync.deps],
        group_name=GROUP,
        kinds={"python", sync.destination},
        owners=OWNERS,
        description=sync.description,
        retry_policy=RETRY,
        pool=WAREHOUSE_POOL,
        check_specs=[
            dg.AssetCheckSpec("no_open_dead_letters", asset=_key(sync), description=DEAD_LETTERS),
            dg.AssetCheckSpec(sync_engine.latency.CHECK, asset=_key(sync), description=LATENCY),
        ],
        metadata={
            "destination": f"{sync.destination}.{sync.object}",
            "mode": sync.mode,
            "match_key": sync.key,
            "allowed_fields": sorted(sync.allow),
            "withheld_fields": sync.withheld,
            "pii_fields": sorted(sync.pii & sync.allow),
            "latency_target_seconds": sync.latency_target.total_seconds(),
        },
    )
    def _push(
        context: dg.AssetExecutionContext, warehouse: dg.ResourceParam[Warehouse]
    ) -> dg.MaterializeResult:
        scope = sync_engine.open_scope(sync, warehouse, full=context.run.tags.get(FULL_PLAN_TAG) == "true")
        current = sync_engine.plan(sync, warehouse, scope.sql)
        context.log.info(f"{sync.name} plan over {scope.description}: {current.counts}")
        try:
            result = sync_engine.apply(
                sync, warehouse, run_id=context.run_id, current=current, progress=context.log.info
            )
        except DestinationUnusable as exc:  # retrying cannot fix credentials or a URL
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        metadata = {
            **{f"plan_{k}": v for k, v in current.counts.items()},
            "filtered_by_reason": current.filtered,
            "plan_sample": dg.MetadataValue.md(current.markdown()),
            "delivered": result.delivered,
            "rejected": result.rejected,
            "failed": result.failed,
            "requests": result.requests,
            "seconds": result.seconds,
            "plan_scope": scope.description,
        }
        if result.failed:  # the check is not evaluated: the retry's push decides what waits
            raise dg.Failure(
                description=f"{result.failed} records could not be delivered to {sync.destination} for now "
                f"(e.g. {result.errors[0]}); delivered ones are recorded, a retry sends the rest",
                metadata=metadata,
            )
        sync_engine.advance(sync, warehouse, scope)
        checks = [dead_letter_check(sync, warehouse), latency_check(sync, warehouse)]
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return _push


def dead_letter_check(sync: Sync, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Evaluated in the push's own step (a separate check step would pay a process's set-up
    with the multiprocess executor)."""
    letters = sync_engine.dead_letters(warehouse, sync.name)
    sample = "\n".join(f"- `{d['key']}`: {d['error']}" for d in letters[:10]) or "_none_"
    return dg.AssetCheckResult(
        check_name="no_open_dead_letters",
        passed=not letters,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"open_dead_letters": len(letters), "sample": dg.MetadataValue.md(sample)},
    )


def latency_check(sync: Sync, warehouse: Warehouse) -> dg.AssetCheckResult:
    """Also in the push's own step: it judges the deliveries the push just recorded."""
    return check_result(sync_engine.latency_check(warehouse, sync), _key(sync))


ASSETS: list = [sync_asset(s) for s in SYNCS.values()]
CHECKS: list = []
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
RESOURCES: dict = {"warehouse": warehouse_from_env()}
