"""How a raw load ends: its failure, retried within a budget, and its outcome, recorded and checked.

A load that failed (the source was down, refused, or sent something dlt could not take) is
retried as a step, on top of dlt's per-request retries, and finally fails with a message that
says what the system answered and what to do. A load that ran quarantines the rows the
adapter's row contract refused, writes one audit row per resource, evaluates each raw asset's
blocking `load_contract` check (a few refused rows make a WARN, more than
`HUB_CONTRACT_MAX_REJECT_SHARE`, default 10 %, an ERROR) and enriches each materialization.
"""

import datetime as dt
import random
from typing import Any

import dagster as dg
import dlt

from assets.metadata import table_metadata
from integration_hub import settings
from integration_hub.engine.audit import Movement, record
from integration_hub.engine.quarantine import quarantine, top_reasons
from integration_hub.systems import System
from integration_hub.systems.kit.contract import Rejects
from integration_hub.warehouse import Warehouse
from integration_hub.warehouse.arrow_sink import DuckDBArrowSink


def retry_or_fail(context: dg.AssetExecutionContext, failure: dg.Failure) -> Exception:
    """Step retries of a failed load (on top of dlt's per-request retries), budgeted at run
    time: `HUB_LOAD_MAX_RETRIES` and `HUB_LOAD_RETRY_DELAY` (exponential, ±20 % jitter) apply
    to the next run without reloading the code location, unlike a `RetryPolicy` fixed at
    import. Only load failures are retried (not a bug or a contract violation); the last
    attempt fails with the load's own message."""
    budget = settings.load_max_retries()
    if context.retry_number >= budget:
        return failure
    delay = settings.load_retry_delay() * 2**context.retry_number * random.uniform(0.8, 1.2)
    context.log.warning(
        f"{failure.description} Retry {context.retry_number + 1} of {budget} in {delay:.0f} s."
    )
    return dg.RetryRequested(max_retries=budget, seconds_to_wait=delay)


def load_failure(system: str, exc: BaseException, where: str) -> dg.Failure:
    """A failure that says what the system answered and what to do, without URLs' secrets."""
    from requests import ConnectionError, HTTPError

    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, HTTPError | ConnectionError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, HTTPError) and cause.response is not None:
        response = cause.response
        what = (
            f"{system} answered HTTP {response.status_code} {response.reason} to "
            f"{response.request.method} {response.request.path_url.split('?')[0]} after dlt's retries"
        )
    elif isinstance(cause, ConnectionError):
        what = f"{system} could not be reached ({type(cause).__name__}) after dlt's retries"
    else:  # dlt wraps the cause twice, and its own first line ends "with exception:"
        root = exc
        while root.__cause__ is not None:
            root = root.__cause__
        message = next((line.strip() for line in str(root).splitlines() if line.strip()), "")
        what = f"the {system} load failed: {type(root).__name__}: {message[:300]}"
    return dg.Failure(
        description=f"{what}; {where} was not loaded. When {system} is back, re-run it or backfill "
        "the affected partitions: nothing partial is kept beyond what merged by primary key."
    )


CONTRACT = "load_contract"
CONTRACT_DOC = (
    "Share of rows the adapter refused in this run's load (quarantined): WARN if any, ERROR if many."
)


def contract_specs(specs: list[dg.AssetSpec]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(CONTRACT, asset=s.key, blocking=True, description=CONTRACT_DOC) for s in specs]


