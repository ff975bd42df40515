"""Reconciliation assets: one asset per flow in group `reconciliation`, key `["recon", flow]`.

The flows are declared here as data (models, join keys, compared columns, tolerances and
the finding kinds they raise); `integration_hub.reconciliation` compiles and runs them.
Finding kinds are the ones the sandbox plants (`PLANTS` in the world generator), so the
truth can be checked one-to-one. Keys are reported as each system's own identifier:
orders as the ERP `order_number` (`SO-…`), invoices `in_…`, payments `py_…`, customers as
the ERP customer id, CRM account `Id` and shop customer `id`.

Two completeness flows check that nothing was lost on the way: `source_completeness` asks
every source how many rows it holds (appended to `recon.source_counts`) and compares that
with raw plus the rows quarantined at load; `canonical_completeness` compares raw with
canonical plus the rows the canonical validation quarantined. Their models are written at
run time for the raw and quarantine tables that exist.

Each flow carries asset checks, one per finding kind, that fail (or warn) when that kind's
findings exceed a share of the flow's left rows; `ReconConfig.max_share` overrides a
threshold per kind at launch time.
"""

import contextlib
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa

from integration_hub.audit import now as audit_now
from integration_hub.reconciliation import Compare, Flow, FlowResult, Threshold, run_flow
from integration_hub.sql_models import table_key
from resources.warehouse import Warehouse, warehouse_from_env

if TYPE_CHECKING:  # imported where sources are counted: not at every load of the code location
    import httpx

MONEY_TOLERANCE = 0.01  # USD, absolute: a rounding difference of one cent is a match

ERP_WEB_ORDERS = """
    SELECT order_id AS id, shop_order_id, total_amount, status
    FROM canonical.sales_order WHERE erp_order_id IS NOT NULL AND channel = 'web'"""
FULFILLED_ORDERS = """
    SELECT order_id AS id, order_id, total_amount AS amount_usd
    FROM canonical.sales_order WHERE erp_order_id IS NOT NULL AND status = 'fulfilled'"""
XREF = "SELECT source_id AS id, customer_id FROM canonical.customer_xref WHERE system = '{}'"

# The checks of every flow, declared once. Each finding kind is an asset check on its flow's
# asset; the keyed kinds (a key on one side only, or repeated) are named here per flow and role,
# compared columns name theirs in `Compare`. A kind warns on any finding unless listed in
# `STOPS`: those fail the check as an ERROR above `STOP_SHARE` of the left rows.
KEYED_FINDINGS = {
    "shop_orders": {"missing_right": "erp_order_missing_in_shop", "missing_left": "shop_order_missing_in_erp",
                    "duplicate_right": "shop_order_duplicated"},
    "order_invoices": {"missing_right": "invoice_missing", "missing_left": "invoice_without_order",
                       "duplicate_right": "invoice_duplicated"},
    "invoice_payments": {"missing_right": "invoice_unpaid", "missing_left": "payment_without_invoice"},
    "payment_settlements": {"missing_right": "payment_not_settled", "missing_left": "settlement_without_payment",
                            "duplicate_right": "settlement_duplicated"},
    "crm_customers": {"missing_right": "crm_account_missing", "missing_left": "crm_account_unmatched",
                      "duplicate_right": "crm_duplicate_account"},
    "shop_customers": {"missing_right": "shop_customer_unmatched", "duplicate_left": "shop_duplicate_customer"},
    "source_completeness": {"missing_right": "resource_not_loaded"},
}  # fmt: skip
STOP_SHARE = 0.005
STOPS = {"shop_order_missing_in_erp", "erp_order_missing_in_shop", "invoice_missing", "invoice_duplicated"}


def _flow(name: str, **declared) -> Flow:
    """A flow with its keyed finding kinds and thresholds from the declarations above."""
    keyed = KEYED_FINDINGS.get(name, {})
    stops = tuple(Threshold(kind, STOP_SHARE, "ERROR") for kind in keyed.values() if kind in STOPS)
    return Flow(name=name, **keyed, **declared, thresholds=stops)


