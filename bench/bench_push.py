"""Bench: push 100,000 changed records to the sandbox support desk, against two baselines.

    .venv/bin/python bench/bench_push.py [--records 100000] [--naive-sample 2000] [--concurrency N]

All three measurements update tickets the desk (Zendesk Support API) already holds, on one
private sandbox:

1. the hub: `sync_engine.apply` of a sync over 100,000 changed rows, end to end (plan
   from the warehouse, batches of 100 to `PUT /api/v2/tickets/update_many` by the stored
   ticket ids, each job status polled, bounded concurrency, changelog and state writes);
2. a naive loop: one `PUT /api/v2/tickets/{id}` per record, one after another, measured on a
   sample and extrapolated to the full count;
3. the server's ceiling: pre-serialised 100-ticket `update_many` bodies fired by many
   threads, each followed by its job-status poll, doing nothing else.

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
from integration_hub.systems.support import FIELDS

BULK_PATH = "/api/v2/tickets/update_many"


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


def naive_loop(url: str, auth: tuple[str, str], tickets: list[dict]) -> float:
    """Seconds to send `tickets` one request per record, sequentially."""
    started = time.perf_counter()
    with httpx.Client(timeout=30, auth=auth) as http:
        for ticket in tickets:
            http.put(f"{url}/api/v2/tickets/{ticket['id']}", json={"ticket": ticket}).raise_for_status()
    return time.perf_counter() - started


def ceiling(url: str, auth: tuple[str, str], tickets: list[dict], threads: int) -> float:
    """Seconds for `threads` clients to send pre-serialised 100-ticket bodies and poll their jobs."""
    bodies = [json.dumps({"tickets": tickets[i : i + 100]}).encode() for i in range(0, len(tickets), 100)]
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=threads, max_keepalive_connections=threads)

    def send(http: httpx.Client, body: bytes) -> None:
        job = http.put(url + BULK_PATH, content=body, headers=headers).raise_for_status().json()["job_status"]
        done = http.get(f"{url}/api/v2/job_statuses/{job['id']}").raise_for_status().json()["job_status"]
        assert done["status"] == "completed", done

    with httpx.Client(timeout=60, limits=limits, auth=auth) as http, ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda b: send(http, b), bodies))
        return time.perf_counter() - started


def tickets(table: pa.Table, ids: dict[str, int], fields: dict[str, int]) -> list[dict]:
    """Ticket updates (by id) carrying the orders' fields, as the hub's writer sends them."""
    names = {"status": "status", "total": "total_amount", "currency": "currency", "order_date": "order_date",
             "customer_email": "customer_email", "customer_name": "customer_name"}  # fmt: skip
    return [
        {"id": ids[r["order_id"]], "status": "open", "tags": ["integration_hub"],
         "custom_fields": [{"id": fields[FIELDS[f]], "value": r[c]} for f, c in names.items()]}
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
    url = runner.urls(base)["support"]
    auth = (f"{secret('HUB_SUPPORT_EMAIL')}/token", secret("HUB_SUPPORT_API_TOKEN"))
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

        with warehouse.connect() as con:
            ids = {k: int(i) for k, i in con.rows(f"SELECT key, remote_id FROM {sync.state_table}")}
        fields = {f["title"]: f["id"] for f in httpx.get(f"{url}/api/v2/ticket_fields", auth=auth).json()["ticket_fields"]}
        naive_seconds = naive_loop(url, auth, tickets(orders(n, 2).slice(0, args.naive_sample), ids, fields))
        ceiling_seconds = ceiling(url, auth, tickets(orders(n, 3), ids, fields), args.ceiling_threads)
        held = httpx.get(f"{url}/_admin/health").json()["records"]["tickets"]
        assert held == n, f"the desk holds {held} tickets, expected {n}"
    finally:
        runner.stop(home)
        shutil.rmtree(home, ignore_errors=True)

    hub_rps = n / hub_seconds
    naive_rps = args.naive_sample / naive_seconds
    ceiling_rps = n / ceiling_seconds
    print(f"records: {n:,} changed orders → support desk tickets")
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
