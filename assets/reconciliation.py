"""Reconciliation assets: one asset per flow in group `reconciliation`, key `["recon", flow]`.

The flows are declared here as data (models, join keys, compared columns, tolerances and
the finding kinds they raise); `integration_hub.reconciliation` compiles and runs them.
Finding kinds are the ones the sandbox plants (`PLANTS` in the world generator), so the
truth can be checked one-to-one. Keys are reported as each system's own identifier:
orders as the ERP `order_number` (`SO-…`), invoices `in_…`, payments `py_…`, customers as
the ERP customer id, CRM account `Id` and shop customer `id`.

Each flow carries asset checks, one per finding kind, that fail (or warn) when that kind's
findings exceed a share of the flow's left rows; `ReconConfig.max_share` overrides a
threshold per kind at launch time.
"""

import dagster as dg

from integration_hub.reconciliation import Compare, Flow, FlowResult, Threshold, run_flow
from integration_hub.sql_models import table_key
from resources.warehouse import Warehouse, warehouse_from_env

MONEY_TOLERANCE = 0.01  # USD, absolute: a rounding difference of one cent is a match

ERP_WEB_ORDERS = """
    SELECT order_id AS id, shop_order_id, total_amount, status
    FROM canonical.sales_order WHERE erp_order_id IS NOT NULL AND channel = 'web'"""
FULFILLED_ORDERS = """
    SELECT order_id AS id, order_id, total_amount AS amount_usd
    FROM canonical.sales_order WHERE erp_order_id IS NOT NULL AND status = 'fulfilled'"""
XREF = "SELECT source_id AS id, customer_id FROM canonical.customer_xref WHERE system = '{}'"

FLOWS = [
    Flow(
        name="shop_orders",
        entity="sales_order",
        description="Every web-shop order is in the ERP with the same total and status, and the reverse.",
        left=ERP_WEB_ORDERS,
        right="SELECT shop_order_id AS id, shop_order_id, total_amount, status FROM staging.shop__sales_order",
        on=("shop_order_id",),
        missing_right="erp_order_missing_in_shop",
        missing_left="shop_order_missing_in_erp",
        duplicate_right="shop_order_duplicated",
        compares=(
            Compare("total_amount", "shop_amount_mismatch", as_="money", abs_tol=MONEY_TOLERANCE),
            Compare("status", "shop_status_mismatch", as_="text"),
        ),
        thresholds=(
            Threshold("shop_order_missing_in_erp", 0.005, "ERROR"),
            Threshold("erp_order_missing_in_shop", 0.005, "ERROR"),
        ),
    ),
    Flow(
        name="order_invoices",
        entity="invoice",
        description="Every fulfilled ERP order is invoiced exactly once, for its total.",
        left=FULFILLED_ORDERS,
        right="SELECT invoice_id AS id, order_id, amount_usd FROM canonical.invoice",
        on=("order_id",),
        missing_right="invoice_missing",
        missing_left="invoice_without_order",
        duplicate_right="invoice_duplicated",
        compares=(Compare("amount_usd", "invoice_amount_mismatch", as_="money", abs_tol=MONEY_TOLERANCE),),
        thresholds=(
            Threshold("invoice_missing", 0.005, "ERROR"),
            Threshold("invoice_duplicated", 0.005, "ERROR"),
        ),
    ),
    Flow(
        name="invoice_payments",
        entity="payment",
        description="Every invoice is paid in full: not unpaid, not partially paid, not over-paid.",
        left="SELECT invoice_id AS id, invoice_id, amount_usd FROM canonical.invoice",
        right="""
            SELECT invoice_id AS id, invoice_id, sum(amount_usd) AS amount_usd, count(*) AS payments
            FROM canonical.payment GROUP BY invoice_id""",
        on=("invoice_id",),
        missing_right="invoice_unpaid",
        missing_left="payment_without_invoice",
        compares=(
            Compare(
                "amount_usd",
                "invoice_partially_paid",
                as_="money",
                abs_tol=MONEY_TOLERANCE,
                kind_over="invoice_overpaid",
            ),
        ),  # fmt: skip
        amounts={"paid_usd": "amount_usd"},
    ),
    Flow(
        name="payment_settlements",
        entity="payment",
        description="Every payment appears once in a settlement file for its gross amount; fees are reported.",
        left="SELECT payment_id AS id, payment_id, currency, amount FROM canonical.payment",
        # Settlement lines have no canonical entity: read as landed, amounts cast from the file's text.
        right="""
            SELECT s.payment_id AS id, s.payment_id, upper(s.currency) AS currency,
                   CAST(s.gross_amount AS DECIMAL(18, 2)) AS amount, CAST(s.fee_amount AS DECIMAL(18, 2)) AS fee_amount,
                   CAST(fx.rate_to_usd AS DECIMAL(12, 6)) AS fx_rate
            FROM raw_payments.settlement AS s LEFT JOIN seeds.fx_rates AS fx ON fx.currency = upper(s.currency)""",
        on=("payment_id",),
        missing_right="payment_not_settled",
        missing_left="settlement_without_payment",
        duplicate_right="settlement_duplicated",
        compares=(
            Compare("amount", "settlement_amount_mismatch", as_="money", abs_tol=MONEY_TOLERANCE),
            Compare("currency", "settlement_currency_mismatch", as_="text"),
        ),
        amounts={"fees_usd": "fee_amount * fx_rate", "gross_usd": "amount * fx_rate"},
    ),
    Flow(
        name="crm_customers",
        entity="customer",
        description="Every ERP customer has exactly one CRM account, and every CRM account is a known customer.",
        left=XREF.format("erp"),
        right=XREF.format("crm"),
        on=("customer_id",),
        missing_right="crm_account_missing",
        missing_left="crm_account_unmatched",
        duplicate_right="crm_duplicate_account",
    ),
    Flow(
        name="shop_customers",
        entity="customer",
        description="Every shop customer is an ERP customer (identity resolved through customer_xref).",
        left=XREF.format("shop"),
        right=XREF.format("erp"),
        on=("customer_id",),
        missing_right="shop_customer_unmatched",
        duplicate_left="shop_duplicate_customer",
    ),
]


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


