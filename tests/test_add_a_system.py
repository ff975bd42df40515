"""docs/add-a-system.md, executed: a new system joins the hub by dropping files, editing none.

The walkthrough's files (`docs/examples/new_system/`, laid out as the repository is) are
copied into a temporary git copy of the project, never into the live tree other runs share,
and `git status` shows they are the only change. A point-of-sale system answers over real
HTTP; the copied code location discovers its descriptor and staging model; real Dagster runs
load it with dlt and rebuild the canonical layer, and its loyalty members come out as
canonical customers: known people matched to their existing customer, strangers as new
customers, a broken row quarantined (1 of 12: under the load contract's 10% share, so the
load warns instead of failing). Every other layer picks the system up from its descriptor:
the hourly job it declares, source completeness (which counts its members, and finds the
one the POS later lost), and `hub audit trace pos:<member>`. The other systems are the
session's sandbox, so completeness asks every source as it would in production.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from integration_hub.warehouse import Warehouse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "new_system"
PROJECT = (
    "assets",
    "canonical",
    "dbt_like_sql",
    "integration_hub",
    "resources",
    "workspace.yaml",
    "pyproject.toml",
)
API_KEY = "pos-test-key-5f3a"

RUN = """
import json, sys
import dagster as dg
import integration_hub
from integration_hub.definitions.automation import hourly_job, live_partition
from integration_hub.definitions import defs

job = defs.resolve_implicit_global_asset_job_def()
keys = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
with dg.DagsterInstance.get() as instance:
    load = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["raw", "pos", "members"])],
                                  partition_key=live_partition(), raise_on_error=False)
    layers = [s.key for s in keys.values() if s.group_name in ("staging", "canonical")]
    build = job.execute_in_process(instance=instance, asset_selection=layers, raise_on_error=False)
print(json.dumps({
    "package": integration_hub.__file__,
    "new_assets": sorted(k for k in keys if "pos" in k),
    "customer_deps": sorted(d.asset_key.to_user_string() for d in keys["canonical/customer"].deps),
    "hourly": sorted(k.to_user_string() for k in hourly_job.selection.resolve(defs.resolve_asset_graph())),
    "load_ok": load.success, "build_ok": build.success,
    "errors": [e.event_specific_data.error.message[:500] for r in (load, build) for e in r.all_events
               if e.is_step_failure],
}))
"""
COMPLETENESS = """
import json
import dagster as dg
from integration_hub.definitions import defs

job = defs.resolve_implicit_global_asset_job_def()
with dg.DagsterInstance.get() as instance:
    run = job.execute_in_process(instance=instance, raise_on_error=False,
                                 asset_selection=[dg.AssetKey(["recon", "source_completeness"])])
def root(error):
    while error.cause is not None:
        error = error.cause
    return error.message[:500]
print(json.dumps({"ok": run.success, "errors": [root(e.event_specific_data.error)
                                                for e in run.all_events if e.is_step_failure]}))
"""
TRACE = "from integration_hub.cli import app; app()"


class PosApi(BaseHTTPRequestHandler):
    """The point-of-sale system's members endpoint: API key, offset pages, `updated_since` filter."""

    members: list[dict] = []

    def do_GET(self):  # noqa: N802 - the name http.server dispatches to
        url = urlparse(self.path)
        if self.headers.get("X-Api-Key") != API_KEY:
            return self._send(401, {"error": "invalid api key"})
        if url.path != "/api/members":
            return self._send(404, {"error": "not found"})
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        since, before = q.get("updated_since", ""), q.get("updated_before", "9999")
        rows = [m for m in self.members if since <= str(m.get("updated_at", "")) < before]
        offset, limit = int(q.get("offset", 0)), int(q.get("limit", 100))
        return self._send(200, {"members": rows[offset : offset + limit]})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def _copy_project(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in PROJECT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, target / name, ignore=ignore)
        else:
            shutil.copy(src, target / name)


