"""Benchmark: staging + identity + canonical transforms with pandera validation, at TPC-H scale.

    .venv/bin/python bench/bench_transforms.py [--scale 1] [--tpch-cache DIR] [--identity-scale 0.1]

Phase 1 generates the world and loads its raw tables into a fresh DuckDB warehouse (not
timed as transform). Phase 2 runs in a child process so its peak memory is the transforms'
own: every SQL model through the runner (scratch build, row validation in chunks,
quarantine, atomic swap, schema and lineage metadata) and identity resolution. The
baseline, measured in the same run, is the bare SQL: the same expanded models as plain
`CREATE TABLE AS`, nothing else. With `--identity-scale`, identity resolution is also
scored against the truth at that scale (pairwise precision and recall).
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
sys.path.insert(0, str(ROOT))

from hub_sandbox.world import build_world  # noqa: E402

from integration_hub.engine import identity, model_build, sql_models, validation  # noqa: E402
from integration_hub.warehouse import Warehouse  # noqa: E402
from tests.raw_world import load_raw_world  # noqa: E402


def prepare(scale: float, cache: Path, path: Path) -> dict:
    started = time.perf_counter()
    world = build_world(scale, 42, cache)
    generated = time.perf_counter()
    warehouse = Warehouse(path=str(path))
    load_raw_world(warehouse, world)
    for seed in sql_models.seed_files():
        sql_models.load_seed(warehouse, seed)
    return {
        "world_seconds": round(generated - started, 1),
        "raw_load_seconds": round(time.perf_counter() - generated, 1),
        "orders": world.tables["erp"]["sales_orders"].num_rows,
        "lines": world.tables["erp"]["sales_order_lines"].num_rows,
        "truth": world.truth,
    }


def run_transforms(path: Path) -> dict:
    """The measured phase (child process)."""
    warehouse = Warehouse(path=str(path))
    models = sql_models.in_build_order(sql_models.discover())
    xref_key = ("canonical", "customer_xref")
    timings, validation_seconds = {}, 0.0
    started = time.perf_counter()
    for model in models:
        if (
            tuple(xref_key) in [tuple(k.path) for k in model.upstream]
            and "canonical/customer_xref" not in timings
        ):
            t = time.perf_counter()
            identity.build_xref(warehouse)
            timings["canonical/customer_xref"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        vet = (
            validation.RowValidator(warehouse, model.entity, "bench")
            if model.layer == "canonical" and model.entity in validation.MODELS
            else None
        )
        model_build.build(warehouse, model, vet=vet)
        timings[model.key.to_user_string()] = round(time.perf_counter() - t, 2)
        validation_seconds += vet.report.seconds if vet else 0.0
    total = time.perf_counter() - started

    # Baseline: the same SQL, bare.
    t = time.perf_counter()
    with warehouse.connect() as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS bare")
        for model in models:
            sql = sql_models.expand(
                model.template, model.root, lambda s, n: sql_models.table_columns(con, s, n)
            )
            con.execute(f'CREATE OR REPLACE TABLE bare."{model.layer}__{model.name}" AS {sql}')
    bare = time.perf_counter() - t
    return {
        "transform_seconds": round(total, 1),
        "validation_seconds": round(validation_seconds, 1),
        "validation_share": round(validation_seconds / total, 3),
        "bare_sql_seconds": round(bare, 1),
        "ratio_to_bare_sql": round(total / bare, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "by_model": timings,
    }


def identity_scores(scale: float, cache: Path) -> dict:
    from tests.test_identity_resolution import precision_recall

    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Warehouse(path=str(Path(tmp) / "warehouse.duckdb"))
        load_raw_world(warehouse, build_world(scale, 42, cache))
        for seed in sql_models.seed_files():
            sql_models.load_seed(warehouse, seed)
        for model in sql_models.discover():
            if model.layer == "staging" and model.entity == "customer":
                model_build.build(warehouse, model)
        xref = identity.build_xref(warehouse).to_pandas()
    precision, recall, pairs = precision_recall(xref)
    return {
        "scale": scale,
        "records": len(xref),
        "true_pairs": pairs,
        "precision": precision,
        "recall": recall,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--tpch-cache", type=Path, default=Path(tempfile.gettempdir()) / "hub-bench-tpch")
    parser.add_argument("--identity-scale", type=float)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # the child phase
    args = parser.parse_args()
    if args.run:
        print(json.dumps(run_transforms(args.run)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "warehouse.duckdb"
        prepared = prepare(args.scale, args.tpch_cache, path)
        prepared.pop("truth")
        child = subprocess.run([sys.executable, __file__, "--run", str(path)], capture_output=True, text=True)
        if child.returncode:
            sys.exit(child.stderr)
        measured = json.loads(child.stdout.strip().splitlines()[-1])
    report = {"scale": args.scale, **prepared, **measured}
    if args.identity_scale:
        report["identity"] = identity_scores(args.identity_scale, args.tpch_cache)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
