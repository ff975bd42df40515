"""Incremental end to end: a 1 % change carried from the sandbox systems to the destinations,
against a cold full build, and checked against a full rebuild of the same state.

    .venv/bin/python bench/bench_incremental.py --scale 0.01 [--json]

The parent seeds the sandbox world at the scale and starts its servers; a child process with a
fresh warehouse (embedded DuckDB) and Dagster instance (in-process executor) then runs:

1. **full**: every asset but housekeeping (what `nightly` selects) on the empty warehouse;
   then **settle**: the same selection once more with no change in between, which absorbs the
   CRM's echo of the full build's pushes (every account the hub wrote comes back modified) the
   way the first scheduled cycle after a cold start does (`settle_s`, reported, not a target);
2. `hub sandbox tick` (1 % inserts, updates and deletes in every system, the ERP included):
   `records_changed` = new + changed + deleted of its report;
3. **incremental**: one run of the same selection without the nightly's full-plan tag, so
   models, identity and syncs all work by changed keys: the run that carries the tick, the
   ERP's nightly export included, to the destinations. `latency_p95_s` is the p95 of
   `confirmed_at - source_changed_at` over the records it delivered (`sync.changelog`);
4. **full rebuild** of that state, in a copy of the warehouse: every SQL model built in full in
   build order (canonical ones vetted as their assets do), identity resolved in full keeping
   the previous ids, order identity in full, every reconciliation flow re-run and every sync
   planned over every key. `equal_to_full_rebuild`: the staging and canonical tables, the
   latest findings of each flow and each sync's state (key, hash) equal, row for row and
   order-free, the incremental run's; a complete push leaves a whole plan nothing to send
   (insert, update, retire or delete), so such a plan counts as a difference too;
5. **changes cycle**: another tick, then one `changes` job run (the 15-minute path as
   scheduled) on the incremental warehouse: `changes_cycle_s`; its result is checked against
   a full rebuild as in 4 (`changes_cycle_equal_to_full_rebuild`).

Wall times are taken around `dg.execute_job`; the load average is recorded with each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"incremental_over_full": (1.0, 0.05), "changes_cycle_s": (0.01, 15.0)}  # figure: (scale, limit)
REBUILD_RUN = "bench-full-rebuild"


def all_but_housekeeping():
    """What `nightly` selects, without its full-plan tag: module-level, so Dagster can rebuild it."""
    import dagster as dg

    from integration_hub.definitions import automation, defs

    job = dg.define_asset_job("bench_all", automation._EVERYTHING)
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def("bench_all")


def changes():
    from integration_hub.definitions import defs

    return defs.resolve_job_def("changes")


def run_job(instance, job) -> dict:
    """Execute one job on `instance`; its wall time, step durations by layer and slowest steps."""
    import dagster as dg

    from integration_hub.definitions import defs
    from integration_hub.definitions.automation import live_partition

    started = time.perf_counter()
    result = dg.execute_job(
        dg.reconstructable(job), instance=instance,
        run_config={"execution": {"config": {"in_process": {}}}},
        tags={"dagster/partition": live_partition(), "hub/trigger": "bench"},
    )  # fmt: skip
    wall = time.perf_counter() - started
    group = {s.key: s.group_name for s in defs.resolve_all_asset_specs()}
    steps, layer_of, failures = {}, {}, []
    for event in result.all_events:
        if event.is_step_success or event.is_step_failure:
            steps[event.step_key] = (getattr(event.event_specific_data, "duration_ms", None) or 0) / 1000
            if event.is_step_failure:
                failures.append(f"{event.step_key}: {event.event_specific_data.error.message.strip()[:300]}")
        elif event.is_step_materialization:
            layer_of[event.step_key] = group[event.step_materialization_data.materialization.asset_key]
    layers: dict[str, float] = {}
    for step, seconds in steps.items():
        layers[layer_of.get(step, "checks")] = layers.get(layer_of.get(step, "checks"), 0.0) + seconds
    return {
        "run_id": result.run_id, "success": result.success, "failures": failures, "wall_s": round(wall, 2),
        "overhead_s": round(wall - sum(steps.values()), 2),
        "layers_s": {k: round(v, 2) for k, v in sorted(layers.items())},
        "slowest_steps": {k: round(v, 2) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:8]},
        "load_avg": round(os.getloadavg()[0], 2),
    }  # fmt: skip


def latency(warehouse, run_id: str) -> dict:
    """p95 of (confirmed - source changed) in seconds over the run's deliveries, all syncs and support's."""
    sql = (
        "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY epoch(confirmed_at - source_changed_at)), "
        "count(*) FROM sync.changelog WHERE run_id = ? AND status = 'delivered' "
        "AND source_changed_at IS NOT NULL AND confirmed_at IS NOT NULL"
    )
    with warehouse.connect() as con:
        every, n = con.rows(sql, [run_id])[0]
        support, n_support = con.rows(sql + " AND sync = 'support_orders'", [run_id])[0]
    r = lambda v: None if v is None else round(float(v), 2)  # noqa: E731
    return {"latency_p95_s": r(every), "latency_records": n,
            "latency_p95_support_orders_s": r(support), "latency_support_records": n_support}  # fmt: skip


def full_rebuild(warehouse) -> dict:
    """Rebuild every model, identity map, flow and whole sync plan of `warehouse` in full."""
    from assets.recon_flows import FLOWS, completeness_flows
    from assets.syncs import SYNCS
    from canonical import MODELS
    from integration_hub.engine import (
        identity,
        model_build,
        order_identity,
        sql_models,
        sync_engine,
        validation,
    )
    from integration_hub.engine.recon_engine import run_flow

    started, steps = time.perf_counter(), {}

    def timed(name: str, fn, *args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        steps[name] = round(time.perf_counter() - t, 2)
        return out

    models = sql_models.discover()
    for layer in ("staging", "canonical"):
        if layer == "canonical":
            timed("canonical/customer_xref", identity.update_xref, warehouse, None)
            timed("canonical/order_xref", order_identity.update, warehouse, full=True)
        for model in sql_models.in_build_order([m for m in models if m.layer == layer]):
            vetted = model.layer == "canonical" and model.entity in MODELS
            vet = validation.RowValidator(warehouse, model.entity, REBUILD_RUN) if vetted else None
            timed(model.table, model_build.build, warehouse, model, vet=vet, full=True)
    for flow in [*FLOWS, *completeness_flows(warehouse)]:
        timed(f"recon/{flow.name}", run_flow, warehouse, flow, REBUILD_RUN)
    plans = {
        name: timed(f"plan/{name}", sync_engine.plan, sync, warehouse).counts for name, sync in SYNCS.items()
    }
    return {"full_rebuild_s": round(time.perf_counter() - started, 2), "load_avg": round(os.getloadavg()[0], 2),
            "plans": plans, "slowest_steps": dict(sorted(steps.items(), key=lambda kv: -kv[1])[:8])}  # fmt: skip


def compare(incremental: Path, rebuilt: Path, plans: dict) -> list[str]:
    """What differs between the two warehouses (see the module), as readable lines."""
    import duckdb

    from assets.syncs import SYNCS

    diffs = []
    con = duckdb.connect(str(incremental), read_only=True)
    con.execute(f"ATTACH '{rebuilt}' AS rb (READ_ONLY)")
    try:
        tables = {
            (s, t) for db in (con.execute("SELECT current_database()").fetchone()[0], "rb")
            for s, t in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ? "
                "AND schema_name IN ('staging', 'canonical') AND table_name NOT LIKE '\\_build\\_%' ESCAPE '\\'",
                [db]).fetchall()
        }  # fmt: skip
        checks = [(f"{s}.{t}", f'"{s}"."{t}"', "*") for s, t in sorted(tables)]
        checks += [(f"sync.{n}__state", f'sync."{n}__state"', "key, hash") for n in SYNCS]
        for name, table, cols in checks:
            diffs += _differ(con, name, f"SELECT {cols} FROM {table}", f"SELECT {cols} FROM rb.{table}")
        for (flow,) in con.execute("SELECT DISTINCT flow FROM recon.summary ORDER BY 1").fetchall():
            diffs += _differ(con, f"recon.{flow} findings", *(_findings(db, flow) for db in ("", "rb.")))
    finally:
        con.close()
    for name, counts in plans.items():
        pending = {k: counts.get(k, 0) for k in ("insert", "update", "retire", "delete") if counts.get(k)}
        if pending:
            diffs.append(f"sync {name}: a whole plan still has {pending}")
    return diffs


def _findings(db: str, flow: str) -> str:
    latest = (f"SELECT run_id FROM {db}recon.summary WHERE flow = '{flow}' ORDER BY run_at DESC, "
              f"run_id = '{REBUILD_RUN}' DESC LIMIT 1")  # fmt: skip
    return f'SELECT kind, left_key, right_key FROM {db}recon."{flow}__results" WHERE run_id = ({latest})'


def _differ(con, name: str, left: str, right: str) -> list[str]:
    try:
        only_inc = con.execute(f"SELECT count(*) FROM ({left} EXCEPT ALL {right})").fetchone()[0]
        only_full = con.execute(f"SELECT count(*) FROM ({right} EXCEPT ALL {left})").fetchone()[0]
    except Exception as exc:  # a table on one side only, or with other columns
        return [f"{name}: cannot compare ({str(exc).splitlines()[0]})"]
    if only_inc or only_full:
        return [
            f"{name}: {only_inc} rows only in the incremental result, {only_full} only in the full rebuild"
        ]
    return []


def rebuild_and_compare(home: Path, name: str) -> tuple[dict, list[str]]:
    """Copy the warehouse (no connection is open between runs), rebuild the copy in full, compare."""
    from integration_hub.warehouse import Warehouse

    source, copy = home / "warehouse.duckdb", home / f"{name}.duckdb"
    for suffix in ("", ".wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{copy}{suffix}")
    rebuild = full_rebuild(Warehouse(path=copy))
    return rebuild, compare(source, copy, rebuild["plans"])


def tick() -> dict:
    from hub_sandbox.tick import run_tick

    from integration_hub import settings

    report = run_tick(settings.hub_home(), 0.01)
    return {
        "records_changed": sum(sum(c.values()) for c in report["records"].values()),
        "tick": report["records"],
    }


def child(scale: float) -> dict:
    """Every measurement of one scale, in this fresh process."""
    import dagster as dg

    from integration_hub import settings
    from integration_hub.definitions.instance import ensure_dagster_home
    from integration_hub.warehouse import Warehouse

    ensure_dagster_home()
    home = settings.hub_home()
    out: dict = {"scale": scale}
    with dg.DagsterInstance.get() as instance:
        full = run_job(instance, all_but_housekeeping)
        out["full"] = full
        if not full["success"]:
            return out
        # The full build's pushes stamp every CRM account, and the next CRM load brings them all
        # back: a one-time echo of the first push. One run with no change absorbs it, as the
        # first scheduled cycle after a cold start does; from then on a cycle's echo is the
        # previous cycle's pushes, which follow the change.
        out["settle"] = run_job(instance, all_but_housekeeping)
        changed = tick()
        incremental = run_job(instance, all_but_housekeeping)
        out |= {"records_changed": changed["records_changed"], "incremental": incremental}
        out |= latency(Warehouse(path=home / "warehouse.duckdb"), incremental["run_id"])
        rebuild, differences = rebuild_and_compare(home, "rebuild")
        out |= {"full_rebuild": rebuild, "equal_to_full_rebuild": not differences, "differences": differences}
        second = tick()
        cycle = run_job(instance, changes)
        _, after_cycle = rebuild_and_compare(home, "rebuild_after_cycle")
        out |= {"changes_cycle": cycle | {"records_changed": second["records_changed"]},
                "changes_cycle_equal_to_full_rebuild": not after_cycle,
                "changes_cycle_differences": after_cycle}  # fmt: skip
    out |= {
        "full_s": full["wall_s"], "incremental_s": incremental["wall_s"],
        "incremental_over_full": round(incremental["wall_s"] / full["wall_s"], 4),
        "settle_s": out["settle"]["wall_s"], "changes_cycle_s": cycle["wall_s"],
        "full_rebuild_s": rebuild["full_rebuild_s"],
        "incremental_layers_s": incremental["layers_s"], "tick": changed["tick"],
    }  # fmt: skip
    return out


def one_scale(scale: float, keep: bool) -> dict:
    from hub_sandbox import runner

    from tests.conftest import free_port_base

    home = Path(tempfile.mkdtemp(prefix=f"hub-bench-inc-{scale:g}-"))
    base = free_port_base()
    started = time.perf_counter()
    runner.start(home, base, scale=scale, seed=42)
    seed_s = round(time.perf_counter() - started, 1)
    env = {**os.environ, "HUB_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "HUB_SANDBOX_PORT_BASE": str(base)}  # fmt: skip
    try:
        out = subprocess.run([sys.executable, __file__, "--child", str(scale)], env=env, cwd=ROOT,
                             capture_output=True, text=True)  # fmt: skip
        if out.returncode != 0:
            print(out.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"scale {scale:g} crashed")
        return {"seed_s": seed_s, **json.loads(out.stdout.strip().splitlines()[-1])}
    finally:
        runner.stop(home)
        if keep:
            print(f"kept {home}", file=sys.stderr)
        else:
            shutil.rmtree(home, ignore_errors=True)


def verdicts(r: dict) -> dict[str, str]:
    """Each target beside its figure: met, not met, or not applicable at this scale."""
    out = {}
    for figure, (scale, limit) in TARGETS.items():
        if r.get(figure) is None:
            continue
        met = "met" if r[figure] <= limit else "NOT met"
        out[figure] = f"<= {limit:g} at SF {scale:g}: " + (
            met if r["scale"] == scale else f"n/a here ({met} at this SF)"
        )
    return out


def human(r: dict) -> str:
    if not r["full"]["success"]:
        return f"SF {r['scale']:g}: full build failed: {r['full']['failures']}"
    v = verdicts(r)
    rows = [
        ("full build s", r["full_s"], f"load {r['full']['load_avg']}"),
        ("settle run s (absorbs the first push's echo)", r["settle_s"], f"load {r['settle']['load_avg']}"),
        ("records changed by the tick", r["records_changed"], ""),
        ("incremental run s", r["incremental_s"], f"load {r['incremental']['load_avg']}"),
        ("incremental / full", r["incremental_over_full"], v["incremental_over_full"]),
        (
            "changes cycle s",
            r["changes_cycle_s"],
            v["changes_cycle_s"] + f"; load {r['changes_cycle']['load_avg']}",
        ),
        ("latency p95 s (support_orders)", f"{r['latency_p95_s']} ({r['latency_p95_support_orders_s']})", ""),
        ("full rebuild s", r["full_rebuild_s"], f"load {r['full_rebuild']['load_avg']}"),
        ("equal to full rebuild", r["equal_to_full_rebuild"], "; ".join(r["differences"])[:300]),
        (
            "changes cycle equal to full rebuild",
            r["changes_cycle_equal_to_full_rebuild"],
            "; ".join(r["changes_cycle_differences"])[:300],
        ),
    ]
    lines = [f"SF {r['scale']:g}", "| figure | value | target / note |", "|---|---:|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines.append(f"incremental run by layer (s): {r['incremental_layers_s']}")
    lines.append(f"slowest steps: {r['incremental']['slowest_steps']}")
    lines.append(f"changes cycle by layer (s): {r['changes_cycle']['layers_s']}")
    lines.append(f"changes cycle slowest steps: {r['changes_cycle']['slowest_steps']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=0.01)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep HUB_HOME (both warehouses) for inspection")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child), default=str))
        return
    result = one_scale(args.scale, args.keep)
    result["targets"] = verdicts(result) if result["full"]["success"] else {}
    print(json.dumps(result, default=str) if args.json else human(result))


if __name__ == "__main__":
    main()