def _check_results(flow: Flow, result: FlowResult, overrides: dict[str, float]) -> list[dg.AssetCheckResult]:
    checks = []
    for kind in dict.fromkeys(flow.kinds):
        rule = flow.threshold(kind)
        limit = overrides.get(kind, rule.max_share)
        found = result.findings.get(kind, 0)
        share = found / result.left_rows if result.left_rows else float(found > 0)
        checks.append(
            dg.AssetCheckResult(
                check_name=kind,
                passed=found == 0 or share <= limit,
                severity=dg.AssetCheckSeverity.ERROR
                if rule.severity == "ERROR"
                else dg.AssetCheckSeverity.WARN,
                metadata={"findings": found, "share_of_left_rows": share, "max_share": limit},
            )
        )
    return checks


def _flow_asset(flow: Flow) -> dg.AssetsDefinition:
    key = dg.AssetKey(["recon", flow.name])
    specs = [
        dg.AssetCheckSpec(
            kind,
            asset=key,
            description=(
                f"{kind} findings at most {flow.threshold(kind).max_share:.2%} of the left rows "
                f"({flow.threshold(kind).severity.lower()} otherwise)"
            ),
        )
        for kind in dict.fromkeys(flow.kinds)
    ]

    @dg.asset(
        key=key,
        group_name="reconciliation",
        deps=[table_key(schema, table) for schema, table in flow.tables],
        check_specs=specs,
        kinds={"sql"},
        description=flow.description,
        pool="warehouse",
    )
    def _reconcile(context: dg.AssetExecutionContext, config: ReconConfig, warehouse: Warehouse):
        result = run_flow(warehouse, flow, context.run.run_id)
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


ASSETS: list = [_flow_asset(flow) for flow in FLOWS]
CHECKS: list = []
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
RESOURCES: dict = {"warehouse": warehouse_from_env()}
