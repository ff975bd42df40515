"""Reconciliation assets: one asset per flow (`assets.recon_flows`) in group `recon`, key `["recon", flow]`,
and `["recon", "report"]`, the HTML report of them all, written to `$HUB_HOME/reports/`.

Each flow carries asset checks, one per finding kind (the policy is declared in
`assets.recon_flows`): any finding fails its kind's check as a WARN; a kind that stops syncs is an
ERROR, which holds back what reads the flow, once its findings exceed `max_share` of the flow's
left rows. `ReconConfig.max_share` overrides that share per kind at launch time.
`source_completeness` first asks every system that can count its records (its descriptor's
`count`) and appends the answers to `recon.source_counts`.

What an engineer reads on a flow's page without opening anything: the match rate in percent,
the matched and compared counts, one entry per finding kind, and links to the report (its file
and its asset page, at `HUB_UI_URL`); the markdown summary adds a sample of each kind.
"""

from dataclasses import dataclass

import dagster as dg

from assets.metadata import asset_key
from assets.recon_flows import FLOWS, completeness_flows
from integration_hub import settings, systems
from integration_hub.engine import completeness
from integration_hub.engine.recon_engine import Flow, FlowResult, Threshold, run_flow
from integration_hub.engine.recon_report import REPORT_FILE, write_html
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


@dataclass(frozen=True)
class Verdict:
    """One finding kind of one flow run, judged by the policy of `assets.recon_flows`."""

    flow: str
    kind: str
    findings: int
    share: float  # of the flow's left rows
    max_share: float | None  # above it an ERROR (kinds that stop syncs only)

    @property
    def passed(self) -> bool:
        return self.findings == 0

    @property
    def severity(self) -> str:
        return "ERROR" if self.max_share is not None and self.share > self.max_share else "WARN"


def verdicts(
    flow: Flow, findings: dict[str, int], left_rows: int, overrides: dict[str, float] | None = None
) -> list[Verdict]:
    """Every finding kind of `flow` judged: what the asset checks say, and `hub recon report --fail-on`."""
    out = []
    for rule in _rules(flow):
        found = findings.get(rule.kind, 0)
        share = found / left_rows if left_rows else float(found > 0)
        limit = (overrides or {}).get(rule.kind, rule.max_share) if rule.severity == "ERROR" else None
        out.append(Verdict(flow.name, rule.kind, found, share, limit))
    return out


def declared_flows() -> dict[str, Flow]:
    """Every flow by name, as declared (the completeness flows' models unwritten)."""
    return {f.name: f for f in [*FLOWS, *completeness_flows()]}


def _check_results(flow: Flow, result: FlowResult, overrides: dict[str, float]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=v.kind,
            passed=v.passed,
            severity=dg.AssetCheckSeverity[v.severity],
            metadata={
                "findings": v.findings,
                "share_of_left_rows_pct": dg.MetadataValue.float(round(v.share * 100, 2)),
                **({"max_share": v.max_share} if v.max_share is not None else {}),
            },
        )
        for v in verdicts(flow, result.findings, result.left_rows, overrides)
    ]


def _check_description(rule: Threshold) -> str:
    if rule.severity == "ERROR":
        return (
            f"Any {rule.kind} finding warns; above {rule.max_share:.2%} of the left rows it is an error "
            "that holds back what reads this flow."
        )
    return f"Any {rule.kind} finding warns."


REPORT_KEY = dg.AssetKey(["recon", "report"])


def report_path():
    return settings.reports_dir() / REPORT_FILE


def report_links() -> dict[str, dg.MetadataValue]:
    """Where the reconciliation report is: its file, and its asset's page in the Dagster UI."""
    return {
        "report": dg.MetadataValue.path(str(report_path())),
        "report_asset": dg.MetadataValue.url(settings.ui_link(f"assets/{REPORT_KEY.to_user_string()}")),
    }


def _figures(result: FlowResult) -> dict[str, dg.MetadataValue]:
    """The flow's key figures as separate entries, each shown on the asset page as it is."""
    return {
        "match_rate_pct": dg.MetadataValue.float(round(result.match_rate * 100, 2)),
        "matched": dg.MetadataValue.int(result.matched),
        "compared": dg.MetadataValue.int(result.keys_seen),
        "left_rows": dg.MetadataValue.int(result.left_rows),
        "right_rows": dg.MetadataValue.int(result.right_rows),
        **{f"findings/{kind}": dg.MetadataValue.int(n) for kind, n in result.findings.items()},
    }


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
            description=_check_description(rule),
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
        checks = _check_results(flow, result, config.max_share)
        if any(not c.passed and c.severity == dg.AssetCheckSeverity.ERROR for c in checks):
            # The error stops this run before `recon/report`: the report linked below shows it anyway.
            write_html(warehouse, report_path())
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.total_findings,
                **_figures(result),
                **report_links(),
                "findings": dg.MetadataValue.json(result.findings),
                "amounts": dg.MetadataValue.json(result.amounts),
                "summary": dg.MetadataValue.md(_markdown(flow, result)),
            },
            check_results=checks,
        )

    return _reconcile


def _report_asset(flows: list[dg.AssetKey]) -> dg.AssetsDefinition:
    @dg.asset(
        key=REPORT_KEY,
        group_name="recon",
        deps=flows,
        kinds={"html"},
        description=(
            "The reconciliation report: every flow's latest match rate and findings, their trend and "
            "samples, as one self-contained HTML page in $HUB_HOME/reports/ (`hub recon report --html` "
            "writes the same)."
        ),
        pool=WAREHOUSE_POOL,
        required_resource_keys={"warehouse"},
    )
    def report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        path = report_path()
        data = write_html(context.resources.warehouse, path)
        flows_now = data["flows"].values()
        context.log.info(f"reconciliation report of {len(data['flows'])} flow(s) written to {path}")
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.path(str(path)),
                "report_file_url": dg.MetadataValue.url(path.as_uri()),
                "flows": dg.MetadataValue.int(len(data["flows"])),
                "lowest_match_rate_pct": dg.MetadataValue.float(
                    round(min((f["match_rate"] for f in flows_now), default=1.0) * 100, 2)
                ),
                "findings": dg.MetadataValue.int(sum(sum(f["findings"].values()) for f in flows_now)),
            }
        )

    return report


COUNTED = {name: resource_key(name) for name, s in systems.registry().items() if s.count is not None}


def _count_then_compare(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Flow:
    """Ask every source for its row counts, append them to `recon.source_counts`, then compare."""
    clients = {name: getattr(context.resources, key).source_kwargs() for name, key in COUNTED.items()}
    completeness.record_counts(warehouse, completeness.count_sources(clients))
    return completeness_flows(warehouse)[0]


_RAW_DEPS = [dg.AssetKey(["raw", s, r]) for s, r in completeness.raw_keys()]
_source_flow, _canonical_flow = completeness_flows()
_FLOW_ASSETS = [
    *(_flow_asset(flow) for flow in FLOWS),
    _flow_asset(_source_flow, _RAW_DEPS, _count_then_compare, COUNTED.values()),
    _flow_asset(
        _canonical_flow,
        _RAW_DEPS + [asset_key(k) for k in upstream_keys(completeness.kept_sql())],
        lambda _context, warehouse: completeness_flows(warehouse)[1],
    ),
]
ASSETS: list = [*_FLOW_ASSETS, _report_asset([a.key for a in _FLOW_ASSETS])]
CHECKS: list = []
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
RESOURCES: dict = {"warehouse": warehouse_from_env(), **{key: client(name) for name, key in COUNTED.items()}}