def _identity_flow(name: str, left: str, right: str, description: str) -> Flow:
    """Customers of one system against another's, joined on the resolved customer id."""
    return _flow(
        name,
        entity="customer",
        description=description,
        left=XREF.format(left),
        right=XREF.format(right),
        on=("customer_id",),
    )


FLOWS = [
    _flow(
        "shop_orders",
        entity="sales_order",
        description="Every web-shop order is in the ERP with the same total and status, and the reverse.",
        left=ERP_WEB_ORDERS,
        right="SELECT shop_order_id AS id, shop_order_id, total_amount, status FROM staging.shop__sales_order",
        on=("shop_order_id",),
        compares=(
            Compare("total_amount", "shop_amount_mismatch", as_="money", abs_tol=MONEY_TOLERANCE),
            Compare("status", "shop_status_mismatch", as_="text"),
        ),
    ),
    _flow(
        "order_invoices",
        entity="invoice",
        description="Every fulfilled ERP order is invoiced exactly once, for its total.",
        left=FULFILLED_ORDERS,
        right="SELECT invoice_id AS id, order_id, amount_usd FROM canonical.invoice",
        on=("order_id",),
        compares=(Compare("amount_usd", "invoice_amount_mismatch", as_="money", abs_tol=MONEY_TOLERANCE),),
    ),
    _flow(
        "invoice_payments",
        entity="payment",
        description="Every invoice is paid in full: not unpaid, not partially paid, not over-paid.",
        left="SELECT invoice_id AS id, invoice_id, amount_usd FROM canonical.invoice",
        right="""
            SELECT invoice_id AS id, invoice_id, sum(amount_usd) AS amount_usd, count(*) AS payments
            FROM canonical.payment GROUP BY invoice_id""",
        on=("invoice_id",),
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
    _flow(
        "payment_settlements",
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
        compares=(
            Compare("amount", "settlement_amount_mismatch", as_="money", abs_tol=MONEY_TOLERANCE),
            Compare("currency", "settlement_currency_mismatch", as_="text"),
        ),
        amounts={"fees_usd": "fee_amount * fx_rate", "gross_usd": "amount * fx_rate"},
    ),
    _identity_flow(
        "crm_customers", "erp", "crm",
        "Every ERP customer has exactly one CRM account, and every CRM account is a known customer.",
    ),
    _identity_flow(
        "shop_customers", "shop", "erp",
        "Every shop customer is an ERP customer (identity resolved through customer_xref).",
    ),
]  # fmt: skip


# ---- Completeness: what each source reports vs raw vs canonical --------------------------------
# (system, resource) -> SQL of its record key in raw_<system>.<resource>.
RAW_KEYS = {
    ("erp", "customers"): "customer_id", ("erp", "products"): "product_id", ("erp", "sales_orders"): "order_id",
    ("erp", "sales_order_lines"): "CAST(order_id AS VARCHAR) || ':' || CAST(line_number AS VARCHAR)",
    ("crm", "accounts"): "id", ("crm", "contacts"): "id", ("shop", "orders"): "id", ("shop", "customers"): "id",
    ("billing", "invoices"): "id", ("billing", "payments"): "id",
    ("payments", "settlement"): "file_name || ':' || payment_id",
}  # fmt: skip
# (system, resource) -> (canonical entity whose quarantine holds its rejects, SQL counting its canonical rows).
# Customer records are counted in the xref: identity resolution keeps every record, merged or not.
CANONICAL_ROWS = {
    ("erp", "customers"): (None, "SELECT count(*) FROM canonical.customer_xref WHERE system = 'erp'"),
    ("crm", "accounts"): (None, "SELECT count(*) FROM canonical.customer_xref WHERE system = 'crm'"),
    ("shop", "customers"): (None, "SELECT count(*) FROM canonical.customer_xref WHERE system = 'shop'"),
    ("erp", "products"): ("product", "SELECT count(*) FROM canonical.product"),
    ("erp", "sales_orders"): ("sales_order", "SELECT count(*) FROM canonical.sales_order WHERE erp_order_id IS NOT NULL"),
    ("shop", "orders"): ("sales_order", "SELECT count(*) FROM canonical.sales_order "
                                        "WHERE shop_order_id IN (SELECT id FROM raw_shop.orders)"),
    ("billing", "invoices"): ("invoice", "SELECT count(*) FROM canonical.invoice"),
    ("billing", "payments"): ("payment", "SELECT count(*) FROM canonical.payment"),
}  # fmt: skip
SOURCE_COUNTS = pa.schema([("counted_at", pa.timestamp("us")), ("system", pa.string()),
                           ("resource", pa.string()), ("rows", pa.int64())])  # fmt: skip


def _count_crm(http: "httpx.Client", crm: dict) -> dict[str, int]:
    token = http.post(f"{crm['base_url']}/oauth/token", data={
        "grant_type": "client_credentials", "client_id": crm["client_id"], "client_secret": crm["client_secret"],
    })  # fmt: skip
    auth = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
    return {
        r: http.get(f"{crm['base_url']}/services/data/v1/{r}", params={"limit": 1}, headers=auth)
        .raise_for_status().json()["total_size"]
        for r in ("accounts", "contacts")
    }  # fmt: skip


def _count_shop(http: "httpx.Client", shop: dict) -> dict[str, int]:
    auth = {"X-Shopify-Access-Token": shop["api_key"]}
    return {
        r: http.get(f"{shop['base_url']}/admin/api/2025-01/{r}/count.json", headers=auth)
        .raise_for_status()
        .json()["count"]
        for r in ("orders", "customers")
    }


def _count_billing(http: "httpx.Client", billing: dict) -> dict[str, int]:
    auth = {"Authorization": f"Bearer {billing['api_key']}"}
    return {
        r: http.get(f"{billing['base_url']}/v1/{r}", params={"limit": 1}, headers=auth)
        .raise_for_status()
        .json()["total"]
        for r in ("invoices", "payments")
    }


def _count_erp(url: str) -> dict[str, int]:
    tables = ("customers", "products", "sales_orders", "sales_order_lines")
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as con:
        return {t: con.execute(f"SELECT count(*) FROM erp.{t}").fetchone()[0] for t in tables}


def count_sources(clients: dict[str, dict]) -> dict[tuple[str, str], int]:
    """Rows each source reports now, asked the way each reports it: the CRM's `total_size`, the
    shop's count endpoints, billing's `total`, the ERP's `count(*)` and the settlement files' lines.
    `clients` maps a system to its client's `source_kwargs()` (URL and credentials)."""
    import httpx

    counts: dict[tuple[str, str], int] = {}
    with httpx.Client(timeout=30) as http:
        for system, count in (("crm", _count_crm), ("shop", _count_shop), ("billing", _count_billing)):
            try:
                counts |= {(system, r): n for r, n in count(http, clients[system]).items()}
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                raise RuntimeError(
                    f"could not count {system}'s rows at {clients[system]['base_url']}: {exc!r}. "
                    "Source completeness asks every source; retry when it answers."
                ) from exc
    counts |= {("erp", t): n for t, n in _count_erp(clients["erp"]["url"]).items()}
    files = sorted(Path(clients["payments"]["folder"]).glob("*.csv"))
    counts[("payments", "settlement")] = sum(sum(1 for _ in f.open()) - 1 for f in files)
    return counts


def _quarantined(warehouse: Warehouse | None, table: str | None, latest_run: bool = False) -> str:
    """SQL counting distinct rejected records of a quarantine table (0 when nothing was ever rejected)."""
    if warehouse is None or table is None or not warehouse.table_exists("quarantine", table):
        return "0"
    only = (f" WHERE run_id = (SELECT run_id FROM quarantine.{table} ORDER BY quarantined_at DESC LIMIT 1)"
            if latest_run else "")  # fmt: skip
    return f"(SELECT count(DISTINCT source_key) FROM quarantine.{table}{only})"


def completeness_flows(warehouse: Warehouse | None = None) -> list[Flow]:
    """The two completeness flows, their models written for the raw and quarantine tables present now
    (without a warehouse: as declared, for the asset definitions)."""
    present = {k for k in RAW_KEYS if warehouse is None or warehouse.table_exists(f"raw_{k[0]}", k[1])}
    raw = (
        " UNION ALL ".join(
            f"SELECT '{s}.{r}' AS id, '{s}.{r}' AS resource, (SELECT count(DISTINCT {RAW_KEYS[(s, r)]}) FROM raw_{s}.{r}) "
            f"+ {_quarantined(warehouse, f'{s}__{r}')} AS landed, (SELECT count(DISTINCT {RAW_KEYS[(s, r)]}) "
            f"FROM raw_{s}.{r}) AS rows FROM (SELECT 1) one"
            for s, r in sorted(present)
        )
        or "SELECT '' AS id, '' AS resource, 0 AS landed, 0 AS rows WHERE FALSE"
    )
    kept = (
        " UNION ALL ".join(
            f"SELECT '{s}.{r}' AS id, '{s}.{r}' AS resource, ({sql}) + "
            f"{_quarantined(warehouse, entity and f'canonical_{entity}', latest_run=True)} AS rows FROM (SELECT 1) one"
            for (s, r), (entity, sql) in sorted(CANONICAL_ROWS.items())
            if (s, r) in present
        )
        or "SELECT '' AS id, '' AS resource, 0 AS rows WHERE FALSE"
    )
    return [
        _flow(
            "source_completeness",
            entity="row_count",
            description="Rows each source reports vs rows landed in raw (plus rows quarantined on the way).",
            left="""
                SELECT system || '.' || resource AS id, system || '.' || resource AS resource, rows AS landed
                FROM recon.source_counts WHERE counted_at = (SELECT max(counted_at) FROM recon.source_counts)""",
            right=f"SELECT id, resource, landed FROM ({raw}) w",
            on=("resource",),
            compares=(Compare("landed", "rows_missing_in_raw", as_="number", kind_over="rows_extra_in_raw"),),
        ),
        _flow(
            "canonical_completeness",
            entity="row_count",
            description="Rows in raw vs rows in canonical (plus rows the canonical validation quarantined).",
            left=f"SELECT id, resource, rows FROM ({raw}) w",
            right=kept,
            on=("resource",),
            compares=(
                Compare(
                    "rows", "rows_missing_in_canonical", as_="number", kind_over="rows_extra_in_canonical"
                ),
            ),
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
            description=(
                f"{rule.kind} findings at most {rule.max_share:.2%} of the left rows "
                f"({rule.severity.lower()} otherwise)"
            ),
        )
        for rule in _rules(flow)
    ]

    @dg.asset(
        key=key,
        group_name="reconciliation",
        deps=deps if deps is not None else [table_key(schema, table) for schema, table in flow.tables],
        check_specs=specs,
        kinds={"sql"},
        description=flow.description,
        pool="warehouse",
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


SOURCE_CLIENTS = {system: f"{system}_client" for system in ("erp", "crm", "shop", "billing", "payments")}


def _count_then_compare(context: dg.AssetExecutionContext, warehouse: Warehouse) -> Flow:
    """Ask every source for its row counts, append them to `recon.source_counts`, then compare."""
    clients = {
        system: getattr(context.resources, key).source_kwargs() for system, key in SOURCE_CLIENTS.items()
    }
    at = audit_now()
    rows = [
        {"counted_at": at, "system": s, "resource": r, "rows": n}
        for (s, r), n in count_sources(clients).items()
    ]
    warehouse.write_arrow("recon", "source_counts", pa.Table.from_pylist(rows, schema=SOURCE_COUNTS))
    return completeness_flows(warehouse)[0]


_RAW_DEPS = [dg.AssetKey(["raw", s, r]) for s, r in RAW_KEYS]
_source_flow, _canonical_flow = completeness_flows()
ASSETS: list = [
    *(_flow_asset(flow) for flow in FLOWS),
    _flow_asset(_source_flow, _RAW_DEPS, _count_then_compare, SOURCE_CLIENTS.values()),
    _flow_asset(
        _canonical_flow,
        _RAW_DEPS
        + [
            dg.AssetKey(["canonical", e])
            for e in ("customer_xref", "product", "sales_order", "invoice", "payment")
        ],
        lambda _context, warehouse: completeness_flows(warehouse)[1],
    ),
]
CHECKS: list = []
JOBS: list = []
SCHEDULES: list = []
SENSORS: list = []
RESOURCES: dict = {"warehouse": warehouse_from_env()}
