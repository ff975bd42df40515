"""The truth of a sandbox world: every planted discrepancy and look-alike by key, and expected counts.

Reconciliation and identity resolution are judged against it: each entry names the key a
finding must carry. `seed.py` writes it as `truth.json`; a tick keeps its counts current.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from canonical import MONEY_TOLERANCE
from hub_sandbox.world_plants import NON_FINDINGS, PLANTS
from hub_sandbox.world_systems import EUR_USD

if TYPE_CHECKING:
    from hub_sandbox.world import World


def record_truth(db: duckdb.DuckDBPyConnection, world: World) -> dict:
    """The record of every planted discrepancy, by kind and key, plus expected counts."""
    discrepancies = _discrepancies(db)
    counts, expected = _counts(world.tables, discrepancies)
    return {
        "seed": world.seed,
        "scale": world.scale,
        "anchor": world.anchor.strftime("%Y-%m-%d"),
        "money_tolerance_usd": MONEY_TOLERANCE,
        "fx_rates_to_usd": {"USD": 1.0, "EUR": EUR_USD},
        "kinds": {k: v[0] for k, v in PLANTS.items()},
        "non_finding_kinds": NON_FINDINGS,
        "discrepancies": discrepancies,
        "non_findings": _non_findings(db),
        "counts": counts,
        "expected": expected,
        "multi_invoice_orders": _keys(db, "invoice_duplicated"),
    }


def _keys(db: duckdb.DuckDBPyConnection, kind: str) -> list:
    return [r[0] for r in db.execute(f"SELECT k FROM pick_{kind} ORDER BY k").fetchall()]


def _discrepancies(db: duckdb.DuckDBPyConnection) -> dict[str, list[dict]]:
    """Per planted kind, the keys (as the finding names them) of every planted record."""

    keys = partial(_keys, db)
    return {
        "shop_order_missing_in_erp": [
            {"shop_order_id": 4600000000 + k} for k in keys("shop_order_missing_in_erp")
        ],
        "erp_order_missing_in_shop": [{"order_id": k} for k in keys("erp_order_missing_in_shop")],
        "shop_amount_mismatch": [{"order_id": k} for k in keys("shop_amount_mismatch")],
        "shop_status_mismatch": [{"order_id": k} for k in keys("shop_status_mismatch")],
        "invoice_missing": [{"order_id": k} for k in keys("invoice_missing")],
        "invoice_duplicated": [{"order_id": k} for k in keys("invoice_duplicated")],
        "invoice_amount_mismatch": [{"order_id": k} for k in keys("invoice_amount_mismatch")],
        "invoice_unpaid": [{"invoice_id": f"in_{k:010d}"} for k in keys("invoice_unpaid")],
        "invoice_partially_paid": [{"invoice_id": f"in_{k:010d}"} for k in keys("invoice_partially_paid")],
        "invoice_overpaid": [{"invoice_id": f"in_{k:010d}"} for k in keys("invoice_overpaid")],
        "payment_not_settled": [{"payment_id": f"py_{k:010d}"} for k in keys("payment_not_settled")],
        "crm_account_missing": [{"customer_id": k} for k in keys("crm_account_missing")],
        "crm_duplicate_account": [
            {"customer_id": k, "crm_account_id": f"001D{k:014d}"} for k in keys("crm_duplicate_account")
        ],
        "shop_customer_unmatched": [
            {"shop_customer_id": 7900000000 + k} for k in keys("shop_customer_unmatched")
        ],
    }


def _non_findings(db: duckdb.DuckDBPyConnection) -> dict[str, list[dict]]:
    """Per look-alike, the records that must not be reported.

    Dependent invoices: a duplicated invoice is paid in full, so it adds no payment finding.
    """

    keys = partial(_keys, db)
    return {
        "shop_amount_rounding": [{"order_id": k} for k in keys("shop_amount_rounding")],
        "invoice_amount_rounding": [{"order_id": k} for k in keys("invoice_amount_rounding")],
        "invoice_in_eur": [{"order_id": k} for k in keys("invoice_in_eur")],
        "crm_account_number_missing": [
            {"customer_id": k, "crm_account_id": f"001{k:015d}"} for k in keys("crm_account_number_missing")
        ],
        "shop_customer_email_differs": [
            {"customer_id": k, "shop_customer_id": 7000000000 + k}
            for k in keys("shop_customer_email_differs")
        ],
        "shared_phone_distinct_customers": [
            {"customer_id": r[0], "twin_customer_id": r[1]}
            for r in db.execute("SELECT * FROM phone_pairs ORDER BY 1").fetchall()
        ],
    }


def _counts(
    tables: dict[str, dict[str, pa.Table]], discrepancies: dict[str, list[dict]]
) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per `system.resource` as generated, and rows per canonical table the hub should end with."""
    counts = {
        f"{system}.{res}": tbl.num_rows
        for system, resources in tables.items()
        for res, tbl in resources.items()
    }
    counts["shop.order_line_items"] = sum(
        len(x) for x in tables["shop"]["orders"].column("line_items").to_pylist()
    )
    expected = {
        # ERP customers plus shop-only strangers: one canonical customer each.
        "canonical.customer": tables["erp"]["customers"].num_rows
        + len(discrepancies["shop_customer_unmatched"]),
        # ERP orders plus shop orders the ERP never received.
        "canonical.sales_order": tables["erp"]["sales_orders"].num_rows
        + len(discrepancies["shop_order_missing_in_erp"]),
        "canonical.product": tables["erp"]["products"].num_rows,
        "canonical.invoice": tables["billing"]["invoices"].num_rows,
        "canonical.payment": tables["billing"]["payments"].num_rows,
    }
    return counts, expected
