"""Reconciliation assets: one asset per flow (`assets.recon_flows`) in group `recon`, key `["recon", flow]`.

Each flow carries asset checks, one per finding kind, that fail (or warn) when that kind's
findings exceed a share of the flow's left rows; `ReconConfig.max_share` overrides a
threshold per kind at launch time. `source_completeness` first asks every system that can
count its records (its descriptor's `count`) and appends the answers to `recon.source_counts`.
"""

import dagster as dg

from assets.metadata import asset_key
from assets.recon_flows import FLOWS, completeness_flows
from integration_hub import systems
from integration_hub.engine import completeness
from integration_hub.engine.recon_engine import Flow, FlowResult, Threshold, run_flow
from integration_hub.engine.sql_models import table_key, upstream_keys
from integration_hub.warehouse import Warehouse
from resources.systems import client, resource_key
from resources.warehouse import WAREHOUSE_POOL, warehouse_from_env


class ReconConfig(dg.Config):
    max_share: dict[str, float] = {}  # finding kind -> largest tolerated share of the left rows


def _markdown(flow: Flow, result: FlowResult) -> str:
    """Findings by kind, then a sample of each: what an engineer reads in the Dagster UI."""
    lines = [
        f"**{flow.name}**: {result.matched:,} matched of {result.keys_seen:,} "
        f"({result.match_rate:.2%}); left {result.left_rows:,}, right {result.right_rows:,} rows.",
        "",
        "| kind | findings |",
        "|---|---:|",
        *(f"| {kind} | {n:,} |" for kind, n in result.findings.items()),
    ]
    for kind, sample in result.samples.items():
        lines += ["", f"**{kind}** (sample)", "", "| left key | right key | left | right | difference |",
                  "|---|---|---|---|---:|"]  # fmt: skip
        for row in sample:
            cells = [
                row["left_key"],
                row["right_key"],
                row["left_value"],
                row["right_value"],
                row["difference"],
            ]
            lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)


def _rules(flow: Flow) -> list[Threshold]:
    """One rule per finding kind: the flow's asset checks, for both their specs and their results."""
    return [flow.threshold(kind) for kind in dict.fromkeys(flow.kinds)]


def _check_results(flow: Flow, result: FlowResult, overrides: dict[str, float]) -> list[dg.AssetCheckResult]:
    checks = []
    for rule in _rules(flow):
        limit = overrides.get(rule.kind, rule.max_share)
        found = result.findings.get(rule.kind, 0)
        share = found / result.left_rows if result.left_rows else float(found > 0)
        checks.append(
            dg.AssetCheckResult(
                check_name=rule.kind,
                passed=found == 0 or share <= limit,
                severity=dg.AssetCheckSeverity[rule.severity],
                metadata={"findings": found, "share_of_left_rows": share, "max_share": limit},
            )
        )
    return checks


def _flow_asset(
    flow: Flow, deps: list[dg.AssetKey] | None = None, resolve=None, resource_keys=()
) -> dg.AssetsDefinition:
    """The asset of a flow. `resolve(context, warehouse)` returns the flow to run when its models
    depend on the warehouse's state (completeness); its declaration then gives the kinds and checks."""
    key = dg.AssetKey(["recon", flow.name])
    specs = [
        dg.AssetCheckSpec(
            rule.kind,
            asset=key,
            # An ERROR-level finding share stops what reads the flow downstream (a sync guarded by it).
            blocking=rule.severity == "ERROR",
            description=(
                f"{rule.kind} findings at most {rule.max_share:.2%} of the left rows "
                f"({rule.severity.lower()} otherwise)"
            ),
        )
        for rule in _rules(flow)
    ]

    @dg.asset(
        key=key,
        group_name="recon",
        deps=deps
        if deps is not None
        else [asset_key(table_key(schema, table)) for schema, table in flow.tables],
        check_specs=specs,
        kinds={"sql"},
        description=flow.description,
        pool=WAREHOUSE_POOL,
        required_resource_keys={"warehouse", *resource_keys},
    )
    def _reconcile(context: dg.AssetExecutionContext, config: ReconConfig):
        warehouse: Warehouse = context.resources.warehouse
        running = resolve(context, warehouse) if resolve else flow
        result = run_flow(warehouse, running, context.run.run_id)
        context.log.info(f"{flow.name}: {result.matched} matched, findings {result.findings}")
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.total_findings,
                "matched": result.matched,
                "match_rate": result.match_rate,
                "findings": dg.MetadataValue.json(result.findings),
                "amounts": dg.MetadataValue.json(result.amounts),
                "summary": dg.MetadataValue.md(_markdown(flow, result)),
            },
            check_results=_check_results(flow, result, config.max_share),
        )

    return _reconcile


COUNTED = {name: resource_key(name) for name, s in systems.registry().items() if s.count is not None}


def _count_then_compare(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Flow:
    """Ask every source for its row counts, append them to `recon.source_counts`, then compare."""
    clients = {name: getattr(context.resources, key).source_kwargs() for name, key in COUNTED.items()}
    completeness.record_counts(warehouse, completeness.count_sources(clients))
    return completeness_flows(warehouse)[0]


_RAW_DEPS = [dg.AssetKey(["raw", s, r]) for s, r in completeness.raw_keys()]
_source_flow, _canonical_flow = completeness_flows()
ASSETS: list = [
    *(_flow_asset(flow) for flow in FLOWS),
    _flow_asset(_source_flow, _RAW_DEPS, _count_then_compare, COUNTED.values()),
    _flow_asset(
        _canonical_flow,
        _RAW_DEPS + [asset_key(k) for k in upstream_keys(completeness.kept_sql())],
        lambda _context, warehouse: completeness_flows(warehouse)[1],
    ),
]
CHECKS: list = []
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
RESOURCES: dict = {"warehouse": warehouse_from_env(), **{key: client(name) for name, key in COUNTED.items()}}
