"""`hub audit …`: the audit trail, where a record came from and where it went."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from rich.console import Console

audit_app = typer.Typer(
    no_args_is_help=True, help="The audit trail: trace one record end to end; the evidence pack of a period."
)
console = Console()


# ---- hub audit trace ----------------------------------------------------------------------


@audit_app.command("trace")
def trace_command(
    ref: str = typer.Argument(..., help="Canonical id (SO-…, in_…, customer id) or system:id (shop:1234)."),
    as_json: bool = typer.Option(False, "--json", help="Print the trace as JSON."),
    show_pii: bool = typer.Option(False, "--show-pii", help="Show personal data instead of masking it."),
) -> None:
    """One record's path end to end: source rows, runs, canonical rows, findings, pushes.

    Personal data (the canonical model's PII flags; in raw rows, fields named as personal) is
    masked unless `--show-pii` is given: a trace is pasted into tickets and chats."""
    from integration_hub.engine.trace import TraceError, trace
    from integration_hub.warehouse import warehouse_from_env

    try:
        traces = trace(warehouse_from_env(), ref)
    except TraceError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    shown = [t.as_dict() if show_pii else masked_trace(t.as_dict()) for t in traces]
    if as_json:
        typer.echo(json.dumps(shown, indent=2))
        return
    for t in shown:
        _print_trace(t)


# ---- hub audit report ---------------------------------------------------------------------


@audit_app.command("report")
def report_command(
    start: str = typer.Option(None, "--from", help="First day (YYYY-MM-DD, UTC); default 30 days ago."),
    end: str = typer.Option(None, "--to", help="Last day, included (YYYY-MM-DD, UTC); default today."),
    html_file: Path = typer.Option(
        None, "--html", help="Also write the pack as one self-contained HTML page."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the pack as JSON."),
) -> None:
    """The evidence pack of a period: movements per system and direction with row counts, rejected
    rows by reason, retention deletions by rule, dead letters opened and resolved, access grants
    in force, and the runs behind them, linked to the Dagster UI (`HUB_UI_URL`)."""
    from integration_hub import settings
    from integration_hub.engine import audit_report
    from integration_hub.warehouse import warehouse_from_env

    today = dt.datetime.now(dt.UTC).date()
    try:
        first = audit_report.parse_day(start, "--from") if start else today - dt.timedelta(days=30)
        last = audit_report.parse_day(end, "--to") if end else today
        pack = audit_report.build_report(warehouse_from_env(), first, last, settings.ui_url())
    except ValueError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    if html_file:
        html_file.parent.mkdir(parents=True, exist_ok=True)
        html_file.write_text(audit_report.to_html(pack))
    if as_json:
        typer.echo(json.dumps(pack, indent=2, default=str))
        return
    _print_pack(pack)
    if html_file:
        console.print(f"written {html_file}")


def _print_pack(pack: dict) -> None:
    from rich.table import Table

    def table(title: str, rows: list[dict], columns: list[str]) -> None:
        if not rows:
            console.print(f"[bold]{title}[/]: none in this period")
            return
        t = Table(title=title, title_justify="left", title_style="bold")
        for c in columns:
            t.add_column(c, justify="right" if isinstance(rows[0].get(c), int) else "left")
        for r in rows:
            t.add_row(*(", ".join(r[c]) if isinstance(r[c], list) else str(r[c]) for c in columns))
        console.print(t)

    period = pack["period"]
    console.rule(f"audit evidence {period['from']} to {period['to']} ({pack['warehouse']})")
    table(
        "movements per system and direction",
        pack["movements"],
        ["system", "direction", "resource", "movements", "rows_in", "rows_out", "rows_rejected"],
    )
    table("rejected rows by reason", pack["rejected_by_reason"], ["table", "reason", "rows"])
    table("retention deletions by rule", pack["retention_by_rule"], ["rule", "table", "rows_deleted"])
    table("dead letters opened and resolved", pack["dead_letters"],
          ["sync", "system", "opened", "delivered", "discarded"])  # fmt: skip
    access = pack["access"]
    console.print(f"[bold]access grants in force[/]: {access['note']}")
    for g in access["grants"]:
        if access["kind"] == "duckdb":
            console.print(f"  {access['file']}: owner {g['role']}, mode {g['mode']}, "
                          f"readable by {', '.join(g['readable_by'])}")  # fmt: skip
        else:
            shown = ", ".join(f"{p} ({n})" for p, n in sorted(g["privileges"].items()))
            console.print(f"  {g['role']} on {g['schema']}: {shown}")
    console.print("[bold]runs behind them[/]" + ("" if pack["runs"] else ": none"))
    for r in pack["runs"]:
        console.print(
            f"  {r['run_id']} {r['started_at']} {', '.join(r['directions'])}  {r['url'] or r['origin']}"
        )


def masked_trace(t: dict) -> dict:
    """A trace with personal values masked: rows by their table, dead-letter payloads by their sync."""
    from assets.syncs import SYNCS
    from integration_hub.engine import pii

    t = dict(t)
    t["sources"] = {
        table: [pii.masked(*table.split(".", 1), row) for row in rows] for table, rows in t["sources"].items()
    }
    t["canonical"] = {
        entity: [pii.masked("canonical", entity, row) for row in rows]
        for entity, rows in t["canonical"].items()
    }
    t["dead_letters"] = [masked_letter(d, SYNCS) for d in t["dead_letters"]]
    return t


def masked_letter(letter: dict, syncs: dict) -> dict:
    """A dead letter whose payload's personal fields (its sync's PII) are masked."""
    from integration_hub.engine import pii

    sync = syncs.get(letter.get("sync"))
    if sync is None or not letter.get("payload"):
        return letter
    return {**letter, "payload": json.dumps(pii.masked_payload(sync, json.loads(letter["payload"])))}


def _print_trace(t: dict) -> None:
    console.rule(f"{t['subject']['entity']} {t['subject']['id']}  (from {t['ref']})")
    sections = [
        ("source rows", t["sources"]),
        ("canonical rows", t["canonical"]),
        ("reconciliation findings", t["findings"]),
    ]
    for title, groups in sections:
        console.print(f"[bold]{title}[/]" + ("" if groups else ": none"))
        for table, rows in groups.items():
            for row in rows:
                shown = {k: v for k, v in row.items() if not k.startswith("_dlt_") or k == "_dlt_load_id"}
                console.print(f"  {table}: {json.dumps(shown, default=str)[:300]}")
    console.print("[bold]pushes[/]" + ("" if t["pushes"] else ": none"))
    for p in t["pushes"]:
        console.print(f"  {p.get('sync')} {p.get('key')} {p.get('operation')} → {p.get('status')} "
                      f"{p.get('error') or ''} at {p.get('changed_at')} (run {p.get('run_id')})")  # fmt: skip
    for d in t["dead_letters"]:
        console.print(
            f"  [red]dead letter[/] {d.get('sync')} {d.get('key')} {d.get('status')}: {d.get('error')}"
        )
    console.print("[bold]runs[/]" + ("" if t["runs"] else ": none"))
    for m in t["runs"]:
        console.print(f"  {m.get('run_id')} {m.get('direction'):<10} {m.get('asset')} {m.get('resource') or ''} "
                      f"in={m.get('rows_in')} out={m.get('rows_out')} rejected={m.get('rows_rejected')}")  # fmt: skip
