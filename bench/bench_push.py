"""Bench: push 100,000 changed records to the sandbox support desk, against two baselines.

    .venv/bin/python bench/bench_push.py [--records 100000] [--naive-sample 2000] [--concurrency N]

All three measurements hit the same endpoint (`POST /api/v2/orders/create_or_update_many`)
of one private sandbox, with updates of orders the desk already holds:

1. the hub: `sync_engine.apply` of a sync over 100,000 changed rows, end to end (plan
   from the warehouse, batches of 100, bounded concurrency, changelog and state writes);
2. a naive loop: one request per record, one after another, measured on a sample and
   extrapolated to the full count;
3. the server's ceiling: pre-serialised 100-record bodies fired by many threads, doing
   nothing else.

Prints records/s and the ratios (targets: ≥ 20x the naive loop, ≥ 0.5 of the ceiling).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow as pa

from assets.syncs import SYNCS

SUPPORT_PATH = "/api/v2/orders/create_or_update_many"


def orders(n: int, bump: int) -> pa.Table:
    """n canonical-shaped orders; `bump` changes every total, so each push is n changed records."""
    rng = random.Random(7)
    return pa.table(
        {
            "order_id": [f"SO-B{i:09d}" for i in range(n)],
            "status": [rng.choice(["open", "fulfilled", "partially_fulfilled"]) for _ in range(n)],
            "total_amount": [round(rng.uniform(5, 5000), 2) + bump for _ in range(n)],
            "currency": ["USD"] * n,
            "order_date": [f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(n)],
            "customer_email": [f"customer.{i % 9973}@example.com" for i in range(n)],
            "customer_name": [f"Customer {i % 9973}" for i in range(n)],
            "customer_phone": ["+15550000000"] * n,
        }
    )


def naive_loop(url: str, token: str, rows: list[dict]) -> float:
    """Seconds to send `rows` one request per record, sequentially."""
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    with httpx.Client(timeout=30) as http:
        for row in rows:
            http.post(url + SUPPORT_PATH, json={"orders": [row]}, headers=headers).raise_for_status()
    return time.perf_counter() - started


def ceiling(url: str, token: str, rows: list[dict], threads: int) -> float:
    """Seconds for `threads` clients to send pre-serialised 100-record bodies of `rows`."""
    bodies = [json.dumps({"orders": rows[i : i + 100]}).encode() for i in range(0, len(rows), 100)]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)
    with httpx.Client(timeout=60, limits=limits) as http, ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        for response in pool.map(lambda b: http.post(url + SUPPORT_PATH, content=b, headers=headers), bodies):
            response.raise_for_status()
        return time.perf_counter() - started


def payloads(table: pa.Table) -> list[dict]:
    return [
        {"external_id": r["order_id"], "status": r["status"], "total": r["total_amount"], "currency": r["currency"],
         "order_date": r["order_date"], "customer_email": r["customer_email"], "customer_name": r["customer_name"]}
        for r in table.to_pylist()
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--naive-sample", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, help="default: what the support_orders sync declares")
    parser.add_argument("--ceiling-threads", type=int, default=8)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench_push_"))
    os.environ["HUB_HOME"] = str(home)
    os.environ.pop("HUB_WAREHOUSE_URL", None)
    from hub_sandbox import runner, secret
    from hub_sandbox import seed as seeding

    from integration_hub.engine import sync_engine as rs
    from integration_hub.warehouse import Warehouse

    seeding.seed(home, 0.01, 42)
    base = random.randrange(30000, 60000, 10)
    os.environ["HUB_SANDBOX_PORT_BASE"] = str(base)
    runner.start(home, base, 0.01, 42)
    url, token = runner.urls(base)["support"], secret("HUB_SUPPORT_API_TOKEN")
    try:
        warehouse = Warehouse()
        sync = rs.Sync(
            name="bench_support", source="bench.orders", destination="support", object="orders", mode="upsert",
            key="order_id",
            mapping={"external_id": "order_id", "status": "status", "total": "total_amount", "currency": "currency",
                     "order_date": "order_date", "customer_email": "customer_email",
                     "customer_name": "customer_name", "customer_phone": "customer_phone"},
            allow=frozenset({"external_id", "status", "total", "currency", "order_date", "customer_email",
                             "customer_name"}),
            batch_size=100, concurrency=args.concurrency or SYNCS["support_orders"].concurrency,
        )  # fmt: skip
        n = args.records
        warehouse.write_arrow("bench", "orders", orders(n, 0), mode="replace")
        initial = rs.apply(sync, warehouse)
        assert initial.delivered == n, initial.errors

        warehouse.write_arrow("bench", "orders", orders(n, 1), mode="replace")
        started = time.perf_counter()
        changed = rs.apply(sync, warehouse)
        hub_seconds = time.perf_counter() - started
        assert (changed.counts["update"], changed.delivered) == (n, n), changed.errors
        assert rs.plan(sync, warehouse).counts["unchanged"] == n

        sample = payloads(orders(n, 2).slice(0, args.naive_sample))
        naive_seconds = naive_loop(url, token, sample)
        ceiling_seconds = ceiling(url, token, payloads(orders(n, 3)), args.ceiling_threads)
        held = httpx.get(f"{url}/_admin/health").json()["records"]["orders"]
        assert held == n, f"the desk holds {held} orders, expected {n}"
    finally:
        runner.stop(home)
        shutil.rmtree(home, ignore_errors=True)

    hub_rps = n / hub_seconds
    naive_rps = args.naive_sample / naive_seconds
    ceiling_rps = n / ceiling_seconds
    print(f"records: {n:,} changed orders → support desk")
    print(f"hub initial push (inserts):  {initial.seconds:7.1f} s  {n / initial.seconds:9,.0f} rec/s")
    print(
        f"hub changed push (updates):  {hub_seconds:7.1f} s  {hub_rps:9,.0f} rec/s  ({changed.requests} requests;"
        f" plan {hub_seconds - changed.seconds:.1f} s, push {changed.seconds:.1f} s)"
    )
    print(f"naive loop ({args.naive_sample:,} sample):     {naive_seconds:7.1f} s  {naive_rps:9,.0f} rec/s"
          f"  → {n / naive_rps:,.0f} s extrapolated for {n:,}")  # fmt: skip
    print(
        f"server ceiling ({args.ceiling_threads} threads):  {ceiling_seconds:7.1f} s  {ceiling_rps:9,.0f} rec/s"
    )
    print(f"hub / naive:   {hub_rps / naive_rps:6.1f}x   (target ≥ 20x)")
    print(f"hub / ceiling: {hub_rps / ceiling_rps:6.2f}    (target ≥ 0.5)")


if __name__ == "__main__":
    main()
