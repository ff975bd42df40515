"""The code location as the UI sees it: names snapshotted, every asset's contract filled in, no secret shown.

Definitions are loaded in a fresh interpreter per environment (they are built at import
time from the environment). The snapshot `tests/snapshots/definitions.json` makes an
accidental rename of an asset, check, job, schedule or sensor show in review; after an
intended change, refresh it with `UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_definitions.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "snapshots" / "definitions.json"

# Placeholders that look like real secrets: none of them may reach what the UI is sent.
SECRETS = {
    "HUB_CRM_CLIENT_ID": "placeholder-crm-client-id-4d1f",
    "HUB_CRM_CLIENT_SECRET": "placeholder-crm-secret-93ab",
    "HUB_SHOP_API_KEY": "placeholder-shop-key-77c2",
    "HUB_BILLING_CLIENT_SECRET": "placeholder-billing-secret-0e5d",
    "HUB_BILLING_REFRESH_TOKEN": "placeholder-billing-refresh-71be",
    "HUB_SUPPORT_API_TOKEN": "placeholder-support-token-51aa",
    "HUB_MARKETING_API_KEY": "placeholder-marketing-key-c3b9",
    "HUB_WAREHOUSE_URL": "postgresql://hub:placeholder-pg-password-8f21@db.invalid:5432/hub",
    "HUB_ERP_URL": "postgresql://erp:placeholder-erp-password-2c77@erp.invalid:5432/erp",
    "HUB_ALERT_WEBHOOK_URL": "https://hooks.invalid/services/placeholder-webhook-token-6e0a",
    "HUB_CELERY_BROKER_URL": "pyamqp://hub:placeholder-broker-password-19d4@mq.invalid:5672//",
}

DESCRIBE = """
import json, sys
import dagster as dg
from dagster._core.remote_representation.external_data import RepositorySnap
from dagster._core.system_config.objects import ResolvedRunConfig
from dagster._serdes import serialize_value
from integration_hub.definitions import defs

