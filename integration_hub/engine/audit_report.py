"""The evidence pack: what `audit.data_movement` says moved in a period, in one report.

Movements per system and direction with row counts, rejected rows by reason, retention
deletions by rule, dead letters opened and resolved, the access grants in force on the
warehouse, and the runs behind it all with links to the Dagster UI. Everything is read from
the audit trail (and, for grants, the database's own catalog), so the pack shows what the
hub recorded, which a reviewer can check against the tables themselves. Rendered as a dict
(JSON) or one self-contained HTML page.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import pwd
import re
import stat
from collections import defaultdict

from integration_hub.engine.audit import DIRECTIONS, SCHEMA, TABLE
from integration_hub.warehouse import Warehouse, quote

# Dagster's run ids are dashed UUIDs; a hub CLI command outside Dagster records a plain hex id.
DAGSTER_RUN_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
COLUMNS = (
    "run_id", "asset", "system", "direction", "resource", "rows_in", "rows_out", "rows_rejected",
    "started_at", "finished_at", "details",
)  # fmt: skip


def parse_day(text: str, name: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{name} must be a date like 2026-12-07, got {text!r}") from None


def build_report(warehouse: Warehouse, start: dt.date, end: dt.date, ui_url: str) -> dict:
    """The evidence pack of the movements that started from `start` through `end` (whole days, UTC)."""
    if end < start:
        raise ValueError(f"--to ({end}) is before --from ({start}): give the period oldest day first")
    movements = _movements(warehouse, start, end)
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "warehouse": warehouse.display_name,
        "movements": _by_movement(movements),
        "rejected_by_reason": _rejected(movements),
        "retention_by_rule": _retention(movements),
        "dead_letters": _dead_letters(movements),
        "access": access_grants(warehouse),
        "runs": _runs(movements, ui_url),
    }


def _movements(warehouse: Warehouse, start: dt.date, end: dt.date) -> list[dict]:
    if not warehouse.table_exists(SCHEMA, TABLE):
        return []
    since = dt.datetime.combine(start, dt.time())
    until = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    with warehouse.connect() as con:
        rows = con.rows(
            f"SELECT {', '.join(COLUMNS)} FROM {quote(SCHEMA, TABLE)} "
            "WHERE started_at >= ? AND started_at < ? ORDER BY started_at, run_id, asset, resource",
            [since, until],
        )
    out = []
    for row in rows:
        m = dict(zip(COLUMNS, row, strict=True))
        m["details"] = json.loads(m["details"] or "{}")
        out.append(m)
    return out


def _by_movement(movements: list[dict]) -> list[dict]:
    """One line per system, direction and resource: how many movements, rows in/out/rejected."""
    groups: dict[tuple, dict] = {}
    for m in movements:
        key = (m["system"], m["direction"], m["resource"] or "")
        g = groups.setdefault(
            key,
            {"system": key[0], "direction": key[1], "resource": key[2], "movements": 0,
             "rows_in": 0, "rows_out": 0, "rows_rejected": 0, "runs": []},
        )  # fmt: skip
        g["movements"] += 1
        for n in ("rows_in", "rows_out", "rows_rejected"):
            g[n] += int(m[n] or 0)
        if m["run_id"] not in g["runs"]:
            g["runs"].append(m["run_id"])
    return [groups[k] for k in sorted(groups)]


def _rejected(movements: list[dict]) -> list[dict]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for m in movements:
        if m["direction"] == "quarantine":
            for reason, n in m["details"].get("reasons", {}).items():
                counts[(m["resource"], reason)] += int(n)
    return [{"table": t, "reason": r, "rows": n} for (t, r), n in sorted(counts.items())]


def _retention(movements: list[dict]) -> list[dict]:
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for m in movements:
        if m["direction"] == "retention":
            rule = m["details"].get("rule") or f"after {m['details'].get('days')} days"
            counts[(rule, m["resource"])] += int(m["rows_out"] or 0)
    return [{"rule": r, "table": t, "rows_deleted": n} for (r, t), n in sorted(counts.items())]


def _dead_letters(movements: list[dict]) -> list[dict]:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for m in movements:
        if m["direction"] == "dead_letter":
            c = counts.setdefault(
                (m["details"].get("sync") or m["asset"], m["system"]),
                {"opened": 0, "delivered": 0, "discarded": 0},
            )
            for n in c:
                c[n] += int(m["details"].get(n, 0))
    return [{"sync": s, "system": system, **c} for (s, system), c in sorted(counts.items())]


def _runs(movements: list[dict], ui_url: str) -> list[dict]:
    runs: dict[str, dict] = {}
    for m in movements:
        r = runs.setdefault(
            m["run_id"],
            {"run_id": m["run_id"], "started_at": m["started_at"], "finished_at": m["finished_at"],
             "directions": [], "movements": 0},
        )  # fmt: skip
        r["started_at"] = min(r["started_at"], m["started_at"])
        r["finished_at"] = max(filter(None, (r["finished_at"], m["finished_at"])), default=None)
        r["movements"] += 1
        if m["direction"] not in r["directions"]:
            r["directions"].append(m["direction"])
    out = []
    for r in sorted(runs.values(), key=lambda r: (r["started_at"], r["run_id"])):
        dagster = bool(DAGSTER_RUN_ID.match(r["run_id"] or ""))
        r["directions"].sort(key=DIRECTIONS.index)  # in the order data travels
        out.append(
            {**r, "started_at": _iso(r["started_at"]), "finished_at": _iso(r["finished_at"]),
             "url": f"{ui_url.rstrip('/')}/runs/{r['run_id']}" if dagster else None,
             "origin": "dagster" if dagster else "hub CLI"}
        )  # fmt: skip
    return out


def _iso(value) -> str | None:
    return value.isoformat(sep=" ") if value else None


# ---- access ---------------------------------------------------------------------------------


def access_grants(warehouse: Warehouse) -> dict:
    """Who may do what on the warehouse now: Postgres's privileges per role and schema (from its
    catalog, owners' implicit rights included), or the embedded DuckDB file's permissions."""
    if warehouse.dialect == "duckdb":
        return _file_access(warehouse)
    with warehouse.connect() as con:
        rows = con.rows(
            "SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS role, "
            "n.nspname, a.privilege_type, count(*) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a "
            "WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_%' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
    grants: dict[tuple[str, str], dict] = {}
    for role, schema, privilege, tables in rows:
        g = grants.setdefault((role, schema), {"role": role, "schema": schema, "privileges": {}})
        g["privileges"][privilege] = int(tables)
    return {
        "kind": "postgres",
        "note": "privileges per role and schema, from pg_class ACLs (number of tables and views each)",
        "grants": list(grants.values()),
    }


def _file_access(warehouse: Warehouse) -> dict:
    path = warehouse.duckdb_path
    if not path.exists():
        return {
            "kind": "duckdb",
            "note": "embedded DuckDB: file permissions",
            "file": str(path),
            "grants": [],
        }
    st = path.stat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    mode = stat.S_IMODE(st.st_mode)
    readers = (
        ["owner"] + (["group"] if mode & stat.S_IRGRP else []) + (["others"] if mode & stat.S_IROTH else [])
    )
    return {
        "kind": "duckdb",
        "note": "embedded DuckDB: file permissions (who can open the file reads every table); "
        "multi-user access control needs the Postgres profile",
        "file": str(path),
        "grants": [{"role": owner, "mode": f"{mode:04o}", "readable_by": readers,
                    "writable_by": ["owner"] + (["group"] if mode & stat.S_IWGRP else [])
                    + (["others"] if mode & stat.S_IWOTH else [])}],
        "uid_is_you": st.st_uid == os.getuid(),
    }  # fmt: skip


# ---- HTML -----------------------------------------------------------------------------------


def to_html(report: dict) -> str:
    """One self-contained page (no script, no external resource): the pack for an auditor."""
    period = report["period"]
    parts = [
        f"<h1>Audit evidence: {period['from']} to {period['to']}</h1>",
        f"<p>Warehouse: {_e(report['warehouse'])}. Read from audit.data_movement.</p>",
        _table("Movements per system and direction", report["movements"],
               ["system", "direction", "resource", "movements", "rows_in", "rows_out", "rows_rejected"]),
        _table("Rejected rows by reason", report["rejected_by_reason"], ["table", "reason", "rows"]),
        _table("Retention deletions by rule", report["retention_by_rule"], ["rule", "table", "rows_deleted"]),
        _table("Dead letters opened and resolved", report["dead_letters"],
               ["sync", "system", "opened", "delivered", "discarded"]),
        f"<h2>Access grants in force</h2><p>{_e(report['access']['note'])}</p>",
        _access_table(report["access"]),
        _runs_table(report["runs"]),
    ]  # fmt: skip
    style = (
        "body{font:14px system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}td.n{text-align:right}th{background:#f3f4f6}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Audit evidence {period['from']}–{period['to']}"
        f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _table(title: str, rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return f"<h2>{_e(title)}</h2><p>none in this period</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(
            f"<td class='n'>{r[c]}</td>" if isinstance(r[c], int) else f"<td>{_e(r[c])}</td>" for c in columns
        ) + "</tr>"
        for r in rows
    )  # fmt: skip
    return f"<h2>{_e(title)}</h2><table><tr>{head}</tr>{body}</table>"


def _access_table(access: dict) -> str:
    if access["kind"] == "duckdb":
        rows = [{"owner": g["role"], "mode": g["mode"], "readable by": ", ".join(g["readable_by"]),
                 "writable by": ", ".join(g["writable_by"])} for g in access["grants"]]  # fmt: skip
        return _table("", rows, ["owner", "mode", "readable by", "writable by"]).removeprefix("<h2></h2>")
    rows = [
        {"role": g["role"], "schema": g["schema"],
         "privileges": ", ".join(f"{p} ({n})" for p, n in sorted(g["privileges"].items()))}
        for g in access["grants"]
    ]  # fmt: skip
    return _table("", rows, ["role", "schema", "privileges"]).removeprefix("<h2></h2>")


def _runs_table(runs: list[dict]) -> str:
    if not runs:
        return "<h2>Runs</h2><p>none in this period</p>"
    body = "".join(
        f"<tr><td>{_run_link(r)}</td><td>{_e(r['origin'])}</td><td>{_e(r['started_at'])}</td>"
        f"<td>{_e(r['finished_at'])}</td><td>{_e(', '.join(r['directions']))}</td><td class='n'>{r['movements']}</td></tr>"
        for r in runs
    )
    return (
        "<h2>Runs behind these movements</h2><table><tr><th>run</th><th>origin</th><th>started</th>"
        f"<th>finished</th><th>directions</th><th>movements</th></tr>{body}</table>"
    )


def _run_link(run: dict) -> str:
    if run["url"]:
        return f"<a href='{_e(run['url'])}'>{_e(run['run_id'])}</a>"
    return _e(run["run_id"])
