"""Reconciliation flows, declared as data: what is compared with what, and which findings stop a run.

Each flow names its two sides (SQL or a table), join keys, compared columns with tolerances,
and the finding kinds it raises; `integration_hub.engine.recon_engine` compiles and runs them,
`assets.reconciliation` makes one asset per flow. Finding kinds are the ones the sandbox plants
(`PLANTS` in the world generator), so the truth can be checked one-to-one. Keys are reported
as each system's own identifier: orders as the ERP `order_number` (`SO-…`), invoices `in_…`,
payments `py_…`, customers as the ERP customer id, CRM account `Id` and shop customer `id`.

Two completeness flows check that nothing was lost on the way: `source_completeness` asks
every source how many rows it holds (appended to `recon.source_counts`) and compares that
with raw plus the rows quarantined at load; `canonical_completeness` compares raw with
canonical plus the rows the canonical validation quarantined. Their models are written at
run time, for the systems in the registry and the raw and quarantine tables that exist.
"""

from canonical import MONEY_TOLERANCE
from integration_hub.engine import completeness
from integration_hub.engine.recon_engine import Compare, Flow, Grace, Threshold
from integration_hub.warehouse import Warehouse

ERP_WEB_ORDERS = """
    SELECT erp_order_number AS id, shop_order_id, total_amount, status
    FROM canonical.sales_order o WHERE erp_order_id IS NOT NULL AND channel = 'web' AND NOT is_deleted
      AND NOT EXISTS (SELECT 1 FROM staging.shop__sales_order s WHERE s.is_deleted AND s.shop_order_id = o.shop_order_id)"""
SHOP_ORDERS = """
    SELECT shop_order_id AS id, shop_order_id, total_amount, status, updated_at FROM staging.shop__sales_order s
    WHERE NOT is_deleted
      AND NOT EXISTS (SELECT 1 FROM canonical.sales_order o WHERE o.is_deleted AND o.shop_order_id = s.shop_order_id)"""
FULFILLED_ORDERS = """
    SELECT erp_order_number AS id, order_id, total_amount AS amount_usd
    FROM canonical.sales_order WHERE erp_order_id IS NOT NULL AND status = 'fulfilled' AND NOT is_deleted"""
# Orders deleted at their source are kept in canonical as tombstones, never called missing: an
# order deleted in either system is compared in neither (the other may not have loaded the
# deletion yet, as the ERP's nightly export has not when the shop reports one).
# The ERP loads its nightly export: a shop order changed since that export began cannot be in
# the ERP's data yet, so it is not called missing there before the next export.
ERP_CADENCE_GRACE = Grace("right", "updated_at", "erp")
XREF = "SELECT source_id AS id, customer_id FROM canonical.customer_xref WHERE system = '{}'"

# The checks of every flow, declared once. Each finding kind is an asset check on its flow's
# asset; the keyed kinds (a key on one side only, or repeated) are named here per flow and role,
# compared columns name theirs in `Compare`. One policy for every kind:
# - any finding fails its kind's check, as a WARN: it shows, alerts, and stops nothing;
# - the kinds in `STOPS` (an order or invoice missing or doubled: a sync would act on a wrong
#   set of records) fail as an ERROR once their findings exceed `STOP_SHARE` of the flow's left
#   rows; an ERROR holds back what reads the flow (the syncs) until someone looks.
# A difference of value (amount, status, currency) or of identity never stops a run: the record
# is there, and the sync carries the canonical value.
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
        right=SHOP_ORDERS,
        on=("shop_order_id",),
        grace=ERP_CADENCE_GRACE,
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
        # Stripe's payout report lines have no canonical entity: read as landed, amounts cast from the
        # file's text (major units); the payment id is the PaymentIntent's `payment_metadata[payment_id]`.
        right="""
            SELECT s.payment_metadata_payment_id AS id, s.payment_metadata_payment_id AS payment_id,
                   upper(s.currency) AS currency,
                   CAST(s.gross AS DECIMAL(18, 2)) AS amount, CAST(s.fee AS DECIMAL(18, 2)) AS fee_amount,
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


def completeness_flows(warehouse: Warehouse | None = None) -> list[Flow]:
    """The two completeness flows, their models written for the raw and quarantine tables present now
    (without a warehouse: as declared, for the asset definitions)."""
    landed = completeness.landed_sql(warehouse)
    return [
        _flow(
            "source_completeness",
            entity="row_count",
            description="Rows each source reports vs rows landed in raw (plus rows quarantined on the way).",
            left=completeness.LATEST_COUNTS,
            right=f"SELECT id, resource, landed FROM ({landed}) w",
            on=("resource",),
            compares=(Compare("landed", "rows_missing_in_raw", as_="number", kind_over="rows_extra_in_raw"),),
        ),
        _flow(
            "canonical_completeness",
            entity="row_count",
            description="Rows in raw vs rows in canonical (plus rows the canonical validation quarantined).",
            left=f"SELECT id, resource, rows FROM ({landed}) w",
            right=completeness.kept_sql(warehouse),
            on=("resource",),
            compares=(
                Compare(
                    "rows", "rows_missing_in_canonical", as_="number", kind_over="rows_extra_in_canonical"
                ),
            ),
        ),
    ]
