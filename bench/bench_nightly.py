"""End-to-end benchmark: every layer from the sandbox systems to reverse sync, at TPC-H scale factors.

    .venv/bin/python bench/bench_nightly.py --scales 0.01 0.1 1 [--executors in_process multiprocess]

For each scale the parent seeds the sandbox world (ERP from TPC-H, the REST systems and the
settlement files derived from it, so they grow with the scale) and starts its servers. Then,
for each executor, a child process with a fresh warehouse and Dagster instance runs:

1. **full**: one run of every asset except retention (the live-edge partition), through
   `dg.execute_job` on a real instance: every source loaded by dlt over HTTP / SQL / files,
   staging and canonical SQL, identity, validation, reconciliation, reverse sync pushed
   over HTTP: the same assets as today's `nightly` job, which first selected only the ERP
   and its downstream and so could not build a cold warehouse.
2. `hub sandbox tick` (1% of records changed or added), then the scheduled jobs as they run
   in production: **incremental** = `hourly_sources` (the hourly run the target is about),
   then the next `nightly` on the built warehouse.

Reported per run: wall time, compute time per layer (sum of step durations by asset group),
rows per second, peak RSS (the run process and, for multiprocess, its largest step process:
steps are forked by a forkserver, not children of the run process, so their peak is sampled
from /proc), and Dagster's orchestration overhead = run wall time - sum of step durations
(also per step: the multiprocess executor pays it once per step process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGETS = {"nightly_s": 300, "incremental_share": 0.05, "overhead_share": 0.15}


def full_job():
    """Every asset but retention: module-level, so step processes can rebuild it."""
    import dagster as dg

    from integration_hub.definitions import defs

    selection = dg.AssetSelection.all() - dg.AssetSelection.groups("operations")
    bench = dg.Definitions.merge(defs, dg.Definitions(jobs=[dg.define_asset_job("bench_full", selection)]))
    return bench.resolve_job_def("bench_full")


def hourly_job():
    from integration_hub.definitions import defs

    return defs.resolve_job_def("hourly_sources")


def nightly_job():
    from integration_hub.definitions import defs

    return defs.resolve_job_def("nightly")


JOBS = {"full": full_job, "hourly_sources": hourly_job, "nightly": nightly_job}


def run_job(instance, name: str, executor: str) -> dict:
    """Execute one job on `instance`; wall time and per-step durations."""
    import dagster as dg

    from integration_hub.definitions import defs
    from integration_hub.definitions.automation import live_partition

    job = JOBS[name]
    started = time.perf_counter()
    result = dg.execute_job(
        dg.reconstructable(job),
        instance=instance,
        run_config={"execution": {"config": {executor: {}}}},
        tags={"dagster/partition": live_partition(), "hub/trigger": "bench"},
    )
    wall = time.perf_counter() - started
    steps, groups, failures, rows = {}, {}, [], 0
    group = {s.key: s.group_name for s in defs.resolve_all_asset_specs()}
    for event in result.all_events:
        if event.is_step_success or event.is_step_failure:
            steps[event.step_key] = (getattr(event.event_specific_data, "duration_ms", None) or 0) / 1000
            if event.is_step_failure:
                failures.append(f"{event.step_key}: {event.event_specific_data.error.message.strip()[:300]}")
        elif event.is_step_materialization:
            mat = event.step_materialization_data.materialization
            groups[event.step_key] = group[mat.asset_key]
            count = mat.metadata.get("rows_loaded") or mat.metadata.get("dagster/row_count")
            rows += int(count.value) if count is not None and isinstance(count.value, int) else 0
    layers: dict[str, float] = {}
    for step, seconds in steps.items():
        layer = groups.get(step, "checks")
        layers[layer] = layers.get(layer, 0.0) + seconds
    compute = sum(steps.values())
    return {
        "job": name,
        "success": result.success,
        "failures": failures,
        "wall_s": round(wall, 2),
        "compute_s": round(compute, 2),
        "overhead_s": round(wall - compute, 2),
        "overhead_share": round((wall - compute) / wall, 3),
        "overhead_per_step_s": round((wall - compute) / max(len(steps), 1), 2),
        "layers_s": {k: round(v, 2) for k, v in sorted(layers.items())},
        "steps": len(steps),
        "slowest_steps": {k: round(v, 2) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])[:8]},
        "rows_written": rows,
    }


def raw_rows() -> dict[str, int]:
    from integration_hub.warehouse import warehouse_from_env

    with warehouse_from_env().connect() as con:
        tables = con.rows(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema LIKE 'raw\\_%' ESCAPE '\\' AND table_schema NOT LIKE '%\\_staging' ESCAPE '\\' "
            "AND table_name NOT LIKE '\\_dlt%' ESCAPE '\\'"
        )
        return {f"{s}.{t}": int(con.scalar(f'SELECT count(*) FROM "{s}"."{t}"')) for s, t in tables}


class DescendantPeak(threading.Thread):
    """Largest peak RSS (VmHWM) seen among this process's descendants, sampled every 0.2 s."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kb, self.stop = 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for pid in _descendants(os.getpid()):
                self.peak_kb = max(self.peak_kb, _vm_hwm_kb(pid))