repo = defs.get_repository_def()
specs = sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key.to_user_string())
fresh = lambda p: p and int(p.fail_window.to_timedelta().total_seconds() // 3600)
print(json.dumps({
    "assets": {s.key.to_user_string(): {"group": s.group_name, "fresh_hours": fresh(s.freshness_policy)}
               for s in specs},
    "contract": {s.key.to_user_string(): {"description": s.description, "owners": list(s.owners),
                                          "kinds": sorted(s.kinds), "group": s.group_name} for s in specs},
    "checks": sorted(k.to_user_string() for k in repo.asset_graph.asset_check_keys),
    "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
    "schedules": {s.name: [s.job_name, s.cron_schedule] for s in repo.schedule_defs},
    "sensors": sorted(s.name for s in repo.sensor_defs),
    "undescribed": sorted([j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__") and not j.description]
                          + [s.name for s in [*repo.schedule_defs, *repo.sensor_defs] if not s.description]),
    "ui_payload": serialize_value(RepositorySnap.from_def(repo)),
    "execution": {name: ResolvedRunConfig.build(defs.resolve_job_def(job), {"execution": {"config": cfg}} if cfg else {})
                  .execution.execution_engine_config
                  for name, job, cfg in (("default", "nightly", None), ("in_process", "nightly", {"in_process": {}}),
                                         ("multiprocess", "nightly", {"multiprocess": {}}),
                                         ("spawn", "nightly", {"multiprocess": {"start_method": {"spawn": {}}}}))},
    "celery_executor": defs.resolve_job_def("nightly_celery").executor_def.name,
}))
"""


def _describe(tmp_path: Path, name: str, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_HOME=str(tmp_path / name), DAGSTER_HOME=str(tmp_path / name / "dagster"), **extra_env)
    return subprocess.Popen(
        [sys.executable, "-c", DESCRIBE],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def described(tmp_path_factory) -> tuple[dict, dict]:
    """(default profile, profile with every secret set): loaded in parallel."""
    tmp = tmp_path_factory.mktemp("defs")
    default, secret = _describe(tmp, "default", {}), _describe(tmp, "secrets", SECRETS)
    return _result(default), _result(secret)


def test_names_match_the_snapshot(described):
    default, _ = described
    current = {k: default[k] for k in ("assets", "checks", "jobs", "schedules", "sensors")}
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    for part in expected:
        assert current[part] == expected[part], (
            f"{part} changed: if intended, refresh with UPDATE_SNAPSHOTS=1 (see this module's docstring)"
        )


def test_every_asset_carries_its_contract(described):
    default, _ = described
    layers = {"staging", "canonical", "recon", "sync", "audit", "seeds"}
    raw = {f"raw_{s}" for s in ("billing", "crm", "erp", "payments", "shop")}
    assert default["undescribed"] == [], "jobs, schedules and sensors the UI shows without a description"
    assert {c["group"] for c in default["contract"].values()} == layers | raw
    for key, contract in default["contract"].items():
        # Groups follow key prefixes (`raw/<system>` → `raw_<system>`, its warehouse schema).
        parts = key.split("/")
        assert contract["group"] == (f"raw_{parts[1]}" if parts[0] == "raw" else parts[0]), key
        assert contract["description"], f"{key} has no description"
        assert contract["owners"], f"{key} has no owner"
        assert {"duckdb"} & set(contract["kinds"]), f"{key} does not say which warehouse it lives in"
        assert len(contract["kinds"]) >= 2, f"{key} kinds {contract['kinds']} say too little"


def test_freshness_follows_the_schedules(described):
    default, _ = described
    hours = {key: a["fresh_hours"] for key, a in default["assets"].items()}
    for system in ("crm", "shop", "billing"):
        assert {h for k, h in hours.items() if k.startswith(f"raw/{system}/")} == {2}
    for system in ("erp", "payments"):
        assert {h for k, h in hours.items() if k.startswith(f"raw/{system}/")} == {26}
    downstream = {h for k, h in hours.items() if not k.startswith(("raw/", "seeds/"))}
    assert downstream == {26}
    assert {h for k, h in hours.items() if k.startswith("seeds/")} == {None}


def test_a_dlt_child_table_is_its_parents_asset(described):
    """`staging.shop__order_line` reads `raw_shop.orders__line_items`, loaded by `raw/shop/orders`."""
    default, _ = described
    assert "raw/shop/orders__line_items" not in default["assets"]
    assert "raw/shop/orders" in default["assets"]


def test_no_secret_reaches_the_ui(described):
    _, secret = described
    assert all("postgres" in c["kinds"] for c in secret["contract"].values()), (
        "HUB_WAREHOUSE_URL is set: every asset should say it lives in Postgres"
    )
    payload = secret["ui_payload"]
    for var, value in SECRETS.items():
        token = value.split("placeholder-")[1].split("@")[0]
        assert token not in payload, f"{var}'s value is in the definitions the UI receives"


def test_runs_are_in_process_on_duckdb_and_fork_preloaded_steps_on_postgres(described):
    """UI, schedule and sensor runs use the default executor: in process on the embedded DuckDB
    warehouse (one writer: steps could not run side by side); on Postgres, multiprocess steps
    forked from a forkserver that imported the code location once. A run may choose either:
    multiprocess on DuckDB then runs one step at a time."""
    default, postgres = described
    forkserver = {"forkserver": {"preload_modules": ["integration_hub.definitions"]}}
    assert "in_process" in default["execution"]["default"]
    run = default["execution"]["multiprocess"]["multiprocess"]
    assert run["start_method"] == forkserver
    assert run["max_concurrent"] == 1
    assert postgres["execution"]["default"]["multiprocess"]["start_method"] == forkserver
    assert not postgres["execution"]["default"]["multiprocess"].get("max_concurrent")  # pool of 4: parallel
    assert "in_process" in postgres["execution"]["in_process"]  # still selectable per run
    assert default["execution"]["spawn"]["multiprocess"]["start_method"] == {"spawn": {}}  # run config wins
    assert default["celery_executor"] == "hub_celery_executor"  # the scale-out twins keep theirs


def test_dagster_validates_the_workspace(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    bin_dir = Path(sys.executable).parent
    out = subprocess.run(
        [str(bin_dir / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "Validation successful" in out.stdout + out.stderr
