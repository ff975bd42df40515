"""Bench: the ERP loaded through NetSuite SuiteQL (the stand-in) against its SQL path, in the same run.

    .venv/bin/python bench/bench_erp_suiteql.py [--scale 0.1] [--rounds 2]

One world (TPC-H `--scale`, the ERP in SQLite) is seeded and served once. Each round, alternating
which goes first, the hub loads the four ERP tables in full into a fresh DuckDB with dlt: through
the SQL path (connectorx over `erp.sqlite`, the default) and through SuiteQL (`HUB_ERP_URL` at the
stand-in: signed POSTs of 1,000 rows, `offset` paging, text values typed into Arrow). Prints the
best time of each, rows per second and the SuiteQL/SQL ratio. SuiteQL's pages are slow by design
(1,000 rows of text each, offset paging that re-scans the stand-in's table): the ratio says what
choosing it costs, not a target.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path


def load(home: Path, location: str | None, label: str) -> tuple[float, int]:
    """Seconds and rows of a full ERP load into a fresh warehouse."""
    import dlt

    from integration_hub import systems
    from integration_hub.systems import erp

    folder = Path(tempfile.mkdtemp(prefix=f"erp_{label}_", dir=home))
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_erp_{label}",
        pipelines_dir=str(folder / "dlt"),
        destination=dlt.destinations.duckdb(str(folder / "warehouse.duckdb")),
        dataset_name="raw_erp",
    )
    started = time.perf_counter()
    pipeline.run(erp.source(**systems.get("erp").client_kwargs(location))).raise_on_failed_jobs()
    seconds = time.perf_counter() - started
    return seconds, sum(
        pipeline.last_trace.last_normalize_info.row_counts.get(t, 0) for t in erp.PRIMARY_KEYS
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="bench_suiteql_"))
    os.environ["HUB_HOME"] = str(home)
    for name in ("HUB_WAREHOUSE_URL", "HUB_CA_BUNDLE", "HUB_ERP_URL", "HUB_SANDBOX_SCHEME"):
        os.environ.pop(name, None)
    from hub_sandbox import runner

    from integration_hub import systems

    for _ in range(100):  # below the ephemeral ports, where outgoing connections take theirs
        base = random.randrange(10000, 32700, 10)
        try:
            runner.check_ports(base)
            break
        except runner.SandboxError:
            continue
    os.environ["HUB_SANDBOX_PORT_BASE"] = str(base)
    suiteql_url = f"https://127.0.0.1:{base + systems.get('erp').sandbox_port}"
    best: dict[str, float] = {}
    rows: dict[str, int] = {}
    try:
        runner.start(home, base, args.scale, 42)
        for round_number in range(args.rounds):
            paths = (("sql", None), ("suiteql", suiteql_url))
            for label, location in paths[:: 1 if round_number % 2 == 0 else -1]:
                seconds, rows[label] = load(home, location, label)
                best[label] = min(best.get(label, seconds), seconds)
    finally:
        runner.stop(home)
        shutil.rmtree(home, ignore_errors=True)

    assert rows["sql"] == rows["suiteql"], rows
    print(
        f"TPC-H SF {args.scale:g}; the ERP's four tables, {rows['sql']:,} rows; best of {args.rounds} rounds"
    )
    for label in ("sql", "suiteql"):
        print(f"{label:8} {best[label]:7.2f} s ({rows[label] / best[label]:9,.0f} rows/s)")
    print(f"SuiteQL / SQL time: {best['suiteql'] / best['sql']:.1f}x")


if __name__ == "__main__":
    main()