def _git(project: Path, *args: str) -> str:
    env = {"PATH": os.environ["PATH"], "HOME": str(project), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    out = subprocess.run(["git", *args], cwd=project, env=env, capture_output=True, text=True, check=True)
    return out.stdout


def _python(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *args], cwd=project, env=env, capture_output=True, text=True,
                         timeout=280)  # fmt: skip
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def _report(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def with_pos(tmp_path_factory, canonical_world, sandbox):
    """The project copy with the walkthrough's files dropped in, loaded and built against a POS server."""
    warehouse, _ = canonical_world
    tmp = tmp_path_factory.mktemp("add_a_system")
    project, home = tmp / "project", tmp / "home"
    _copy_project(project)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "-m", "the hub as it is")
    shutil.copytree(EXAMPLE, project, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    _git(project, "add", "-A")
    changed = _git(project, "diff", "--cached", "--name-status").splitlines()
    home.mkdir()
    shutil.copy(warehouse.duckdb_path, home / "warehouse.duckdb")
    with Warehouse(path=home / "warehouse.duckdb").connect() as con:  # as dlt lands settlement lines
        con.execute("ALTER TABLE raw_payments.settlement ADD COLUMN IF NOT EXISTS file_name VARCHAR")
    shutil.copytree(sandbox.home / "landing", home / "landing")  # the settlement files, for completeness

    with warehouse.connect() as con:
        known = con.rows("""
            SELECT s.source_id, s.name, s.email, x.customer_id FROM staging.erp__customer AS s
            JOIN canonical.customer_xref AS x ON x.system = 'erp' AND x.source_id = s.source_id
            WHERE s.email IN (SELECT email FROM staging.erp__customer GROUP BY email HAVING count(*) = 1)
            ORDER BY s.source_id LIMIT 9""")  # fmt: skip
        customers_before = con.scalar("SELECT count(*) FROM canonical.customer")
    stamp = "2026-11-20T09:30:00Z"
    members = [
        {"member_id": 900001 + i, "full_name": name, "email": f"  {email.upper()} ", "mobile": None,
         "store_country": "us", "joined_at": stamp, "updated_at": stamp}
        for i, (_, name, email, _) in enumerate(known)
    ] + [
        {"member_id": 900101, "full_name": "Ada Stranger", "email": "ada.stranger@pos.invalid",
         "mobile": "+1 (555) 010-9901", "store_country": "de", "joined_at": stamp, "updated_at": stamp},
        {"member_id": 900102, "full_name": "Bo Newcomer", "email": "bo.newcomer@pos.invalid",
         "mobile": "+1 (555) 010-9902", "store_country": "fr", "joined_at": stamp, "updated_at": stamp},
        {"member_id": "not-a-number", "full_name": "Broken Till Row", "updated_at": stamp},
    ]  # fmt: skip
    PosApi.members = members
    server = ThreadingHTTPServer(("127.0.0.1", 0), PosApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        "PATH": str(Path(sys.executable).parent),
        "PYTHONPATH": str(project),
        "HUB_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "HUB_POS_URL": f"http://127.0.0.1:{server.server_address[1]}",
        "HUB_POS_API_KEY": API_KEY,
        "HUB_SANDBOX_PORT_BASE": str(sandbox.port_base),
        "HUB_CA_BUNDLE": sandbox.ca_bundle,  # this home has no sandbox of its own: trust the running one's CA
        "HUB_ERP_URL": f"sqlite:///{sandbox.home / 'sandbox' / 'erp.sqlite'}",
        "RUNTIME__REQUEST_MAX_ATTEMPTS": "2",
    }
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    try:
        report = _report(_python(project, env, "-c", RUN))
        report["completeness"] = _report(_python(project, env, "-c", COMPLETENESS))
        report["trace"] = json.loads(
            _python(project, env, "-c", TRACE, "audit", "trace", "pos:900001", "--json").stdout
        )
        PosApi.members = [m for m in members if m["member_id"] != 900102]  # the POS lost a member
        report["recount"] = _report(_python(project, env, "-c", COMPLETENESS))
    finally:
        server.shutdown()
    return {
        "project": project,
        "changed": changed,
        "report": report,
        "warehouse": Warehouse(path=str(home / "warehouse.duckdb")),
        "known": known,
        "customers_before": customers_before,
    }


def test_only_the_walkthrough_files_are_added(with_pos):
    assert with_pos["changed"] == [
        "A\tdbt_like_sql/staging/pos__customer.sql",
        "A\tintegration_hub/systems/pos.py",
    ], "git diff: the two new files, and no other file touched"
    assert with_pos["report"]["package"].startswith(str(with_pos["project"])), (
        "the copy's code must be the one run"
    )


def test_the_code_location_discovers_the_new_system(with_pos):
    report = with_pos["report"]
    assert report["new_assets"] == ["raw/pos/members", "staging/pos__customer"]
    assert "staging/pos__customer" in report["customer_deps"], (
        "the canonical union picked up the new staging model"
    )


def test_members_flow_into_canonical_customers(with_pos):
    report, warehouse, known = with_pos["report"], with_pos["warehouse"], with_pos["known"]
    assert report["load_ok"] and report["build_ok"], report["errors"]
    assert len(known) == 9
    with warehouse.connect() as con:
        assert con.scalar("SELECT count(*) FROM raw_pos.members") == 11
        assert con.scalar("SELECT count(*) FROM staging.pos__customer") == 11
        xref = dict(
            con.rows("SELECT source_id, customer_id FROM canonical.customer_xref WHERE system = 'pos'")
        )
        rules = dict(
            con.rows("SELECT source_id, match_rule FROM canonical.customer_xref WHERE system = 'pos'")
        )
        customers = con.scalar("SELECT count(*) FROM canonical.customer")
        strangers = con.rows(
            "SELECT name, email, country_code, source_system FROM canonical.customer "
            "WHERE email LIKE '%@pos.invalid' ORDER BY email"
        )
    for i, (_, _, _, customer_id) in enumerate(known):
        assert xref[str(900001 + i)] == customer_id, "a known person is matched to their existing customer"
        assert rules[str(900001 + i)] == "email"
    assert customers == with_pos["customers_before"] + 2
    assert strangers == [
        ("Ada Stranger", "ada.stranger@pos.invalid", "DE", "pos"),
        ("Bo Newcomer", "bo.newcomer@pos.invalid", "FR", "pos"),
    ]


def test_a_broken_row_is_quarantined_with_its_reason(with_pos):
    with with_pos["warehouse"].connect() as con:
        tables = [t for (t,) in con.rows("SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = 'quarantine' AND table_name LIKE 'pos%'")]  # fmt: skip
        assert tables == ["pos__members"]
        rows = con.rows("SELECT * FROM quarantine.pos__members")
    assert len(rows) == 1
    assert "member_id" in " ".join(str(v) for v in rows[0]) and "integer" in " ".join(str(v) for v in rows[0])


def test_the_system_joins_the_schedule_it_declares(with_pos):
    hourly = with_pos["report"]["hourly"]
    assert "raw/pos/members" in hourly
    assert {k.split("/")[1] for k in hourly} == {"billing", "crm", "pos", "shop"}


def test_source_completeness_counts_the_new_system_and_sees_what_it_lost(with_pos):
    report = with_pos["report"]
    assert report["completeness"]["ok"] and report["recount"]["ok"], (
        report["completeness"],
        report["recount"],
    )
    with with_pos["warehouse"].connect() as con:
        counts = con.rows(
            "SELECT rows FROM recon.source_counts WHERE system = 'pos' AND resource = 'members' ORDER BY counted_at"
        )
        findings = con.rows(
            "SELECT run_id, kind, difference FROM recon.source_completeness__results "
            "WHERE coalesce(left_key, right_key) = 'pos.members' ORDER BY run_at"
        )
    assert [n for (n,) in counts] == [12, 11], "asked twice: all 12 served, then one fewer"
    # The first time raw (11) plus quarantine (1) equals the POS's 12: no finding. Then the POS
    # holds one member fewer than the hub landed.
    assert [(kind, difference) for _, kind, difference in findings] == [("rows_extra_in_raw", 1.0)]


def test_hub_audit_trace_follows_a_member_to_its_raw_row(with_pos):
    [trace] = with_pos["report"]["trace"]
    assert trace["subject"]["entity"] == "customer"
    assert [r["member_id"] for r in trace["sources"]["raw_pos.members"]] == [900001]
    assert {x["system"] for x in trace["canonical"]["customer_xref"]} >= {"erp", "pos"}
