"""Bench: what HTTPS costs the hub's REST sources and pushes, against plain HTTP in the same run.

    .venv/bin/python bench/bench_tls.py [--scale 0.1] [--records 20000] [--rounds 2]

One world (TPC-H `--scale`) is seeded once; the same home is served over HTTPS (its local CA,
verified) and over plain HTTP (`runner.start(http=True)`), alternately for `--rounds` rounds,
and each time the hub:

1. loads the shop's orders and customers and the CRM's accounts and contacts (its dlt REST
   sources, full load into a fresh DuckDB warehouse), and
2. pushes `--records` changed accounts to the CRM (`sync_engine.apply`, sObject Collections
   upserts of 200, the `crm_accounts` sync's concurrency).

Over HTTPS it also reads the CRM's accounts and contacts with simple-salesforce (`query_all_iter`
of the same SOQL, records as dicts, nothing landed) beside the hub's CRM source alone (dlt's
`RESTClient`, pages fetched ahead, landed in DuckDB): the measurement behind the adapter's choice.

Prints the best time of each per scheme and the HTTPS/HTTP ratio.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa

SOURCES = ("shop", "crm")


def accounts(n: int, bump: int) -> pa.Table:
    """n accounts to upsert by number; `bump` changes every value, so each push is n changed records."""
    return pa.table({
        "account_number": [f"C8{i:08d}" for i in range(n)],
        "name": [f"Bench Account {i}" for i in range(n)],
        "lifetime_value": [float(i % 9973 + bump) for i in range(n)],
    })  # fmt: skip


def load_sources(home: Path, scheme: str) -> tuple[float, int]:
    """Seconds and rows of a full load of the REST sources into a fresh warehouse."""
    import dlt

    from integration_hub import systems

    started, rows = time.perf_counter(), 0
    folder = Path(tempfile.mkdtemp(prefix=f"tls_{scheme}_", dir=home))
    for name in SOURCES:
        source = systems.get(name).source(**systems.get(name).client_kwargs())
        pipeline = dlt.pipeline(
            pipeline_name=f"bench_tls_{name}_{scheme}",
            pipelines_dir=str(folder / "dlt"),
            destination=dlt.destinations.duckdb(str(folder / "warehouse.duckdb")),
            dataset_name=f"raw_{name}",
        )
        info = pipeline.run(source)
        info.raise_on_failed_jobs()
        rows += sum(pipeline.last_trace.last_normalize_info.row_counts.get(r, 0) for r in source.resources)
    return time.perf_counter() - started, rows


def read_crm(home: Path) -> tuple[float, float, int]:
    """Seconds of the hub's CRM source load and of simple-salesforce reading the same records."""
    import dlt
    import requests
    from simple_salesforce import Salesforce

    from integration_hub import systems
    from integration_hub.systems import crm

    kwargs = systems.get("crm").client_kwargs()
    folder = Path(tempfile.mkdtemp(prefix="crm_read_", dir=home))
    started = time.perf_counter()
    pipeline = dlt.pipeline(
        pipeline_name="bench_crm_read",
        pipelines_dir=str(folder / "dlt"),
        destination=dlt.destinations.duckdb(str(folder / "warehouse.duckdb")),
        dataset_name="raw_crm",
    )
    pipeline.run(crm.source(**kwargs)).raise_on_failed_jobs()
    hub_seconds = time.perf_counter() - started

    started = time.perf_counter()
    token, _ = crm.login(**kwargs)
    http = requests.Session()
    http.verify = str(home / "sandbox" / "tls" / "ca-bundle.pem")
    http.trust_env = False  # else REQUESTS_CA_BUNDLE, where set, overrides `verify`
    sf = Salesforce(instance_url=kwargs["base_url"], session_id=token, version=crm.API_VERSION, session=http)
    records = sum(1 for name in crm.OBJECTS for _ in sf.query_all_iter(crm.soql(name), include_deleted=True))
    return hub_seconds, time.perf_counter() - started, records