def contract_result(warehouse: Warehouse, run_id: str, key: dg.AssetKey, rows_in: int, rejected: int):
    """The `load_contract` result of one raw asset's load: passed, WARN (a few refused), ERROR (many)."""
    system, resource = key.path[1], key.path[-1]
    share = rejected / rows_in if rows_in else 0.0
    metadata = {"rows_in": rows_in, "rows_rejected": rejected, "reject_share": round(share, 4)}
    if not rejected:
        return dg.AssetCheckResult(asset_key=key, check_name=CONTRACT, passed=True, metadata=metadata)
    reasons = top_reasons(warehouse, f"{system}__{resource}", run_id)
    severe = share > settings.contract_max_reject_share()
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CONTRACT,
        passed=False,
        severity=dg.AssetCheckSeverity.ERROR if severe else dg.AssetCheckSeverity.WARN,
        description=(
            f"{'Contract violation: ' if severe else ''}{rejected} of {rows_in} rows of {system}.{resource} "
            f"broke the row contract ({share:.1%}) and are in quarantine.{system}__{resource}: {reasons}"
        ),
        metadata=metadata,
    )


def finish_load(
    context: dg.AssetExecutionContext,
    source_system: System,
    warehouse: Warehouse,
    pipeline: dlt.Pipeline,
    events: list,
    rejects: Rejects,
    *,
    partition: str | None,
    started: dt.datetime,
    cursors: tuple[dict, dict],
    details: dict[str, Any],
    sink: DuckDBArrowSink | None = None,
) -> list[dg.MaterializeResult]:
    """Quarantine rejects, write one audit row per resource, evaluate each `load_contract` and
    enrich each materialization (a dozen small statements each, inside the step's session)."""
    system = source_system.name
    row_counts = pipeline.last_trace.last_normalize_info.row_counts if pipeline.last_trace else {}
    run_id = context.run.run_id
    movements, results = [], []
    for event in events:
        name = event.asset_key.path[-1]
        loaded = int(row_counts.get(name, 0)) + (sink.rows.get(name, 0) if sink else 0)
        children = {t: int(n) for t, n in row_counts.items() if t.startswith(f"{name}__")}
        rejected = quarantine(
            warehouse, f"{system}__{name}", run_id, rejects.by_resource.get(name, []),
            asset=event.asset_key.to_user_string(), system=system,
        )  # fmt: skip
        movements.append(
            Movement(
                run_id=run_id, asset=event.asset_key.to_user_string(), system=system, direction="load",
                resource=name, partition=partition, rows_in=loaded + rejected, rows_out=loaded,
                rows_rejected=rejected, cursor_before=cursors[0].get(name),
                cursor_after=cursors[1].get(name), started_at=started,
                details={**details, "child_tables": children},
            )
        )  # fmt: skip
        contract = (
            [contract_result(warehouse, run_id, event.asset_key, loaded + rejected, rejected)]
            if dg.AssetCheckKey(event.asset_key, CONTRACT) in context.selected_asset_check_keys
            else []
        )
        counts = {"rows_loaded": loaded, "rows_rejected": rejected, "child_tables": children}
        metadata = _metadata(warehouse, system, event, counts, details)
        results.append(
            dg.MaterializeResult(
                asset_key=event.asset_key, metadata=metadata, check_results=contract,
                data_version=event.data_version, tags=event.tags,
            )
        )  # fmt: skip
        if rejected:
            context.log.warning(
                f"{rejected} {system}.{name} rows broke the contract: see quarantine.{system}__{name}"
            )
    record(warehouse, *movements)
    return results


def _metadata(
    warehouse: Warehouse, system: str, event: Any, counts: dict[str, Any], details: dict[str, Any]
) -> dict[str, Any]:
    """A raw asset's materialization metadata: dlt's, the table's schema and preview, the load's counts."""
    dataset, name = f"raw_{system}", event.asset_key.path[-1]
    exists = warehouse.table_exists(dataset, name)
    return {
        **(event.metadata or {}),
        **(table_metadata(warehouse, dataset, name) if exists else {}),
        "dagster/row_count": warehouse.row_count(dataset, name) if exists else 0,
        **counts,
        "quarantine": f"quarantine.{system}__{name}" if counts["rows_rejected"] else "none",
        **{k: v if isinstance(v, list) else str(v) for k, v in details.items()},
    }