def _descendants(root: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


def _vm_hwm_kb(pid: int) -> int:
    try:
        line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
    except (OSError, StopIteration):
        return 0
    return int(line.split()[1])


def peak_rss_mb(sampler: DescendantPeak) -> dict[str, int]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return {"run_process": own, "largest_step_process": max(children, sampler.peak_kb // 1024)}


def child(executor: str) -> dict:
    """One executor's measurements, in this (fresh) process: full, tick, incremental."""
    import dagster as dg
    from hub_sandbox.tick import run_tick

    from integration_hub import settings
    from integration_hub.definitions.instance import ensure_dagster_home

    ensure_dagster_home()
    sampler = DescendantPeak()
    sampler.start()
    with dg.DagsterInstance.get() as instance:
        full = run_job(instance, "full", executor)
        if not full["success"]:
            return {"executor": executor, "full": full}
        rows = raw_rows()
        tick = run_tick(settings.hub_home(), 0.01)
        hourly = run_job(instance, "hourly_sources", executor)
        nightly = run_job(instance, "nightly", executor)
    return {
        "executor": executor,
        "full": full,
        "raw_rows": sum(rows.values()),
        "raw_tables": rows,
        "raw_rows_per_s": round(sum(rows.values()) / full["layers_s"].get("sources", full["wall_s"])),
        "rows_written_per_s": round(full["rows_written"] / full["wall_s"]),
        "tick": tick,
        "incremental": {"hourly_sources": hourly, "nightly": nightly},
        "incremental_share_of_full": round(hourly["wall_s"] / full["wall_s"], 3),
        "nightly_after_tick_share_of_full": round(nightly["wall_s"] / full["wall_s"], 3),
        "peak_rss_mb": peak_rss_mb(sampler),
    }


def fresh_state(home: Path) -> None:
    """Forget every load: warehouse, dlt state and Dagster instance (the sandbox world stays)."""
    for path in (home / "warehouse.duckdb", home / "warehouse.duckdb.wal"):
        path.unlink(missing_ok=True)
    for folder in (home / "dlt", home / "dagster"):
        shutil.rmtree(folder, ignore_errors=True)


def one_scale(scale: float, executors: list[str], keep: bool) -> list[dict]:
    from hub_sandbox import runner

    from tests.conftest import free_port_base

    home = Path(tempfile.mkdtemp(prefix=f"hub-bench-{scale:g}-"))
    base = free_port_base()
    started = time.perf_counter()
    runner.start(home, base, scale=scale, seed=42)
    seed_s = round(time.perf_counter() - started, 1)
    env = {**os.environ, "HUB_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "HUB_SANDBOX_PORT_BASE": str(base)}  # fmt: skip
    results = []
    try:
        for executor in executors:
            fresh_state(home)
            out = subprocess.run([sys.executable, __file__, "--child", executor], env=env, cwd=ROOT,
                                 capture_output=True, text=True)  # fmt: skip
            if out.returncode != 0:
                print(out.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"scale {scale:g} ({executor}) crashed")
            result = {"scale": scale, "seed_s": seed_s, **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        runner.stop(home)
        if not keep:
            shutil.rmtree(home, ignore_errors=True)
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| scale | executor | seed s | full wall s | sources s | staging s | canonical s | recon s | "
        "reverse sync s | checks s | raw rows/s | overhead | hourly after tick s | hourly / full | "
        "nightly after tick s | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        full = r["full"]
        if not full["success"]:
            lines.append(
                f"| {r['scale']:g} | {r['executor']} | failed: {'; '.join(full['failures'])[:200]} |"
            )
            continue
        layer = full["layers_s"]
        rss = r["peak_rss_mb"]
        lines.append(
            f"| {r['scale']:g} | {r['executor']} | {r['seed_s']} | {full['wall_s']} | "
            + " | ".join(
                str(layer.get(g, 0))
                for g in ("sources", "staging", "canonical", "reconciliation", "reverse_sync", "checks")
            )  # fmt: skip
            + f" | {r['raw_rows_per_s']:,} | {full['overhead_share']:.1%} ({full['overhead_s']} s, "
            f"{full['overhead_per_step_s']} s/step) | "
            f"{r['incremental']['hourly_sources']['wall_s']} | {r['incremental_share_of_full']:.1%} | "
            f"{r['incremental']['nightly']['wall_s']} | "
            f"{max(rss['run_process'], rss['largest_step_process'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scales", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--executors", nargs="+", default=["in_process", "multiprocess"],
                        choices=["in_process", "multiprocess"])  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep each scale's HUB_HOME for inspection")
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child), default=str))
        return
    results = [r for scale in args.scales for r in one_scale(scale, args.executors, args.keep)]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    print()
    print(table(results))
    print(f"\ntargets: full run at SF1 <= {TARGETS['nightly_s']} s, hourly run after the tick <= "
          f"{TARGETS['incremental_share']:.0%} of full, orchestration overhead <= {TARGETS['overhead_share']:.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