def push(warehouse, n: int, bump: int) -> float:
    """Seconds of one sync of n changed accounts to the CRM."""
    from assets.syncs import SYNCS
    from integration_hub.engine import sync_engine as rs

    crm = SYNCS["crm_accounts"]
    sync = rs.Sync(
        name="bench_tls_crm", source="bench.accounts", destination="crm", object="accounts", mode="upsert",
        key="account_number",
        mapping={"AccountNumber": "account_number", "Name": "name", "Lifetime_Value__c": "lifetime_value"},
        allow=frozenset({"AccountNumber", "Name", "Lifetime_Value__c"}),
        batch_size=200, concurrency=crm.concurrency,
    )  # fmt: skip
    warehouse.write_arrow("bench", "accounts", accounts(n, bump), mode="replace")
    started = time.perf_counter()
    result = rs.apply(sync, warehouse)
    seconds = time.perf_counter() - started
    assert result.delivered == n, result.errors
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench_tls_"))
    os.environ["HUB_HOME"] = str(home)
    for name in ("HUB_WAREHOUSE_URL", "HUB_CA_BUNDLE"):
        os.environ.pop(name, None)
    from hub_sandbox import runner
    from hub_sandbox import seed as seeding

    from integration_hub.warehouse import Warehouse

    seeding.seed(home, args.scale, 42)
    base = random.randrange(30000, 60000, 10)
    os.environ["HUB_SANDBOX_PORT_BASE"] = str(base)
    best: dict[tuple[str, str], float] = {}
    rows = crm_records = 0
    try:
        warehouse = Warehouse(path=str(home / "push.duckdb"))
        bump = 0
        for round_number in range(args.rounds):
            # Alternating which goes first spreads the noise of a shared machine over both.
            for scheme in ("https", "http")[:: 1 if round_number % 2 == 0 else -1]:
                os.environ["HUB_SANDBOX_SCHEME"] = scheme
                runner.start(home, base, args.scale, 42, http=scheme == "http")
                try:
                    if bump == 0:  # create the accounts first: every measured push updates them
                        push(warehouse, args.records, bump)
                        bump += 1
                    seconds, rows = load_sources(home, scheme)
                    best[scheme, "sources"] = min(best.get((scheme, "sources"), seconds), seconds)
                    seconds = push(warehouse, args.records, bump)
                    bump += 1
                    best[scheme, "push"] = min(best.get((scheme, "push"), seconds), seconds)
                    if scheme == "https":
                        hub_read, sdk_read, crm_records = read_crm(home)
                        best["hub", "crm"] = min(best.get(("hub", "crm"), hub_read), hub_read)
                        best["sdk", "crm"] = min(best.get(("sdk", "crm"), sdk_read), sdk_read)
                finally:
                    runner.stop(home)
    finally:
        runner.stop(home)
        shutil.rmtree(home, ignore_errors=True)

    print(f"TPC-H SF {args.scale:g}; best of {args.rounds} rounds, HTTPS (verified, local CA) vs plain HTTP")
    for what, count, unit in (("sources", rows, "rows"), ("push", args.records, "records")):
        https, http = best["https", what], best["http", what]
        label = f"REST sources ({', '.join(SOURCES)})" if what == "sources" else "CRM accounts push"
        print(f"{label:32} {count:9,} {unit}: https {https:6.2f} s ({count / https:9,.0f}/s), "
              f"http {http:6.2f} s ({count / http:9,.0f}/s), https/http {https / http:5.2f}")  # fmt: skip
    hub, sdk = best["hub", "crm"], best["sdk", "crm"]
    print(f"{'CRM read, https':32} {crm_records:9,} records: hub source {hub:6.2f} s, "
          f"simple-salesforce query_all_iter {sdk:6.2f} s, hub/sdk {hub / sdk:5.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
