"""Benchmark: reconcile TPC-H ERP orders against billing invoices, the hub's engine vs datacompy.

The left side is TPC-H `orders` at a scale factor (1.5M rows at SF1) as ERP orders; the
right side is generated here from it as billing invoices with a known set of planted
differences: missing invoices, duplicated invoices, amounts off by $1 or more (mismatches)
and amounts off by exactly the one-cent tolerance (matches). Both tools read the same
Parquet files and must report exactly the same findings; each runs in its own subprocess,
so its wall time and peak RSS are its own.

- hub: the Parquet files are loaded into a DuckDB warehouse file (timed as "load"), then
  `run_flow` reconciles them in SQL and writes findings and summary (timed as "reconcile").
- datacompy: `pandas.read_parquet` (timed as "load"), then `datacompy.Compare` with
  `join_columns=["order_id"]` and `abs_tol` one cent, and the findings read from
  `df1_unq_rows`, `df2_unq_rows` and `all_mismatch()` (timed as "reconcile"). Amounts are
  given to it as integer cents so its float comparison at the tolerance is exact.

    .venv/bin/python bench/bench_recon.py [--scale 1] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_MILLE = 2  # share of orders planted per kind, in thousandths


def generate(scale: float, work: Path) -> dict:
    """TPC-H orders → orders.parquet (left) and invoices.parquet (right); returns planted counts."""
    import duckdb

    tpch = work / f"tpch_sf{scale:g}"
    if not (tpch / "orders.parquet").exists():
        tpch.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).with_name("tpchgen-cli")
        subprocess.run(
            [str(exe), "parquet", "-s", f"{scale:g}", "--tables", "orders", "-o", str(tpch)],
            check=True,
            capture_output=True,
        )
    db = duckdb.connect()
    db.execute(f"""
        -- Each order falls in one of 1000 buckets by hash; each kind takes its own buckets.
        CREATE MACRO pick(kind, k) AS hash('bench:' || k) % 1000 // {PER_MILLE}
            = list_position(['missing', 'duplicated', 'mismatch', 'rounding'], kind) - 1;
        CREATE TABLE orders AS
        SELECT 'SO-' || lpad(o_orderkey::VARCHAR, 10, '0') AS id, 'SO-' || lpad(o_orderkey::VARCHAR, 10, '0') AS order_id,
               o_totalprice::DECIMAL(18, 2) AS amount, o_orderkey AS k
        FROM '{tpch}/orders.parquet';
        CREATE TABLE invoices AS
        WITH base AS (
            SELECT 'in_' || lpad(k::VARCHAR, 10, '0') AS id, order_id, k,
                   CASE WHEN pick('mismatch', k) THEN amount + 1 + k % 90
                        WHEN pick('rounding', k) THEN amount - 0.01 ELSE amount END AS amount
            FROM orders WHERE NOT pick('missing', k))
        SELECT id, order_id, amount FROM base
        UNION ALL SELECT id || 'd', order_id, amount FROM base WHERE pick('duplicated', k);
    """)
    db.execute(f"COPY (SELECT id, order_id, amount FROM orders ORDER BY k) TO '{work}/orders.parquet'")
    db.execute(f"COPY (SELECT * FROM invoices ORDER BY id) TO '{work}/invoices.parquet'")
    planted = {
        kind: db.sql(f"SELECT count(*) FROM orders WHERE pick('{kind}', k)").fetchall()[0][0]
        for kind in ("missing", "duplicated", "mismatch", "rounding")
    }
    planted["orders"] = db.sql("SELECT count(*) FROM orders").fetchall()[0][0]
    planted["invoices"] = db.sql("SELECT count(*) FROM invoices").fetchall()[0][0]
    db.close()
    return planted


def child_hub(work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from integration_hub.engine.recon_engine import Compare, Flow, run_flow
    from integration_hub.warehouse import Warehouse

    class BenchWarehouse(Warehouse):
        @property
        def duckdb_path(self) -> Path:
            return work / "hub.duckdb"

    (work / "hub.duckdb").unlink(missing_ok=True)
    warehouse = BenchWarehouse()
    t0 = time.perf_counter()
    warehouse.ensure_schema("erp")
    with warehouse.connect() as con:
        con.execute(f"CREATE TABLE erp.orders AS SELECT * FROM '{work}/orders.parquet'")
        con.execute(f"CREATE TABLE erp.invoices AS SELECT * FROM '{work}/invoices.parquet'")
    t1 = time.perf_counter()
    flow = Flow(
        name="bench_invoices",
        entity="invoice",
        left="erp.orders",
        right="erp.invoices",
        on=("order_id",),
        missing_right="invoice_missing",
        missing_left="invoice_without_order",
        duplicate_right="invoice_duplicated",
        compares=(Compare("amount", "invoice_amount_mismatch", as_="money", abs_tol=0.01),),
    )
    result = run_flow(warehouse, flow, "bench")
    t2 = time.perf_counter()
    with warehouse.connect() as con:
        con.execute(
            f"COPY (SELECT kind, left_key AS order_id, right_key AS invoice_id FROM recon.bench_invoices__results) "
            f"TO '{work}/hub_findings.parquet'"
        )
    return {"load_s": t1 - t0, "reconcile_s": t2 - t1, "findings": result.findings, "matched": result.matched}


def child_datacompy(work: Path) -> dict:
    import datacompy
    import pandas as pd

    t0 = time.perf_counter()
    orders = pd.read_parquet(work / "orders.parquet", columns=["order_id", "amount"])
    invoices = pd.read_parquet(work / "invoices.parquet").rename(columns={"id": "invoice_id"})
    for df in (orders, invoices):
        df["amount"] = (
            (df["amount"].astype("float64") * 100).round().astype("int64")
        )  # cents: exact tolerance
    t1 = time.perf_counter()
    cmp = datacompy.Compare(
        orders, invoices, join_columns=["order_id"], abs_tol=1, df1_name="erp", df2_name="billing"
    )
    extra = cmp.df2_unq_rows
    known = extra["order_id"].isin(orders["order_id"])
    # all_mismatch() carries the join key only: the invoice is the first of its order (as in the hub).
    first = invoices.drop_duplicates("order_id")[["order_id", "invoice_id"]]
    mismatch = cmp.all_mismatch().merge(first, on="order_id")
    t2 = time.perf_counter()
    findings = pd.concat(
        [
            pd.DataFrame(
                {"kind": "invoice_missing", "order_id": cmp.df1_unq_rows["order_id"], "invoice_id": None}
            ),
            pd.DataFrame(
                {
                    "kind": "invoice_duplicated",
                    "order_id": extra.loc[known, "order_id"],
                    "invoice_id": extra.loc[known, "invoice_id"],
                }
            ),
            pd.DataFrame(
                {
                    "kind": "invoice_without_order",
                    "order_id": None,
                    "invoice_id": extra.loc[~known, "invoice_id"],
                }
            ),
            pd.DataFrame(
                {
                    "kind": "invoice_amount_mismatch",
                    "order_id": mismatch["order_id"],
                    "invoice_id": mismatch["invoice_id"],
                }
            ),
        ]
    )
    findings.to_parquet(work / "datacompy_findings.parquet")
    counts = findings["kind"].value_counts().to_dict()
    return {
        "load_s": t1 - t0,
        "reconcile_s": t2 - t1,
        "findings": {k: int(v) for k, v in counts.items()},
        "matched": int(cmp.count_matching_rows()),
    }


def run_child(tool: str, work: Path) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", tool, "--workdir", str(work)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    return result


def same_findings(work: Path) -> tuple[bool, int]:
    import duckdb

    q = "SELECT kind, order_id, invoice_id FROM '{}'"
    db = duckdb.connect()
    hub, other = (
        set(db.sql(q.format(work / f)).fetchall())
        for f in ("hub_findings.parquet", "datacompy_findings.parquet")
    )
    return hub == other, len(hub)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--child", choices=["hub", "datacompy"])
    args = parser.parse_args()
    if args.child:
        result = child_hub(args.workdir) if args.child == "hub" else child_datacompy(args.workdir)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_recon_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    planted = generate(args.scale, work)
    print(f"data (scale {args.scale:g}): {planted} in {time.perf_counter() - t0:.1f}s, {work}")
    hub = run_child("hub", work)
    other = run_child("datacompy", work)
    equal, n = same_findings(work)
    print(f"{'':12}{'load s':>9}{'reconcile s':>13}{'process s':>11}{'peak RSS MB':>13}")
    for name, r in (("hub", hub), ("datacompy", other)):
        print(
            f"{name:12}{r['load_s']:9.2f}{r['reconcile_s']:13.2f}{r['process_s']:11.2f}{r['peak_rss_mb']:13.0f}"
        )
    print(f"hub findings: {hub['findings']}")
    print(f"datacompy findings: {other['findings']}")
    print(
        f"same findings: {equal} ({n} findings; planted: missing {planted['missing']}, duplicated "
        f"{planted['duplicated']}, mismatch {planted['mismatch']}, rounding-at-tolerance {planted['rounding']} must match)"
    )
    print(
        f"reconcile speed-up: {other['reconcile_s'] / hub['reconcile_s']:.1f}x; "
        f"load+reconcile: {(other['load_s'] + other['reconcile_s']) / (hub['load_s'] + hub['reconcile_s']):.1f}x; "
        f"peak RSS ratio datacompy/hub: {other['peak_rss_mb'] / hub['peak_rss_mb']:.1f}x"
    )
    if not equal:
        sys.exit("the two tools disagree on the findings")


if __name__ == "__main__":
    main()
