"""docs/add-a-system.md, executed: a new system joins the hub by dropping files, editing none.

The walkthrough's files (`docs/examples/new_system/`, laid out as the repository is) are
copied into a temporary copy of the project, never into the live tree other runs share.
A point-of-sale system answers over real HTTP; the copied code location discovers its
adapter and staging model; real Dagster runs load it with dlt and rebuild the canonical
layer, and its loyalty members come out as canonical customers: known people matched to
their existing customer, strangers as new customers, a broken row quarantined (1 of 12:
under the load contract's 10% share, so the load warns instead of failing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.raw_world import FileWarehouse

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
from integration_hub.automation import live_partition
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
    "load_ok": load.success, "build_ok": build.success,
    "errors": [e.event_specific_data.error.message[:500] for r in (load, build) for e in r.all_events
               if e.is_step_failure],
}))
"""


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


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for name in PROJECT
        for p in ([root / name] if (root / name).is_file() else (root / name).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def with_pos(tmp_path_factory, canonical_world):
    """The project copy with the walkthrough's files dropped in, loaded and built against a POS server."""
    warehouse, _ = canonical_world
    tmp = tmp_path_factory.mktemp("add_a_system")
    project, home = tmp / "project", tmp / "home"
    _copy_project(project)
    before = _files(project)
    shutil.copytree(EXAMPLE, project, dirs_exist_ok=True)
    added = _files(project) - before
    home.mkdir()
    shutil.copy(warehouse.path, home / "warehouse.duckdb")

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
        "SOURCES__POS__API_KEY": API_KEY,
        "RUNTIME__REQUEST_MAX_ATTEMPTS": "2",
    }
    (home / "dagster").mkdir()
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    try:
        out = subprocess.run([sys.executable, "-c", RUN], cwd=project, env=env, capture_output=True, text=True,
                             timeout=280)  # fmt: skip
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "project": project,
        "added": added,
        "report": report,
        "warehouse": FileWarehouse(path=str(home / "warehouse.duckdb")),
        "known": known,
        "customers_before": customers_before,
    }


def test_only_the_walkthrough_files_are_added(with_pos):
    assert with_pos["added"] == {"integration_hub/adapters/pos.py", "dbt_like_sql/staging/pos__customer.sql"}
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
